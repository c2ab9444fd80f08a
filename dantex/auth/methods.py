"""Dante's authentication methods: their wire methods and their backends.

A SOCKS v5 client offers wire methods (RFC 1928 §3); the server walks *its
own* method list in order and takes the first method whose wire mapping
(:data:`WIRE`, Dante §1.4) contains one the client offered.  The chosen
method decides the backend that checks the client:

===============  ============================================================
``none``         nothing
``username``     ``--auth`` checkers if given, else the password file
                 (``username.passwordfile``), else system accounts via PAM
                 (service :data:`~dantex.auth.pam.USERNAME_SERVICE`)
``pam.username`` PAM, service ``pam.servicename`` (default ``sockd``)
``pam.any``      PAM with the RFC 1929 user/password when given, else
                 ``PAM_RHOST`` only
``pam.address``  PAM with ``PAM_RHOST`` only
``ldapauth``     LDAP bind (``ldap.auth.*``)
``rfc931``       ident (RFC 1413) on the client's host
===============  ============================================================

:class:`Authenticator` holds one ``twisted.cred`` ``Portal`` per method
(built on first use) with a :class:`~dantex.auth.realm.SocksRealm`, so each
success yields a :class:`~dantex.auth._base.SocksUser` with its groups.  It
also holds the :class:`~dantex.auth.failures.FailureLimiter`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, cast

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword, UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import Portal
from twisted.internet.defer import Deferred, fail, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from zope.interface import implementer

from dantex.auth._base import Blocking, ISocksUser, SocksUser, inline
from dantex.auth.failures import FailureLimiter
from dantex.auth.realm import GroupSource, SocksRealm, SystemGroups

__all__ = [
    "ADDRESS_METHODS",
    "PASSWORD_METHODS",
    "WIRE",
    "Authenticator",
    "ChainedChecker",
    "choose_method",
    "v4_method",
]

NO_AUTH = 0x00
USERNAME_PASSWORD = 0x02

#: Dante method -> acceptable RFC 1928 wire methods, in Dante's order (§1.4).
WIRE: Mapping[str, tuple[int, ...]] = {
    "none": (NO_AUTH,),
    "username": (USERNAME_PASSWORD,),
    "rfc931": (NO_AUTH, USERNAME_PASSWORD),
    "pam.any": (USERNAME_PASSWORD, NO_AUTH),
    "pam.address": (USERNAME_PASSWORD, NO_AUTH),
    "pam.username": (USERNAME_PASSWORD,),
    "ldapauth": (USERNAME_PASSWORD,),
}
#: Methods that check the RFC 1929 password.
PASSWORD_METHODS = frozenset({"username", "pam.username", "pam.any", "ldapauth"})
#: Methods that check the connection's addresses (ident, PAM_RHOST).
ADDRESS_METHODS = frozenset({"rfc931", "pam.address", "pam.any"})


def choose_method(
    ours: Sequence[str], offered: Collection[int]
) -> tuple[str, int] | None:
    """RFC 1928 §3 the Dante way: the first of *our* methods the client can do.

    :returns: (Dante method name, wire method), or None (answer X'FF').
    """
    for name in ours:
        for wire in WIRE.get(name, ()):
            if wire in offered:
                return name, wire
    return None


def v4_method(ours: Sequence[str]) -> str | None:
    """The method a SOCKS v4 client gets: the first of ours that works without
    a password (v4 has no method negotiation).  None: v4 must be refused
    (the lesson of CVE-2024-54662)."""
    for name in ours:
        if NO_AUTH in WIRE.get(name, ()):
            return name
    return None


@implementer(ICredentialsChecker)
class ChainedChecker:
    """Tries several checkers in order; the first success wins (``--auth`` x N).

    Each runs through ``run`` (blocking checkers such as strcred's ``file:``
    and ``unix`` read files or call crypt).
    """

    def __init__(self, checkers: Sequence[ICredentialsChecker], run: Blocking) -> None:
        self.checkers = tuple(checkers)
        self._run = run
        interfaces: list[Any] = []
        for c in self.checkers:
            interfaces.extend(i for i in c.credentialInterfaces if i not in interfaces)
        self.credentialInterfaces = tuple(interfaces)

    def requestAvatarId(self, credentials: Any) -> Deferred[Any]:
        candidates = [
            c
            for c in self.checkers
            if any(i.providedBy(credentials) for i in c.credentialInterfaces)
        ]

        def attempt(index: int) -> Deferred[Any]:
            if index >= len(candidates):
                return fail(UnauthorizedLogin("no --auth checker accepted"))
            d = self._run(_answer_now, candidates[index], credentials)

            def next_one(f: Failure) -> Deferred[Any]:
                f.trap(UnauthorizedLogin)
                return attempt(index + 1)

            return d.addErrback(next_one)

        return attempt(0)


def _answer_now(checker: ICredentialsChecker, credentials: Any) -> Any:
    """Call a checker that answers synchronously (strcred's), in a thread.

    Twisted's checkers disagree on bytes and text (``file:`` keeps bytes,
    ``memory:`` text), so a refusal of the bytes credentials is retried once
    with the same credentials as text.
    """
    try:
        return _sync(checker, credentials)
    except UnauthorizedLogin:
        if not IUsernamePassword.providedBy(credentials):
            raise
        try:
            text = UsernamePassword(
                bytes(credentials.username).decode("utf-8"),  # type: ignore[arg-type]
                bytes(credentials.password).decode("utf-8"),  # type: ignore[arg-type]
            )
        except UnicodeDecodeError:
            raise UnauthorizedLogin("not UTF-8") from None
        return _sync(checker, text)


def _sync(checker: ICredentialsChecker, credentials: Any) -> Any:
    results: list[Any] = []
    maybeDeferred(checker.requestAvatarId, credentials).addBoth(results.append)
    if not results:
        raise UnauthorizedLogin("--auth checker did not answer synchronously")
    if isinstance(results[0], Failure):
        results[0].raiseException()
    return results[0]


class Authenticator:
    """The authentication policy of one configuration generation.

    :param values: the configuration's authentication settings (see
        :meth:`from_config`).
    :param reactor: for ident connections (IReactorTCP + IReactorTime).
    :param run: where blocking checks run (the server's thread pool).
    :param checkers: ``--auth`` checkers; they serve ``username``.
    :param warn: receives backend warnings (password file problems ...).
    """

    def __init__(
        self,
        clock: IReactorTime,
        *,
        passwordfile: str | None = None,
        pam_service: str | None = None,
        ldap: Mapping[str, tuple[str, ...]] | None = None,
        ident_port: int = 113,
        ident_timeout: float = 10.0,
        failures: tuple[int, float] = (5, 60.0),
        reactor: Any = None,
        run: Blocking = inline,
        checkers: Sequence[ICredentialsChecker] = (),
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.clock = clock
        self.passwordfile = passwordfile
        self.pam_service = pam_service
        self.ldap = dict(ldap or {})
        self.ident_port = ident_port
        self.ident_timeout = ident_timeout
        self.reactor = reactor
        self.run = run
        self.extra_checkers = tuple(checkers)
        self.warn = warn
        self.limiter = FailureLimiter(clock, failures[0], failures[1])
        self.system_groups = SystemGroups(run, clock)
        self._portals: dict[str, Portal] = {}
        self._ldap_groups: GroupSource | None = None
        self._ldap_groups_built = False
        self.checkers: dict[str, ICredentialsChecker] = {}

    @classmethod
    def from_config(cls, config: Any, **kw: Any) -> Authenticator:
        """Settings from a parsed :class:`~dantex.config.model.Config`."""
        return cls(
            passwordfile=getattr(config, "passwordfile", None),
            pam_service=getattr(config, "pam_servicename", None),
            ldap=getattr(config, "ldap", None),
            ident_port=getattr(config, "rfc931_port", 113),
            ident_timeout=getattr(config, "rfc931_timeout", 10.0),
            failures=getattr(config, "auth_failures", (5, 60.0)),
            **kw,
        )

    # -- backends --------------------------------------------------------------

    def _backend(
        self, method: str, pam_service: str | None
    ) -> tuple[ICredentialsChecker, GroupSource]:
        from dantex.auth.pam import DEFAULT_SERVICE, USERNAME_SERVICE, PamChecker

        if method == "username":
            if self.extra_checkers:
                return ChainedChecker(self.extra_checkers, self.run), self.system_groups
            if self.passwordfile is not None:
                from dantex.auth.passwd import PasswordFile, PasswordFileChecker

                pw = PasswordFile(
                    self.passwordfile, self.clock, self.run, warn=self.warn
                )
                checker = PasswordFileChecker(pw, self.clock, self.run)
                return checker, checker.groups_of
            return PamChecker(USERNAME_SERVICE, self.run), self.system_groups
        if method in ("pam.username", "pam.any", "pam.address"):
            service = pam_service or self.pam_service or DEFAULT_SERVICE
            return PamChecker(service, self.run), self.system_groups
        if method == "ldapauth":
            from dantex.auth.ldap import LdapChecker, LdapSettings

            settings = LdapSettings.from_keywords(
                self.ldap, "ldap.auth.", filter="(uid=%s)", cache_ttl=300.0
            )
            if settings is None:
                raise ValueError("ldapauth needs ldap.auth.url or ldap.auth.server")
            ldap_checker = LdapChecker(settings, self.clock, self.run)
            return ldap_checker, ldap_checker.groups_of
        if method == "rfc931":
            from dantex.auth.ident import IdentChecker

            return (
                IdentChecker(
                    self.reactor, port=self.ident_port, timeout=self.ident_timeout
                ),
                self.system_groups,
            )
        raise ValueError(f"no backend for method {method!r}")

    def prepare(self, methods: Collection[str]) -> None:
        """Build the backends of ``methods`` now and read the password file,
        so its warnings appear at start-up rather than at the first login."""
        if "username" in methods and self.passwordfile and not self.extra_checkers:
            from dantex.auth.passwd import PasswordFileChecker

            checker = self.checker("username")
            if isinstance(checker, PasswordFileChecker):
                checker.passwords.entries()

    def checker(
        self, method: str, pam_service: str | None = None
    ) -> ICredentialsChecker:
        """The checker serving ``method`` (built on first use)."""
        self.portal(method, pam_service)
        return self.checkers[_key(method, pam_service)]

    def portal(self, method: str, pam_service: str | None = None) -> Portal:
        """The ``Portal`` for ``method`` (per PAM service for ``pam.*``)."""
        key = _key(method, pam_service)
        portal = self._portals.get(key)
        if portal is None:
            checker, groups = self._backend(method, pam_service)
            self.checkers[key] = checker
            portal = self._portals[key] = Portal(SocksRealm(groups), [checker])
        return portal

    def login(
        self, method: str, credentials: Any, *, pam_service: str | None = None
    ) -> Deferred[SocksUser]:
        """Check ``credentials`` with ``method``'s backend.

        :returns: the user, or fails with ``UnauthorizedLogin`` (its message
            says why, never the password).
        """
        try:
            portal = self.portal(method, pam_service)
        except Exception as e:
            return fail(UnauthorizedLogin(f"{method}: {e}"))
        d = portal.login(credentials, None, ISocksUser)

        def avatar(result: tuple[Any, Any, Any]) -> SocksUser:
            return cast(SocksUser, result[1])

        def refusal(f: Failure) -> Failure:
            if f.check(UnauthorizedLogin):
                return f
            return Failure(UnauthorizedLogin(f"{method}: {f.getErrorMessage()}"))

        return d.addCallbacks(avatar, refusal)

    def ldap_groups(self, name: str) -> Deferred[frozenset[str]] | None:
        """``ldap.group`` membership from the ``ldap.*`` settings, or None if
        no such directory is configured."""
        if not self._ldap_groups_built:
            from dantex.auth.ldap import LdapGroups, LdapSettings

            self._ldap_groups_built = True
            settings = LdapSettings.from_keywords(
                self.ldap, "ldap.", filter="(memberuid=%s)", cache_ttl=900.0
            )
            if settings is not None:
                self._ldap_groups = LdapGroups(settings, self.clock, self.run)
        if self._ldap_groups is None:
            return None
        return self._ldap_groups(name)


def _key(method: str, pam_service: str | None) -> str:
    return (
        f"{method}/{pam_service}"
        if method.startswith("pam.") and pam_service
        else method
    )
