"""One client connection: client-rules, SOCKS negotiation, the request, the relay.

The session is a thin shell: the codecs parse, the rule engine decides, the
command handlers (:mod:`dantex.server.connect`, :mod:`~dantex.server.bind`,
:mod:`~dantex.server.udp`) act.  Every way out (refusals, the relay's end
and their Dante-format lines) is in :mod:`dantex.server._session_end`.

Authentication (methods, RFC 1929, ident, SOCKS v4 refusal) is in
:mod:`dantex.server.session_auth`.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

from twisted.internet import address as taddress
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IDelayedCall,
    IHalfCloseableProtocol,
)
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from dantex.limits.sessions import client_rule_passed, limited, socks_rule_passed
from dantex.log.format import (
    dante_addr,
    session_line,
)
from dantex.protocol import socks4, socks5
from dantex.protocol._buffer import NEED_DATA
from dantex.protocol.address import Address, AddressType
from dantex.protocol.errors import RemoteProtocolError
from dantex.protocol.http_connect import HttpConnectRequest
from dantex.protocol.socks5 import Reply
from dantex.protocol.userpass import UserPassRequest
from dantex.rules.addresses import Answers
from dantex.rules.engine import ClientFacts, Match, NeedLookup, SocksFacts
from dantex.server import _srchost, httpconnect, sockopts
from dantex.server._deadlines import DeadlineQueue
from dantex.server._session_end import EMPTY, SessionEnds, State
from dantex.server.connect import start_connect
from dantex.server.session_auth import SessionAuth

if TYPE_CHECKING:
    from dantex.config.model import Rule
    from dantex.limits.monitors import Member
    from dantex.limits.sessions import Held
    from dantex.server.context import Policy, Runtime
    from dantex.server.relay import Relay

__all__ = ["SocksSession", "State"]

#: Client bytes accepted between the request and our reply before we pause.
_MAX_EARLY = 256 * 1024

#: How many DNS questions one rule decision may ask before we give up.
_MAX_LOOKUPS = 8


_COMMAND_NAMES = {
    socks5.Command.CONNECT: "connect",
    socks5.Command.BIND: "bind",
    socks5.Command.UDP_ASSOCIATE: "udpassociate",
}


def _address_of(addr: object) -> Address:
    if isinstance(addr, taddress.IPv4Address | taddress.IPv6Address):
        host = addr.host.partition("%")[0]
        return Address.from_host(host, addr.port)
    return Address(AddressType.IPV4, "0.0.0.0", 0)


@implementer(IHalfCloseableProtocol)
class SocksSession(Protocol, SessionEnds):
    """Server side of one SOCKS connection.

    :param policy: the configuration generation in force when it was accepted.
    :param runtime: resolver, connector, relays and clock.
    """

    #: the session's own state in slots: a tunnel is held for hours, and an
    #: instance dict of this many keys would cost ~1.5 KiB per session
    __slots__ = (
        "_buffered",
        "_deadline",
        "_early",
        "_pending",
        "auth_error",
        "cleanups",
        "client",
        "client_match",
        "client_rule",
        "clientmethod",
        "codec",
        "command",
        "external",
        "groups",
        "ldap_groups",
        "limits",
        "method",
        "monitored",
        "policy",
        "proxied",
        "relay",
        "runtime",
        "server",
        "socks_match",
        "started",
        "state",
        "target",
        "user",
        "version",
    )

    log = Logger()

    def __init__(self, policy: Policy, runtime: Runtime) -> None:
        self.policy = policy
        self.runtime = runtime
        self.state = State.ACCEPTING
        self.version = 0
        self.codec: (
            socks4.Socks4ServerCodec
            | socks5.Socks5ServerCodec
            | httpconnect.HttpTunnelCodec
            | None
        ) = None
        self.client = Address(AddressType.IPV4, "0.0.0.0", 0)
        self.server = self.client
        #: (client, destination) from a PROXY protocol header, set before
        #: connectionMade (dantex.server.proxyproto); None: a direct client
        self.proxied: tuple[Address, Address] | None = None
        self.client_rule: Rule | None = None
        self.client_match: Match | None = None
        self.socks_match: Match | None = None
        self.method = "none"
        self.user: str | None = None
        self.clientmethod = "none"
        self.groups: frozenset[str] = EMPTY
        #: LDAP groups for ``ldap.group:`` (None: not looked up yet)
        self.ldap_groups: frozenset[str] | None = None
        #: why an address-based check (ident, PAM rhost) failed, if it did
        self.auth_error: str | None = None
        self.command = "connect"
        self.target: Address | None = None
        self.external: Address | None = None
        self.relay: Relay | None = None
        #: the ``monitor { }`` watching this session, if one matched
        self.monitored: Member | None = None
        #: session slots and bucket (rules with limits only; dantex.limits)
        self.limits: Held | None = None
        self.started = 0.0
        self._deadline: IDelayedCall | DeadlineQueue | None = None
        self._pending: Deferred[object] | None = None
        self._buffered = b""
        self._early = 0
        #: run once when the session closes (sockets a handler holds).
        self.cleanups: list[Callable[[], None]] = []

    @property
    def auth(self) -> SessionAuth:
        """The authentication steps, made on use: a helper kept in a slot
        would hold the session in a reference cycle, and every finished
        session would wait for the cyclic collector."""
        return SessionAuth(self)

    # -- Twisted callbacks ---------------------------------------------------

    def connectionMade(self) -> None:
        transport = self.transport
        assert transport is not None
        self.started = self.runtime.clock.seconds()
        fast = getattr(transport, "socks_addresses", None)
        if fast is not None:
            self.client, self.server = fast()
        else:
            self.client = _address_of(transport.getPeer())
            self.server = _address_of(transport.getHost())
        if self.proxied is not None:  # behind a load balancer: its client
            self.client = self.proxied[0]
        self.runtime.sessions.add(self)
        timeout = self.policy.timeouts.negotiate
        if timeout > 0:
            deadlines = self.runtime.negotiation_deadlines(timeout)
            deadlines.add(self, self._negotiate_timeout)
            self._deadline = deadlines
        if self.policy.client_checks:
            self.auth.client_level()
            return
        facts = ClientFacts(self.client, self.server)
        self.decide(
            lambda answers: self.policy.rules.match_client(facts, answers),
            self._client_decided,
        )

    def dataReceived(self, data: bytes) -> None:
        state = self.state
        if state is State.RELAYING:
            # A relay that took the socket never gets here; UDP ASSOCIATE keeps
            # the control connection on this transport and watches it.
            hook = getattr(self.relay, "client_data", None)
            if hook is not None:
                hook(data)
            return
        if state is State.ACCEPTING:
            self._buffered += data
            return
        if state is not State.NEGOTIATING:
            # Bytes sent before our reply: kept for the target (the codec
            # hands them over as leftover), up to a bound, then we stop reading.
            if self.codec is not None:
                self.codec.feed(data)
                self._early += len(data)
                if self._early > _MAX_EARLY:
                    self._pause()
            return
        try:
            self._negotiate(data)
        except RemoteProtocolError as e:
            self.protocol_error(e)

    def readConnectionLost(self) -> None:
        # After the request, an EOF is the client being done sending: a relay
        # sees it again on the socket and passes it on.
        if self.state is State.RELAYING:
            hook = getattr(self.relay, "client_eof", None)
            if hook is not None:
                hook()
        elif self.state in (State.ACCEPTING, State.NEGOTIATING):
            self.finish("client closed during negotiation", reason_side="client")

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.state is State.RELAYING:
            hook = getattr(self.relay, "client_lost", None)
            if hook is not None:
                hook(reason)
            return
        if self.state is not State.CLOSED:
            self.finish(
                "client closed during negotiation", reason_side="client", close=False
            )

    # -- decisions that may need DNS ------------------------------------------

    def decide(
        self,
        ask: Callable[[Answers], Match],
        then: Callable[[Match], None],
        tries: int = 0,
    ) -> None:
        """Evaluate rules, doing the DNS lookups they need first (without blocking)."""
        try:
            match = ask(self.runtime.resolver)
        except NeedLookup as e:
            if tries >= _MAX_LOOKUPS:
                self.log.warn(
                    "rule evaluation needed too many lookups for {client}",
                    client=self.client,
                )
                then(Match(None))
                return
            self._pause()
            d = self.runtime.resolver.lookup(e.lookup.kind, e.lookup.key)
            self._pending = d  # type: ignore[assignment]

            def retry(_: object) -> None:
                self._pending = None
                if self.state is not State.CLOSED:
                    self.decide(ask, then, tries + 1)

            d.addCallback(retry)
            return
        then(match)

    def _pause(self) -> None:
        transport = self.transport
        if transport is not None:
            transport.pauseProducing()  # type: ignore[attr-defined]

    def _resume(self) -> None:
        transport = self.transport
        if transport is not None and self.state is not State.CLOSED:
            transport.resumeProducing()  # type: ignore[attr-defined]

    # -- client-rules ------------------------------------------------------------

    def _client_decided(self, match: Match) -> None:
        if self.state is State.CLOSED:
            return
        self.client_match = match
        self.client_rule = match.rule
        if not match.passed:
            why = "" if match.rule else ": no rules matched; using default block rule"
            self._client_refused(match, why)
            return
        options = self.policy.srchost_checks
        if options:  # Dante's srchost: DNS checks after the client-rule passed
            verdict = _srchost.check(self.runtime.resolver, self.client.host, options)
            if isinstance(verdict, Deferred):
                verdict.addCallback(lambda why: self._srchost_checked(match, why))
                return
            if verdict is not None:
                self._client_refused(match, f": srchost: {verdict}")
                return
        self._client_passed(match)

    def _srchost_checked(self, match: Match, why: str | None) -> None:
        if self.state is State.CLOSED:
            return
        if why is not None:
            self._client_refused(match, f": srchost: {why}")
        else:
            self._client_passed(match)

    def _client_refused(self, match: Match, why: str) -> None:
        """Log the block line (``why`` follows the addresses) and drop the client."""
        if self._logs(match, "connect", "disconnect", "error"):
            self.policy.log.info(
                session_line(
                    "block",
                    match.number,
                    "tcp",
                    "accept",
                    "]",
                    f"{dante_addr(self.client)} {dante_addr(self.server)}{why}",
                )
            )
        self.count_refusal("client-rule")
        self.state = State.CLOSED
        self._cleanup()
        transport = self.transport
        if transport is not None:
            transport.abortConnection()  # type: ignore[attr-defined]

    def _client_passed(self, match: Match) -> None:
        self._set_client_options(match.rule)
        if self._logs(match, "connect"):
            self.policy.log.info(
                session_line(
                    "pass",
                    match.number,
                    "tcp",
                    "accept",
                    "[",
                    f"{dante_addr(self.client)} {dante_addr(self.server)}",
                )
            )
        if match.rule is not None and limited(match.rule):
            client_rule_passed(self, match.rule)
        self.state = State.NEGOTIATING
        self._rule_negotiate_timeout(match)
        self._resume()
        if self._buffered:
            data, self._buffered = self._buffered, b""
            self.dataReceived(data)

    # -- negotiation ---------------------------------------------------------------

    def _negotiate(self, data: bytes) -> None:
        codec = self.codec
        if type(codec) is socks5.Socks5ServerCodec:
            request = codec.whole_request(data)
            if request is not None:
                self._requested(_COMMAND_NAMES[request.command], request.address)
                return
        elif codec is None:
            version = data[0]
            if version == socks5.VERSION:
                codec = self.codec = socks5.Socks5ServerCodec()
                self.version = version
                offered = codec.whole_greeting(data)
                if offered is not None:
                    self.auth.methods_offered(offered)
                    return
            elif version == socks4.VERSION:
                codec = self.codec = socks4.Socks4ServerCodec()
            elif httpconnect.first_event_is_http(self):
                codec = self.codec = httpconnect.HttpTunnelCodec()
                version = httpconnect.HTTP_VERSION
            else:
                from dantex.server.proxyproto import unknown_version

                raise RemoteProtocolError(unknown_version(data), reply=None)
            self.version = version
        codec.feed(data)
        while self.state is State.NEGOTIATING:
            event = codec.next_event()
            if event is NEED_DATA:
                return
            if isinstance(event, socks5.MethodsOffered):
                self.auth.methods_offered(event)
            elif isinstance(event, UserPassRequest):
                self.auth.userpass(event)
            elif isinstance(event, socks5.Request):
                self._requested(_COMMAND_NAMES[event.command], event.address)
            elif isinstance(event, socks4.Socks4Request):
                self.auth.socks4(event)
            elif isinstance(event, HttpConnectRequest):
                httpconnect.http_requested(self, event)

    def _requested(self, command: str, target: Address) -> None:
        dlog = self.policy.log
        if dlog.debug_level > 0:
            dlog.debug(
                f"{self._client_text()}: {self.proxyprotocol()} {command} request "
                f"for {dante_addr(target)}"
            )
        self.state = State.REQUESTED
        self.command = command
        self.target = target
        self._cancel_deadline()
        if command in ("bind", "udpassociate"):
            from dantex.server.bind import start_bind
            from dantex.server.udp import start_udp

            self._pause()
            if self.auth_error is not None:  # ident/PAM-by-address failed
                self.refuse(Reply.NOT_ALLOWED, self.auth_error)
                return
            # BIND binds first: its rules see the bound address
            start = start_bind if command == "bind" else start_udp
            self.auth.with_ldap_groups(lambda: start(self))
            return
        if self.version == socks4.VERSION and target.type is AddressType.DOMAIN:
            pass  # SOCKS 4A: resolved like a SOCKS 5 host name (Dante has no 4A)
        if target.port == 0 or (target.is_ip and target.host in ("0.0.0.0", "::")):
            self.refuse(
                Reply.ADDRESS_TYPE_NOT_SUPPORTED,
                f"unbound port or address ({dante_addr(target)}) in request",
            )
            return
        if self.policy.uses_ldap_group:
            self.auth.with_ldap_groups(lambda: self._decide_socks(command, target))
        else:
            self._decide_socks(command, target)

    def _decide_socks(self, command: str, target: Address) -> None:
        # the facts are taken now: after the LDAP groups were looked up
        facts = self.socks_facts(self.client, target, command)
        rules = self.policy.rules
        self.decide(
            lambda answers: rules.match_socks(facts, answers), self._socks_decided
        )

    def socks_facts(
        self, client: Address, target: Address | None, command: str
    ) -> SocksFacts:
        """What socks-rules see of ``command`` from ``client`` to ``target``,
        with this session's authentication."""
        return SocksFacts(
            client,
            target,
            command,
            self.proxyprotocol(),
            socksmethod=self.method,
            clientmethod=self.clientmethod,
            user=self.user,
            groups=self.groups,
            ldap_groups=self.ldap_groups or EMPTY,
        )

    def proxyprotocol(self) -> str:
        """``socks_v4``, ``socks_v5`` or ``http`` (``extension: httpconnect``)."""
        if self.version == socks5.VERSION:
            return "socks_v5"
        return "http" if self.version == httpconnect.HTTP_VERSION else "socks_v4"

    def _socks_decided(self, match: Match) -> None:
        if self.state is State.CLOSED:
            return
        self.socks_match = match
        if not match.passed:
            self.blocked(match)
            return
        if self.auth_error is not None:
            self.blocked(match, reason=self.auth_error)
            return
        if not self.admit_limits(match):
            return
        self._set_client_options(match.rule)
        start_connect(self, match)

    def _set_client_options(self, rule: Rule | None) -> None:
        """A passing rule's ``internal.*`` socket options, on the client's
        connection (the global ones it inherited from the listening socket)."""
        if rule is None or not rule.socket_options:
            return
        options = sockopts.compile_options(rule.socket_options, "internal")
        transport = self.transport
        sock = getattr(transport, "sock", None)
        handle = getattr(transport, "getHandle", None)
        if sock is None and handle is not None:
            sock = handle()
        if isinstance(sock, socket.socket):
            sockopts.apply(sock, options, self.policy.log.warning)

    def admit_limits(self, match: Match) -> bool:
        """Count this session against the passing socks-rule's limits
        (:mod:`dantex.limits.sessions`); False when refused (answered)."""
        if self.limits is None and not limited(match.rule):
            return True
        assert match.rule is not None
        why = socks_rule_passed(self, match.rule, self.client_rule)
        if why is not None:
            self.blocked(match, reason=why)
            return False
        return True
