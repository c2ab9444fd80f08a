"""One UDP association's datagram relay (see :mod:`dantex.server.udp`).

Hot path per datagram from the client: one ``recvfrom``, a dict lookup on
the raw SOCKS header (which caches the rule decision, the resolved address
and the socket to send from), one ``send``.  Per reply: one ``recvfrom``, a
dict lookup on the sender (only destinations the client used are there),
one ``sendmsg`` with the cached header.  Decisions that need DNS are taken
asynchronously while up to a few datagrams per destination wait.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

from twisted.logger import Logger
from twisted.python.failure import Failure

from dantex.limits.shaper import TableMeter
from dantex.protocol.address import Address, AddressType, decode_address
from dantex.protocol.errors import RemoteProtocolError
from dantex.rules.engine import Match, NeedLookup, SocksFacts
from dantex.server import _udplog as udplog
from dantex.server import sockopts
from dantex.server._state import State
from dantex.server._udpshape import UdpShaper
from dantex.server._udpsock import UdpEndpoint, bind_pinned, disconnect, udp_socket
from dantex.server.connect import rule_timeout, source_for
from dantex.server.context import family_of
from dantex.server.errors import ConnectFailed
from dantex.server.relay import EndReason, Relay, _error_text

if TYPE_CHECKING:
    from dantex.server.session import SocksSession

__all__ = ["UdpAssociation"]

#: DNS answers one decision may wait for before giving up (as the session).
_MAX_LOOKUPS = 8
#: Cached forwarding decisions per association (cleared when full).
_MAX_ROUTES = 1024
#: Destinations remembered per association for replies (oldest forgotten).
_MAX_DESTINATIONS = 4096
#: Datagrams held per destination while its name or rules need DNS, and
#: destinations waiting at once (more are dropped: DNS is not free).
_MAX_WAITING = 16
_MAX_PENDING = 64
#: Seconds a route through a resolved name, or a failed one, is kept.
_ROUTE_TTL = 60.0
_FAILED_TTL = 5.0
_WILDCARD: dict[int, str] = {socket.AF_INET: "0.0.0.0", socket.AF_INET6: "::"}
#: RSV(2) FRAG ATYP ADDR PORT: header length by ATYP (domain: 7 + name length).
_HEADER_LEN = {1: 10, 4: 22}


class _Route:
    """Where datagrams with one SOCKS header go, and what the rules said.

    ``external`` is None when they go nowhere: blocked, or ``error``.
    """

    __slots__ = (
        "error",
        "expires",
        "external",
        "log_io",
        "match",
        "passed",
        "sockaddr",
        "target",
    )

    def __init__(
        self,
        match: Match,
        target: Address,
        sockaddr: tuple[str, int] | None = None,
        external: UdpEndpoint | None = None,
        expires: float = 0.0,
        error: str = "",
    ) -> None:
        self.match = match
        self.passed = match.passed
        self.target = target
        self.sockaddr = sockaddr
        self.external = external
        self.expires = expires
        self.error = error
        rule = match.rule
        self.log_io = rule is not None and "iooperation" in rule.log


class _Sender:
    """A destination the client has sent to, as a sender of replies."""

    __slots__ = ("address", "header", "log_io", "match", "passed")

    def __init__(self, address: Address) -> None:
        self.address = address
        self.header = b"\x00\x00\x00" + address.encode()  # RFC 1928 §7
        self.match: Match | None = None
        self.passed = False
        self.log_io = False


class UdpAssociation(Relay):
    """One UDP ASSOCIATE: the client-facing socket, the external sockets (one
    per family, bound on first use), the decision caches and the counters.

    :param sock: the client-facing socket, bound (and connected to the client
        when its address is known in full).
    :param expect_ip: the only IP the client may send from.
    :param expect_port: and the only port, if not 0.
    """

    kind = "udp"
    log = Logger()

    def __init__(
        self,
        session: SocksSession,
        match: Match,
        sock: socket.socket,
        internal: Address,
        declared: Address,
        expect_ip: str,
        expect_port: int,
    ) -> None:
        super().__init__(
            session.runtime.clock, self._log_end, rule_timeout(session, "io_udp")
        )
        self.session = session
        self.match = match
        self.internal = internal
        self.declared = declared
        self.expect_ip = expect_ip
        self.expect_port = expect_port
        self.inside = UdpEndpoint(sock, self._from_client, "internal", self._lost)
        if expect_port:
            self.inside.connected = (expect_ip, expect_port)
        #: the client's UDP address, from its first datagram.
        self.client: Address | None = None
        self.externals: dict[int, UdpEndpoint] = {}
        #: the client's only destination so far (None: none yet, or several).
        self.destination: Address | None = None
        self.client_read = [0, 0]  # bytes, datagrams (with SOCKS headers)
        self.client_written = [0, 0]
        self.target_read = [0, 0]  # payload only
        self.target_written = [0, 0]
        #: datagrams dropped for coming from neither the client nor its peers.
        self.dropped = 0
        self.closed = False
        self._pinned: dict[int, bool] = {}
        self._routes: dict[bytes, _Route] = {}
        self._senders: dict[tuple[str, int], _Sender] = {}
        self._waiting: dict[bytes, list[bytes]] = {}
        self._several = False
        self._stranger_logged = False
        self._client_sockaddr: tuple[str, int] | None = None
        self._clock = session.runtime.clock
        self._reactor = session.runtime.reactor
        self._log_errors = session._logs(match, "error")
        self._external_text = udplog.sock_addr(None)
        #: ``bandwidth:`` of the session's rules (None: not shaped)
        self._shaper: UdpShaper | None = None
        held = session.limits
        bandwidth = held.bandwidth if held is not None else None
        if bandwidth is not None:
            assert held is not None
            meter = TableMeter(
                held.table, bandwidth.digest, bandwidth.rate, self._clock
            )
            self._shaper = UdpShaper(meter, self._reactor, self._clock, self._sockets)

    # -- the control connection ----------

    def start(self) -> None:
        """Log the start, watch the client-facing socket and the control link."""

        session = self.session
        session.relay = self
        session.state = State.RELAYING
        udplog.start_line(self)
        self._reactor.addReader(self.inside)
        session._resume()

    def client_data(self, data: bytes) -> None:
        """Bytes on the control connection mean nothing (RFC 1928): dropped."""

    def client_eof(self) -> None:
        """The control connection was closed: so is the association."""
        self._close(EndReason("client"))

    def client_lost(self, reason: Failure) -> None:
        """The control connection is gone."""
        self._close(EndReason("client", _error_text(reason)))

    def abort(self, reason: EndReason, *, reset: bool = True) -> None:
        self._close(reason)

    def counts(self) -> tuple[int, int, int, int]:
        return (
            self.client_read[0],
            self.client_written[0],
            self.target_read[0],
            self.target_written[0],
        )

    def _sockets(self) -> tuple[UdpEndpoint, ...]:
        return (self.inside, *self.externals.values())

    def _close(self, reason: EndReason) -> None:
        if self.closed:
            return
        self.closed = True
        if self._shaper is not None:
            self._shaper.stop()
            self._shaper = None  # it calls us back: no cycle left behind
        if self.externals:  # its address, for the end line, before it closes
            self._external_text = udplog.sock_addr(next(iter(self.externals.values())))
        for endpoint in (self.inside, *self.externals.values()):
            endpoint.closed = True
            self._reactor.removeReader(endpoint)
            endpoint.sock.close()
        self._waiting.clear()
        session = self.session
        if session.monitored is not None:
            session.monitored.ended(reason.side)
            session.monitored = None
        transport = session.transport
        self._ended(reason)
        if transport is not None:
            transport.loseConnection()

    def _lost(self, reason: Failure) -> None:
        """A socket failed under us (a bug): end the association, say why."""
        self.log.failure("UDP relay failed", reason)
        self._close(EndReason("timeout", "session error"))

    def _log_end(self, reason: EndReason) -> None:
        udplog.end_lines(self, reason, self._external_text)
        self.session.handler_ended()

    # -- client -> destination ----------

    def _from_client(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.client is None:
            if addr[0].partition("%")[0] != self.expect_ip or (
                self.expect_port and addr[1] != self.expect_port
            ):
                self._stranger(addr, "internal")
                return
            self._lock_client(addr)
        now = self.last_active = self._clock.seconds()
        n = len(data)
        if self._shaper is not None:
            self._shaper.charge(n)
        if n > 4:
            # The hot path: a header seen before (a cached key always starts
            # RSV RSV FRAG = 0 0 0, so this also checks them).
            atyp = data[3]
            hlen = _HEADER_LEN.get(atyp) or (7 + data[4] if atyp == 3 else n + 1)
            route = self._routes.get(data[:hlen])
            if (
                route is not None
                and route.external is not None
                and n >= hlen
                and (not route.expires or route.expires >= now)
            ):
                read = self.client_read
                read[0] += n
                read[1] += 1
                self._send(route, route.external, memoryview(data)[hlen:])
                return
        self._check_header(data, n)

    def _check_header(self, data: bytes, n: int) -> None:
        """A datagram with a new (or bad) header: check it, then route it."""
        if n < 4 or data[0] or data[1]:
            self._bad_datagram("truncated SOCKS UDP header or non-zero RSV")
            return
        if data[2]:
            self._bad_datagram("fragmented socks udp packets are not supported", data)
            return
        read = self.client_read
        read[0] += n
        read[1] += 1
        atyp = data[3]
        hlen = _HEADER_LEN.get(atyp)
        if hlen is None:
            if atyp != AddressType.DOMAIN:
                self._bad_datagram(f"unknown address type {atyp} in SOCKS UDP header")
                return
            hlen = 7 + data[4] if n > 4 else n + 1
        if n < hlen:
            self._bad_datagram("truncated address in SOCKS UDP header")
            return
        key = data[:hlen]
        route = self._routes.get(key)
        if route is None or (route.expires and route.expires < self.last_active):
            self._new_route(key, data)
            return
        self._forward(route, data, hlen)

    def _lock_client(self, addr: tuple[str, int]) -> None:
        """The first datagram from the client: remember it, connect to it."""
        ip, port = addr[0].partition("%")[0], addr[1]
        self.client = Address.from_host(ip, port)
        self._client_sockaddr = (addr[0], port)
        if self.inside.connected is None:
            try:
                self.inside.sock.connect((addr[0], port))
                self.inside.connected = (ip, port)
            except OSError:
                pass

    def _forward(self, route: _Route, data: bytes, hlen: int) -> None:
        external = route.external
        if external is not None:
            self._send(route, external, memoryview(data)[hlen:])
            return
        match = route.match
        if not route.passed:
            if self.session._logs(match, *udplog.BLOCK_FLAGS):
                udplog.datagram_line(self, "block", match, route.target)
        elif self._log_errors:
            udplog.datagram_line(self, "block", match, route.target, why=route.error)

    def _send(self, route: _Route, external: UdpEndpoint, payload: memoryview) -> None:
        """The payload to its destination, from the family's external socket."""
        sockaddr = route.sockaddr
        try:
            if external.connected is sockaddr:
                external.sock.send(payload)
            else:
                external.sock.sendto(payload, sockaddr)  # type: ignore[arg-type]
        except ConnectionRefusedError:  # an earlier ICMP error: try once more
            try:
                external.sock.send(payload)
            except OSError:
                return
        except OSError:
            return  # full buffer or unreachable: UDP may drop, so do we
        written = self.target_written
        written[0] += len(payload)
        written[1] += 1
        if route.log_io:
            udplog.datagram_line(self, "pass", route.match, route.target, len(payload))

    def _new_route(self, key: bytes, data: bytes) -> None:
        """First datagram with this header: decide, resolve, pick a socket."""
        waiting = self._waiting.get(key)
        if waiting is not None:  # already being decided
            if len(waiting) < _MAX_WAITING:
                waiting.append(data)
            return
        if len(self._waiting) >= _MAX_PENDING:
            return
        try:
            parsed = decode_address(key, 3)
        except RemoteProtocolError as e:
            self._bad_datagram(str(e))
            return
        assert parsed is not None and self.client is not None
        target = parsed[0]
        if len(self._routes) >= _MAX_ROUTES:
            self._routes.clear()
        self._waiting[key] = [data]
        facts = self._facts(self.client, target, "udpassociate")
        self._decide(facts, lambda match: self._decided(key, target, match))

    def _decided(self, key: bytes, target: Address, match: Match) -> None:
        if self.closed:
            return
        if not match.passed:
            self._route_ready(key, _Route(match, target))
        elif target.is_ip:
            self._with_address(key, target, match, target.host)
        elif match.matched_ip:
            self._with_address(key, target, match, match.matched_ip)
        else:
            resolver = self.session.runtime.resolver
            cached = resolver.cached("forward", target.host)
            if cached is not None:
                self._resolved(key, target, match, cached)
                return
            d = resolver.forward(target.host)
            d.addCallback(lambda ips: self._resolved(key, target, match, ips))

    def _resolved(
        self, key: bytes, target: Address, match: Match, ips: tuple[str, ...]
    ) -> None:
        if self.closed:
            return
        if not ips:
            self._route_failed(key, target, match, f"could not resolve {target.host}")
            return
        # A route through a name follows the name: recomputed after a while.
        self._with_address(key, target, match, ips[0], ttl=_ROUTE_TTL)

    def _with_address(
        self, key: bytes, target: Address, match: Match, ip: str, ttl: float = 0.0
    ) -> None:
        try:
            external = self._external(family_of(ip), ip)
        except ConnectFailed as e:
            self._route_failed(key, target, match, e.reason)
            return
        except OSError as e:
            self._route_failed(key, target, match, str(e.strerror))
            return
        sockaddr = (ip, target.port)
        self._add_destination(external, sockaddr)
        session = self.session
        if session.monitored is None:  # watched from a destination a monitor takes
            session.monitored = session.runtime.monitors.attach(
                session.client, target, "udpassociate", self
            )
        until = self._clock.seconds() + ttl if ttl else 0.0
        self._route_ready(key, _Route(match, target, sockaddr, external, until))

    def _route_failed(
        self, key: bytes, target: Address, match: Match, why: str
    ) -> None:
        until = self._clock.seconds() + _FAILED_TTL
        self._route_ready(key, _Route(match, target, expires=until, error=why))

    def _route_ready(self, key: bytes, route: _Route) -> None:
        self._routes[key] = route
        for data in self._waiting.pop(key, []):
            self._forward(route, data, len(key))

    def _external(self, family: int, ip: str) -> UdpEndpoint:
        """The external socket for ``family``, bound on first use."""
        endpoint = self.externals.get(family)
        if endpoint is not None:
            return endpoint
        session = self.session
        source = source_for(session.policy, ip, session.server.host)
        sock = udp_socket(family)
        sockopts.apply(sock, session.external_options(), session.policy.log.warning)
        try:
            self._pinned[family] = bind_pinned(sock, source or _WILDCARD[family])
        except OSError:
            sock.close()
            raise
        endpoint = UdpEndpoint(sock, self._from_peer, "external", self._lost)
        self.externals[family] = endpoint
        self._reactor.addReader(endpoint)
        if self._shaper is not None and self._shaper.holding:
            self._shaper.hold(endpoint)
        return endpoint

    def _add_destination(
        self, external: UdpEndpoint, sockaddr: tuple[str, int]
    ) -> None:
        """Welcome replies from ``sockaddr``; apply ``udp.connectdst``."""
        if sockaddr not in self._senders:
            if len(self._senders) >= _MAX_DESTINATIONS:
                del self._senders[next(iter(self._senders))]
            self._senders[sockaddr] = _Sender(Address.from_host(*sockaddr))
        if self._several:
            return
        only = self.destination
        if only is None:
            self.destination = Address.from_host(*sockaddr)
            if self.session.policy.config.udp_connectdst and self._pinned.get(
                family_of(sockaddr[0])
            ):
                try:
                    external.sock.connect(sockaddr)
                    external.connected = sockaddr
                except OSError:
                    pass
        elif (only.host, only.port) != sockaddr:
            # A second destination: every destination may now reply, so the
            # sockets are disconnected (they keep their pinned ports).
            self._several = True
            self.destination = None
            for endpoint in self.externals.values():
                if endpoint.connected is not None and disconnect(endpoint.sock):
                    endpoint.connected = None

    # -- destination -> client ----------

    def _from_peer(self, data: bytes, addr: tuple[str, int]) -> None:
        sender = self._senders.get((addr[0], addr[1]))
        if sender is None:
            self._stranger(addr, "external")
            return
        self.last_active = self._clock.seconds()
        read = self.target_read
        read[0] += len(data)
        read[1] += 1
        if self._shaper is not None:
            self._shaper.charge(len(data))
        match = sender.match
        if match is None:
            assert self.client is not None
            facts = self._facts(sender.address, self.client, "udpreply")

            def decided(match: Match) -> None:
                if not self.closed:
                    sender.match = match
                    sender.passed = match.passed
                    rule = match.rule
                    sender.log_io = rule is not None and "iooperation" in rule.log
                    self._to_client(sender, match, data)

            self._decide(facts, decided)
            return
        self._to_client(sender, match, data)

    def _to_client(self, sender: _Sender, match: Match, data: bytes) -> None:
        if not sender.passed:
            if self.session._logs(match, *udplog.BLOCK_FLAGS):
                udplog.reply_line(self, "block", match, sender.address)
            return
        inside = self.inside
        try:
            if inside.connected is not None:
                n = inside.sock.sendmsg((sender.header, data))
            else:
                assert self._client_sockaddr is not None
                n = inside.sock.sendmsg(
                    (sender.header, data), (), 0, self._client_sockaddr
                )
        except OSError:
            return
        written = self.client_written
        written[0] += n
        written[1] += 1
        if sender.log_io:
            udplog.reply_line(self, "pass", match, sender.address, len(data))

    # -- rules ----------

    def _facts(self, client: Address, target: Address, command: str) -> SocksFacts:
        return self.session.socks_facts(client, target, command)

    def _decide(
        self, facts: SocksFacts, then: Callable[[Match], None], tries: int = 0
    ) -> None:
        """Evaluate the socks-rules, asking the resolver first when needed."""
        resolver = self.session.runtime.resolver
        try:
            match = self.session.policy.rules.match_socks(facts, resolver)
        except NeedLookup as e:
            if tries >= _MAX_LOOKUPS:
                then(Match(None))
                return
            d = resolver.lookup(e.lookup.kind, e.lookup.key)
            d.addCallback(
                lambda _: None if self.closed else self._decide(facts, then, tries + 1)
            )
            return
        then(match)

    # -- what is dropped ----------

    def _stranger(self, addr: tuple[str, int], side: str) -> None:
        """A datagram from neither the client nor one of its destinations."""
        self.dropped += 1
        if not self._stranger_logged and self._log_errors:
            self._stranger_logged = True
            sender = Address.from_host(addr[0].partition("%")[0], addr[1])
            udplog.stranger_line(self, sender, side)

    def _bad_datagram(self, why: str, data: bytes | None = None) -> None:
        if not self._log_errors:
            return
        target: Address | None = None
        if data is not None:
            try:
                parsed = decode_address(data, 3)
            except RemoteProtocolError:
                parsed = None
            target = parsed[0] if parsed is not None else None
        udplog.datagram_line(self, "block", self.match, target, why=why, bad=True)
