"""LDAP with ldap3: Dante's ``ldapauth`` method and ``ldap.group`` lookups.

Authentication (:class:`LdapChecker`, keywords ``ldap.auth.*``): bind as the
service account (the user info of ``ldap.auth.url``, or anonymously), search
the user's entry under the base DN with the filter (default ``(uid=%s)``,
the name escaped per RFC 4515), require exactly one, then bind *as that DN*
with the client's password.  An empty password is refused before anything
is sent (an LDAP "unauthenticated bind" would succeed).  Groups are read in
one search: ``groupOfNames``/``groupOfUniqueNames`` naming the DN,
``posixGroup`` naming the uid, plus the entry's ``memberOf`` values; each
group's name is the value of its first RDN (``cn=staff,...`` -> ``staff``).

Group lookups for ``ldap.group`` (:class:`LdapGroups`, keywords ``ldap.*``):
search with ``ldap.filter`` (default ``(memberuid=%s)``) and take the values
of ``ldap.attribute`` (default ``cn``), as Dante's LDAP module does.

Transport: ``ldaps://`` URLs (or ``ssl: yes``) use LDAPS, ``starttls: yes``
upgrades a plain connection; certificates are verified (``certcheck: no``
turns that off) against ``certfile``/``certpath`` or the system store.
Every operation has a timeout (``timeout``, 2 s like Dante's connect
timeout); a server that fails to connect is skipped for 30 s (Dante's
"dead-server time") and the next URL tried, so a dead directory gives a
quick, clear refusal instead of a hang.  Successful results are cached for
``cache`` seconds.  All LDAP calls block: they run in the thread pool.

Not implemented: Active Directory variants (``.ad``/``.hex`` keywords,
nested groups, Kerberos keytabs), DNS SRV discovery.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Mapping
from typing import Any, cast
from urllib.parse import unquote, urlsplit

from attrs import field, frozen
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from zope.interface import implementer

from dantex.auth._base import AvatarId, Blocking, VerifiedCache, inline

__all__ = [
    "LdapChecker",
    "LdapDirectory",
    "LdapGroups",
    "LdapSettings",
    "LdapUnavailable",
]


class LdapUnavailable(Exception):
    """No LDAP server could be reached (or TLS to it failed)."""


def _yes(value: str) -> bool:
    return value.lower() in ("yes", "true", "1", "on")


@frozen
class LdapSettings:
    """Where and how to reach a directory.  The bind password is never in ``repr()``.

    ``urls`` are ``ldap://host:port`` or ``ldaps://host:port``, tried in order.
    """

    urls: tuple[str, ...]
    basedn: str
    filter: str = "(uid=%s)"
    attribute: str = "cn"
    bind_dn: str | None = None
    bind_password: str | None = field(default=None, repr=False)
    starttls: bool = False
    certcheck: bool = True
    ca_file: str | None = None
    ca_path: str | None = None
    timeout: float = 2.0
    cache_ttl: float = 300.0
    dead_time: float = 30.0

    @classmethod
    def from_keywords(
        cls,
        values: Mapping[str, tuple[str, ...]],
        prefix: str,
        *,
        filter: str,
        cache_ttl: float,
    ) -> LdapSettings | None:
        """Settings from Dante-style keywords (``prefix`` = ``ldap.auth.`` or
        ``ldap.``); None when neither ``url`` nor ``server`` is given.

        Values were checked by the configuration parser.
        """

        def one(name: str, default: str | None = None) -> str | None:
            got = values.get(prefix + name)
            return got[-1] if got else default

        use_ssl = _yes(one("ssl", "no") or "no")
        port = int(one("port", "389") or 389)
        port_ssl = int(one("port.ssl", "636") or 636)
        urls: list[str] = []
        basedn = one("basedn") or ""
        bind_dn = bind_pw = None
        for url in values.get(prefix + "url", ()):
            parts = urlsplit(url)
            scheme = parts.scheme.lower()
            default_port = 636 if scheme == "ldaps" else 389
            host = parts.hostname or "localhost"
            if ":" in host:
                host = f"[{host}]"
            urls.append(f"{scheme}://{host}:{parts.port or default_port}")
            if parts.path.strip("/") and not basedn:
                basedn = unquote(parts.path.strip("/"))
            if parts.username and bind_dn is None:
                bind_dn = unquote(parts.username)
                bind_pw = unquote(parts.password or "")
        for server in values.get(prefix + "server", ()):
            host = f"[{server}]" if ":" in server else server
            urls.append(
                f"ldaps://{host}:{port_ssl}" if use_ssl else f"ldap://{host}:{port}"
            )
        if not urls:
            return None
        return cls(
            urls=tuple(urls),
            basedn=basedn,
            filter=one("filter", filter) or filter,
            attribute=one("attribute", "cn") or "cn",
            bind_dn=bind_dn,
            bind_password=bind_pw,
            starttls=_yes(one("starttls", "no") or "no"),
            certcheck=_yes(one("certcheck", "yes") or "yes"),
            ca_file=one("certfile"),
            ca_path=one("certpath"),
            timeout=float(one("timeout", "2") or 2),
            cache_ttl=float(one("cache", str(cache_ttl)) or cache_ttl),
        )


class LdapDirectory:
    """Blocking LDAP operations on one directory (call them in a thread).

    Each call opens its own connection, so calls from several threads are
    safe.  Servers that failed to connect are skipped for ``dead_time``.
    """

    def __init__(self, settings: LdapSettings, clock: IReactorTime) -> None:
        self.settings = settings
        self._clock = clock
        self._dead: dict[str, float] = {}
        self._lock = threading.Lock()

    def _server(self, url: str) -> Any:
        from ldap3 import NONE, Server, Tls

        s = self.settings
        parts = urlsplit(url)
        tls = Tls(
            validate=ssl.CERT_REQUIRED if s.certcheck else ssl.CERT_NONE,
            ca_certs_file=s.ca_file,
            ca_certs_path=s.ca_path,
            version=ssl.PROTOCOL_TLS_CLIENT,
        )
        return Server(
            parts.hostname,
            port=parts.port,
            use_ssl=parts.scheme == "ldaps",
            tls=tls,
            get_info=NONE,
            connect_timeout=s.timeout,
        )

    def connect(self, user: str | None = None, password: str | None = None) -> Any:
        """An open connection (TLS done), not yet bound.

        :raises LdapUnavailable: no server reachable, or TLS failed.
        """
        from ldap3 import Connection
        from ldap3.core.exceptions import LDAPException

        s = self.settings
        now = self._clock.seconds()
        with self._lock:
            alive = [u for u in s.urls if self._dead.get(u, 0.0) <= now]
        if not alive:
            raise LdapUnavailable(
                f"every LDAP server failed within the last {s.dead_time:g}s"
            )
        errors = []
        for url in alive:
            conn = Connection(
                self._server(url),
                user=user,
                password=password,
                receive_timeout=max(1, round(s.timeout)),  # ldap3 packs an int
                read_only=True,
                raise_exceptions=False,
                auto_bind="NONE",
            )
            try:
                conn.open()
                tls_wanted = s.starttls and not url.startswith("ldaps:")
                if tls_wanted and not conn.start_tls():
                    raise LdapUnavailable(f"{url}: StartTLS refused")
                return conn
            except (LDAPException, OSError, ssl.SSLError, ValueError) as e:
                errors.append(f"{url}: {_reason(e)}")
                with self._lock:
                    self._dead[url] = self._clock.seconds() + s.dead_time
                try:
                    conn.unbind()
                except Exception:
                    pass
        raise LdapUnavailable("; ".join(errors))

    def authenticate(self, name: str, password: str) -> frozenset[str]:
        """Find ``name``'s entry, bind as it, return its groups.

        :raises UnauthorizedLogin: no such user, ambiguous, wrong password.
        :raises LdapUnavailable: the directory cannot be reached or searched.
        """
        from ldap3 import SUBTREE
        from ldap3.utils.conv import escape_filter_chars

        s = self.settings
        if not password:
            raise UnauthorizedLogin("empty password")
        service = self.connect(s.bind_dn, s.bind_password)
        try:
            if s.bind_dn is not None and not service.bind():
                raise LdapUnavailable("service bind failed: " + _result(service))
            wanted = s.filter.replace("%s", escape_filter_chars(name))
            found = service.search(
                s.basedn,
                wanted,
                SUBTREE,
                attributes=["memberOf"],
                size_limit=2,
                time_limit=max(1, int(s.timeout)),
            )
            # 4: size limit (several entries), 32: no such base object
            if not found and service.result.get("result") not in (0, 4, 32):
                raise LdapUnavailable("search failed: " + _result(service))
            entries = [
                r for r in service.response or () if r.get("type") == "searchResEntry"
            ]
            if not entries:
                raise UnauthorizedLogin("no such user in the directory")
            if len(entries) > 1:
                raise UnauthorizedLogin("the filter matches several entries")
            dn = entries[0]["dn"]
            member_of = entries[0].get("attributes", {}).get("memberOf", []) or []
        finally:
            service.unbind()
        user_conn = self.connect(dn, password)
        try:
            if not user_conn.bind():
                raise UnauthorizedLogin("invalid credentials")
            groups = set(_first_rdn(g) for g in member_of)
            esc_dn = escape_filter_chars(dn)
            esc_name = escape_filter_chars(name)
            user_conn.search(
                s.basedn,
                f"(|(&(objectClass=groupOfNames)(member={esc_dn}))"
                f"(&(objectClass=groupOfUniqueNames)(uniqueMember={esc_dn}))"
                f"(&(objectClass=posixGroup)(memberUid={esc_name})))",
                SUBTREE,
                attributes=[],
                time_limit=max(1, int(s.timeout)),
            )
            for r in user_conn.response or ():
                if r.get("type") == "searchResEntry":
                    groups.add(_first_rdn(r["dn"]))
        finally:
            user_conn.unbind()
        groups.discard("")
        return frozenset(groups)

    def groups(self, name: str) -> frozenset[str]:
        """Values of ``attribute`` of the entries ``filter`` finds for ``name``."""
        from ldap3 import SUBTREE
        from ldap3.utils.conv import escape_filter_chars

        s = self.settings
        conn = self.connect(s.bind_dn, s.bind_password)
        try:
            if s.bind_dn is not None and not conn.bind():
                raise LdapUnavailable("service bind failed: " + _result(conn))
            conn.search(
                s.basedn,
                s.filter.replace("%s", escape_filter_chars(name)),
                SUBTREE,
                attributes=[s.attribute],
                time_limit=max(1, int(s.timeout)),
            )
            out: set[str] = set()
            for r in conn.response or ():
                if r.get("type") != "searchResEntry":
                    continue
                value = r.get("attributes", {}).get(s.attribute, [])
                for v in value if isinstance(value, list) else [value]:
                    text = str(v)
                    out.add(_first_rdn(text) if "=" in text else text)
            return frozenset(out)
        finally:
            conn.unbind()


def _first_rdn(dn: str) -> str:
    from ldap3.utils.dn import parse_dn

    try:
        return str(parse_dn(dn)[0][1])
    except Exception:
        return ""


def _result(conn: Any) -> str:
    result = conn.result or {}
    return str(result.get("description") or result.get("message") or "error")


def _reason(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    return text.split(" - ")[-1] if "socket" in text else text


@implementer(ICredentialsChecker)
class LdapChecker:
    """``ICredentialsChecker`` binding as the user (``ldapauth``).

    The avatar id is the user name; ``groups_of`` gives the groups found at
    authentication (a group source for :class:`~dantex.auth.realm.SocksRealm`).
    """

    credentialInterfaces = (IUsernamePassword,)

    def __init__(
        self, settings: LdapSettings, clock: IReactorTime, run: Blocking = inline
    ) -> None:
        self.directory = LdapDirectory(settings, clock)
        self._run = run
        self.cache = VerifiedCache(clock, settings.cache_ttl)
        self._groups: dict[str, frozenset[str]] = {}
        self.binds_run = 0

    def requestAvatarId(self, credentials: IUsernamePassword) -> Deferred[AvatarId]:
        return cast("Deferred[AvatarId]", self._request(credentials))

    def _request(self, credentials: IUsernamePassword) -> Deferred[bytes]:
        try:
            name = bytes(credentials.username).decode("utf-8")
            password = bytes(credentials.password).decode("utf-8")
        except UnicodeDecodeError:
            return fail(UnauthorizedLogin("user name or password is not UTF-8"))
        if not password:
            return fail(UnauthorizedLogin("empty password"))
        raw = password.encode("utf-8")
        token = self.cache.get(name, raw)
        if isinstance(token, frozenset):
            self._remember(name, token)
            return succeed(name.encode("utf-8"))
        self.binds_run += 1

        def done(groups: frozenset[str]) -> bytes:
            self.cache.put(name, raw, groups)
            self._remember(name, groups)
            return name.encode("utf-8")

        def unavailable(f: Failure) -> Failure:
            if f.check(LdapUnavailable):
                return Failure(UnauthorizedLogin(f"ldap: {f.getErrorMessage()}"))
            return f

        d: Deferred[bytes] = self._run(
            self.directory.authenticate, name, password
        ).addCallback(done)
        return d.addErrback(unavailable)

    def _remember(self, name: str, groups: frozenset[str]) -> None:
        if len(self._groups) > 10_000:
            self._groups.clear()
        self._groups[name] = groups

    def groups_of(self, name: str) -> Deferred[frozenset[str]]:
        """Groups found when ``name`` last authenticated."""
        return succeed(self._groups.get(name, frozenset()))


class LdapGroups:
    """``ldap.group`` membership for any authenticated name, cached."""

    def __init__(
        self, settings: LdapSettings, clock: IReactorTime, run: Blocking = inline
    ) -> None:
        self.directory = LdapDirectory(settings, clock)
        self._run = run
        self._clock = clock
        self._ttl = settings.cache_ttl
        self._cache: dict[str, tuple[float, frozenset[str]]] = {}

    def __call__(self, name: str) -> Deferred[frozenset[str]]:
        hit = self._cache.get(name)
        if hit is not None and hit[0] > self._clock.seconds():
            return succeed(hit[1])

        def keep(groups: frozenset[str]) -> frozenset[str]:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[name] = (self._clock.seconds() + self._ttl, groups)
            return groups

        def unavailable(f: Failure) -> frozenset[str]:
            f.trap(LdapUnavailable)
            return frozenset()

        return (
            self._run(self.directory.groups, name)
            .addCallback(keep)
            .addErrback(unavailable)
        )
