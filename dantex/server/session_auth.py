"""The authentication part of a SOCKS session (mixed into :class:`SocksSession`).

* Client level (before any SOCKS byte is read): when ``clientmethod:`` lists
  ``rfc931``/``pam.address``/``pam.any``, those checks run first and the
  client-rules are evaluated once per method that worked (plus ``none``);
  the earliest matching rule wins, as Dante's first-match with method
  upgrades would pick it.  Ident data found here is reused at the socks level.
* Method choice (RFC 1928 §3): the first method of *our* list (the
  client-rule's ``socksmethod:`` or the global one) the client can do, by the
  wire mapping in :mod:`dantex.auth.methods`.
* RFC 1929: the password is checked at once by the chosen method's backend;
  success answers ``01 00``, failure ``01 01`` and the connection closes.
* ``rfc931``/``pam.address`` (and ``pam.any`` without a password): checked
  right after the method is chosen; a failure does not close the connection:
  the socks-rule that then matches blocks the request with the reason (Dante:
  "a rule that matches but whose check fails blocks").
* SOCKS v4 has no authentication: the client gets the first of our methods
  that works without a password; if there is none the request is refused
  (CVE-2024-54662: v4 clients must not bypass a client-rule's ``socksmethod``).

While a check is pending the session reads nothing from the client; checks
from a source with repeated failures wait first (:mod:`dantex.auth.failures`).

Not implemented: Dante's method upgrades at the socks level (a ``username``
client re-checked as ``pam.username`` because a later rule asks for it), and
``pam.servicename`` in socks-rules (give it globally or in the client-rule).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import CancelledError, Deferred, DeferredList
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

from dantex.auth._base import (
    ConnectionCredentials,
    SocksCredentials,
    SocksUser,
    printable,
)
from dantex.auth.methods import PASSWORD_METHODS, choose_method, v4_method
from dantex.protocol import socks4, socks5
from dantex.protocol.errors import RemoteProtocolError
from dantex.protocol.socks5 import Reply
from dantex.protocol.userpass import UserPassRequest
from dantex.rules.addresses import Answers
from dantex.rules.engine import ClientFacts, Match
from dantex.server._state import State
from dantex.server.route import remember_credentials

if TYPE_CHECKING:
    from dantex.server.session import SocksSession

__all__ = ["SessionAuth"]


class SessionAuth:
    """The authentication steps of one :class:`SocksSession`."""

    def __init__(self, session: SocksSession) -> None:
        self.session = session

    # -- helpers -----------------------------------------------------------------

    def socks_methods(self) -> tuple[str, ...]:
        s = self.session
        rule = s.client_rule
        if rule is not None and rule.socksmethods:
            return rule.socksmethods
        return s.policy.config.socksmethods

    def connection_credentials(self) -> ConnectionCredentials:
        s = self.session
        # behind a PROXY-protocol balancer the client connected to its port
        port = s.proxied[1].port if s.proxied is not None else s.server.port
        return ConnectionCredentials(s.client.host, s.client.port, s.server.host, port)

    def adopt(self, method: str, user: SocksUser) -> None:
        s = self.session
        s.user = user.name or None
        s.groups = user.groups
        if method == "ldapauth":
            s.ldap_groups = user.groups

    def login(
        self,
        method: str,
        credentials: Any,
        ok: Callable[[SocksUser], None],
        failed: Callable[[str], None],
    ) -> None:
        """Check ``credentials`` with ``method``; pause reading meanwhile."""
        s = self.session

        s.state = State.AUTHENTICATING
        s._pause()
        auth = s.policy.auth
        source = s.client.host
        rule = s.client_rule
        service = rule.pam_servicename if rule is not None else None

        def go() -> Deferred[SocksUser]:
            return auth.login(method, credentials, pam_service=service)

        delay = auth.limiter.delay_for(source)
        d: Deferred[SocksUser]
        if delay > 0:
            d = deferLater(s.runtime.clock, delay, lambda: None).addCallback(
                lambda _: go()
            )
        else:
            d = go()
        s._pending = d  # type: ignore[assignment]

        def done(user: SocksUser) -> None:
            s._pending = None
            if s.state is State.CLOSED:
                return
            auth.limiter.succeeded(source)
            if s.runtime.metrics is not None:
                s.runtime.metrics.auth_result(method, True)
            ok(user)

        def refused(f: Failure) -> None:
            s._pending = None
            if s.state is State.CLOSED or f.check(CancelledError):
                return
            auth.limiter.failed(source)
            if s.runtime.metrics is not None:
                s.runtime.metrics.auth_result(method, False)
            why = f.getErrorMessage() if f.check(UnauthorizedLogin) else "error"
            if not f.check(UnauthorizedLogin):
                s.log.failure("{method} check failed", f, method=method)
            failed(printable(why, 200))

        d.addCallbacks(done, refused)

    def resume(self) -> None:
        """Back to negotiating: read again, handle what the codec holds."""
        s = self.session

        if s.state is State.CLOSED:
            return
        s.state = State.NEGOTIATING
        s._resume()
        try:
            s._negotiate(b"")
        except RemoteProtocolError as e:
            s.protocol_error(e)

    # -- client level ---------------------------------------------------------------

    def client_level(self) -> None:
        """Run the client-level checks, then evaluate the client-rules."""
        s = self.session
        s._pause()
        methods = s.policy.client_checks
        creds = self.connection_credentials()
        auth = s.policy.auth
        checks = [auth.login(m, creds) for m in methods]
        pending = DeferredList(checks, consumeErrors=True)
        s._pending = pending  # type: ignore[assignment]

        def checked(results: list[tuple[bool, Any]]) -> None:
            s._pending = None

            if s.state is State.CLOSED:
                return
            worked = [(m, r) for m, (ok, r) in zip(methods, results, strict=True) if ok]
            self.client_rules(worked)

        pending.addCallback(checked)

    def client_rules(self, worked: Sequence[tuple[str, SocksUser]]) -> None:
        s = self.session
        candidates: list[tuple[str, SocksUser | None]] = [("none", None), *worked]
        chosen: dict[str, Any] = {}

        def ask(answers: Answers) -> Match:
            best: Match | None = None
            for method, user in candidates:
                facts = ClientFacts(
                    s.client,
                    s.server,
                    method,
                    user.name or None if user else None,
                    user.groups if user else frozenset(),
                )
                match = s.policy.rules.match_client(facts, answers)
                if match.rule is None:
                    continue
                if best is None or match.rule.number < best.number:
                    best, chosen["method"], chosen["user"] = match, method, user
            return best if best is not None else Match(None)

        def then(match: Match) -> None:
            method = chosen.get("method", "none")
            user = chosen.get("user")
            s.clientmethod = method
            if user is not None:
                self.adopt(method, user)
                if method != "rfc931":
                    s.user = None  # PAM by address names nobody
            s._client_decided(match)

        s.decide(ask, then)

    # -- socks level -----------------------------------------------------------------

    def methods_offered(self, event: socks5.MethodsOffered) -> None:
        """RFC 1928 §3: walk our own method list in order, take the first offered."""
        s = self.session
        codec = s.codec
        assert isinstance(codec, socks5.Socks5ServerCodec)
        choice = choose_method(self.socks_methods(), event.methods)
        if choice is None:
            s.count_refusal("no-acceptable-method")
            s._write(codec.select_method(socks5.AuthMethod.NO_ACCEPTABLE))
            s.finish(
                "client offered no acceptable authentication method",
                reason_side="client",
            )
            return
        name, wire = choice
        s.method = name
        s._write(codec.select_method(wire))
        if wire == socks5.AuthMethod.NO_AUTH and name != "none":
            self.address_check(name, self.resume)

    def userpass(self, event: UserPassRequest) -> None:
        """RFC 1929 request: check it with the chosen method's backend."""
        s = self.session
        codec = s.codec
        assert isinstance(codec, socks5.Socks5ServerCodec)
        method = s.method
        if method not in PASSWORD_METHODS:
            # rfc931/pam.address chosen on wire method 2: the password is not
            # what they check (Dante's mapping); accept it and check the address.
            s._write(codec.auth_result(True))
            self.address_check(method, self.resume)
            return
        name = printable(event.username)
        creds = SocksCredentials(
            event.username,
            event.password,
            s.client.host,
            s.client.port,
            s.server.host,
            s.server.port,
        )

        def ok(user: SocksUser) -> None:
            self.adopt(method, user)
            routes = s.policy.routes
            if routes is not None and routes.forwards:
                # for parents that take the client's own (method: username)
                remember_credentials(s, event.username, event.password)
            s._write(codec.auth_result(True))
            self.resume()

        def failed(why: str) -> None:
            s._write(codec.auth_result(False))
            s.finish(
                f'{method} authentication failed for user "{name}": {why}',
                reason_side="client",
                verdict="block",
                always=True,
            )

        self.login(method, creds, ok, failed)

    def address_check(self, method: str, then: Callable[[], None]) -> None:
        """ident or PAM-by-address for ``method``; ``then`` runs either way."""
        s = self.session
        if method == "rfc931" and s.clientmethod == "rfc931" and s.user:
            then()  # the client-level ident answer is reused
            return

        def ok(user: SocksUser) -> None:
            self.adopt(method, user)
            then()

        def failed(why: str) -> None:
            s.user = None
            s.groups = frozenset()
            s.auth_error = f"{method}: {why}"
            then()

        self.login(method, self.connection_credentials(), ok, failed)

    def socks4(self, event: socks4.Socks4Request) -> None:
        """A v4 request: no method negotiation, so only password-less methods."""
        s = self.session

        name = "connect" if event.command is socks4.Socks4Command.CONNECT else "bind"
        ours = self.socks_methods()
        method = v4_method(ours)
        if method is None:
            s.state = State.REQUESTED
            s.command, s.target = name, event.address
            s._cancel_deadline()
            s._write(s.reply(Reply.NOT_ALLOWED))
            s.finish(
                "SOCKS v4 client refused: authentication required "
                f"(socksmethod: {' '.join(ours) or 'none given'})",
                reason_side="client",
                verdict="block",
                always=True,
            )
            return
        s.method = method
        if method == "none":
            s._requested(name, event.address)
            return
        self.address_check(method, lambda: s._requested(name, event.address))

    def with_ldap_groups(self, then: Callable[[], None]) -> None:
        """Look up ``ldap.group`` membership first when a rule needs it."""
        s = self.session
        if not s.policy.uses_ldap_group or s.user is None or s.ldap_groups is not None:
            then()
            return
        d = s.policy.auth.ldap_groups(s.user)
        if d is None:
            s.ldap_groups = frozenset()
            then()
            return
        s._pending = d  # type: ignore[assignment]

        def found(groups: frozenset[str]) -> None:
            s._pending = None
            if s.state is not State.CLOSED:
                s.ldap_groups = groups
                then()

        d.addCallback(found)
