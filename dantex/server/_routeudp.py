"""UDP ASSOCIATE through a route's SOCKS 5 parents (dantex: danted chains CONNECT only).

When a route names ``udpassociate`` (or ``protocol: udp``), the association
the client asks for is relayed through one the server opens with the last
parent: the route is chosen when the association is set up (``from:``,
``command:``, ``protocol:``; the destinations are not known yet), a UDP
socket facing the parent is bound (``external:`` applies; its address is
what we declare in the parent's request) and the parent's UDP ASSOCIATE is
negotiated over the route's path (its control connection may go through
several parents; the datagrams go straight to the last parent's relay).
Only when that stands does the client get its reply, so routes fail over
as for CONNECT.

Then each datagram is handled as by a local association (the same rules,
caches, counters and log lines, :mod:`._udprelay`), except that it leaves
with a SOCKS header naming its destination, for the parent's relay, and
that its destination must be in the route's ``to:`` (others are dropped and
logged).  Replies from the parent's relay are unwrapped; only those from a
destination the client has sent to go on, after the ``udpreply`` rules.
Host names are resolved here, as for local associations, so that replies
can be matched to destinations.  The association ends with either control
connection.  A ``via: direct`` route is the local association.
"""

from __future__ import annotations

import socket
from functools import partial
from typing import TYPE_CHECKING

from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure

from dantex.protocol.address import Address, decode_address
from dantex.protocol.errors import RemoteProtocolError
from dantex.protocol.socks5 import Command, Reply
from dantex.rules.addresses import NeedLookup
from dantex.rules.engine import Match
from dantex.server import _udplog as udplog
from dantex.server._chain import Attempt, Reached
from dantex.server._failover import Failover
from dantex.server._udprelay import UdpAssociation, _Route
from dantex.server._udpsock import UdpEndpoint, udp_socket
from dantex.server.connect import _kernel_source, rule_timeout, source_for
from dantex.server.context import family_of
from dantex.server.errors import ConnectFailed
from dantex.server.lean import Conn
from dantex.server.relay import EndReason, TransportTarget, _error_text

if TYPE_CHECKING:
    from dantex.server.route import Plan
    from dantex.server.session import SocksSession

__all__ = ["ParentUdpAssociation", "RoutedUdp", "routed_udp"]

_WILDCARD: dict[int, str] = {socket.AF_INET: "0.0.0.0", socket.AF_INET6: "::"}


def routed_udp(
    session: SocksSession,
    match: Match,
    sock: socket.socket,
    expect_ip: str,
    expect_port: int,
) -> bool:
    """Start a routed association if a route names ``udpassociate``; False:
    serve it here.  ``sock`` is the bound client-facing socket."""
    table = session.policy.routes
    if table is None or "udpassociate" not in table.commands:
        return False
    RoutedUdp(session, match, sock, expect_ip, expect_port).start()
    return True


class RoutedUdp(Failover):
    """A UDP ASSOCIATE request trying its routes in turn."""

    command = "udpassociate"

    def __init__(
        self,
        session: SocksSession,
        match: Match,
        sock: socket.socket,
        expect_ip: str,
        expect_port: int,
    ) -> None:
        super().__init__(session, match)
        self.sock = sock
        self.expect_ip = expect_ip
        self.expect_port = expect_port
        self._outside: socket.socket | None = None
        session.cleanups.append(self._close_sockets)

    @property
    def plan_target(self) -> Address | None:
        return None

    def _close_sockets(self) -> None:
        for sock in (self.sock, self._outside):
            if sock is not None:
                sock.close()

    def attempt(self, plan: Plan) -> Attempt:
        session = self.session
        if self._outside is not None:
            self._outside.close()
        outside, declared = self._bind_outside(plan)
        self._outside = outside
        return Attempt(
            session,
            plan,
            declared,
            rule_timeout(session, "connect"),
            command=Command.UDP_ASSOCIATE,
        )

    def _bind_outside(self, plan: Plan) -> tuple[socket.socket, Address]:
        """The socket facing the last parent, and the address we declare."""
        session = self.session
        host = plan.hops[-1].host
        ip = host if Address.from_host(host, 1).is_ip else None
        family = family_of(ip) if ip is not None else socket.AF_INET
        source: str | None = None
        if ip is not None:
            try:
                source = source_for(session.policy, ip, session.server.host)
            except ConnectFailed:
                source = None
            if source is None:
                source = _kernel_source(family, ip)
        sock = udp_socket(family)
        sock.bind((source or _WILDCARD[family], 0))
        bound_ip, port = sock.getsockname()[:2]
        return sock, Address.from_host(str(bound_ip).partition("%")[0], int(port))

    def direct(self) -> None:
        from dantex.server.udp import associate

        self._release()
        associate(self.session, self.match, self.sock, self.expect_ip, self.expect_port)

    def _release(self) -> None:
        """The sockets now belong to the association."""
        if self._close_sockets in self.session.cleanups:
            self.session.cleanups.remove(self._close_sockets)

    def reached(self, reached: Reached, plan: Plan) -> None:
        from dantex.server.udp import associate

        outside = self._outside
        assert outside is not None
        relay = reached.bound
        last = plan.hops[-1].host
        if relay is None or relay.host in _WILDCARD.values() or not relay.is_ip:
            relay = Address.from_host(last, relay.port if relay is not None else 0)
        try:
            outside.connect((relay.host, relay.port))
        except OSError as e:
            reached.target.close()
            self.session.refuse(
                Reply.GENERAL_FAILURE,
                f"cannot reach the parent's UDP relay: {e.strerror}",
            )
            return
        self._release()
        self._outside = None
        self.log_route(plan, _local(outside), relay)
        make = partial(
            ParentUdpAssociation,
            plan=plan,
            control=reached.target,
            outside=outside,
            relay=relay,
        )
        associate(
            self.session, self.match, self.sock, self.expect_ip, self.expect_port, make
        )


def _local(sock: socket.socket) -> Address:
    host, port = sock.getsockname()[:2]
    return Address.from_host(str(host).partition("%")[0], int(port))


class _ControlWatch(Protocol):
    """The parent's control connection over TLS: its end ends the association."""

    def __init__(self, association: ParentUdpAssociation) -> None:
        self.association = association

    def dataReceived(self, data: bytes) -> None:
        pass  # nothing flows on a control connection (RFC 1928)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.association.control_lost(reason)


class ParentUdpAssociation(UdpAssociation):
    """A local association whose datagrams go through the parent's relay.

    :param plan: the route taken (its ``to:`` filters destinations).
    :param control: the control connection to the (first) parent.
    :param outside: the UDP socket facing the parent, connected to ``relay``.
    """

    kind = "udp-parent"

    def __init__(
        self,
        session: SocksSession,
        match: Match,
        sock: socket.socket,
        internal: Address,
        declared: Address,
        expect_ip: str,
        expect_port: int,
        *,
        plan: Plan,
        control: Conn | TransportTarget,
        outside: socket.socket,
        relay: Address,
    ) -> None:
        super().__init__(
            session, match, sock, internal, declared, expect_ip, expect_port
        )
        self.plan = plan
        self.control = control
        self.parent = UdpEndpoint(outside, self._from_parent, "external", self._lost)
        self.externals[outside.family] = self.parent
        self._parent_relay = relay
        self._headers: dict[tuple[str, int], bytes] = {}

    def start(self) -> None:
        super().start()
        self._reactor.addReader(self.parent)
        control = self.control
        if isinstance(control, Conn):
            control.read_cb = self._control_readable
            control.lost_cb = self.control_lost
            control.set_interest(True, False)
        else:
            control.attach(_ControlWatch(self))

    def _control_readable(self) -> None:
        control = self.control
        assert isinstance(control, Conn)
        try:
            data = control.sock.recv(4096)
        except BlockingIOError:
            return
        except OSError as e:
            self._close(EndReason("target", e.strerror))
            return
        if not data:
            self._close(EndReason("target"))

    def control_lost(self, reason: Failure) -> None:
        """The parent's control connection is gone: so is the association."""
        self._close(EndReason("target", _error_text(reason)))

    def _close(self, reason: EndReason) -> None:
        if self.closed:
            return
        super()._close(reason)
        self.control.close()

    # -- client -> parent ----------

    def _external(self, family: int, ip: str) -> UdpEndpoint:
        return self.parent

    def _with_address(
        self, key: bytes, target: Address, match: Match, ip: str, ttl: float = 0.0
    ) -> None:
        if not self._covered(target, ip):
            why = f"not covered by the to: of route #{self.plan.route.number}"
            self._route_failed(key, target, match, why)
            return
        super()._with_address(key, target, match, ip, ttl)

    def _covered(self, target: Address, ip: str) -> bool:
        """Whether the route's ``to:`` has the destination (by name or address)."""
        table = self.session.policy.routes
        assert table is not None
        resolver = self.session.runtime.resolver
        for candidate in (target, Address.from_host(ip, target.port)):
            try:
                return table.covers(self.plan, candidate, resolver)
            except NeedLookup:
                continue
        return False

    def _send(self, route: _Route, external: UdpEndpoint, payload: memoryview) -> None:
        """The payload with a SOCKS header for its destination, to the relay."""
        sockaddr = route.sockaddr
        assert sockaddr is not None
        header = self._headers.get(sockaddr)
        if header is None:
            header = b"\x00\x00\x00" + Address.from_host(*sockaddr).encode()
            if len(self._headers) > 4096:
                self._headers.clear()
            self._headers[sockaddr] = header
        try:
            external.sock.sendmsg((header, payload))
        except OSError:
            return  # full buffer or an earlier ICMP error: UDP may drop
        written = self.target_written
        written[0] += len(payload)
        written[1] += 1
        if route.log_io:
            udplog.datagram_line(self, "pass", route.match, route.target, len(payload))

    # -- parent -> client ----------

    def _from_parent(self, data: bytes, addr: tuple[str, int]) -> None:
        """RFC 1928 §7 from the parent's relay: unwrap, then as a reply from
        the destination it names."""
        if len(data) < 4 or data[0] or data[1] or data[2]:
            return  # malformed, or a fragment (dropped, as by Dante)
        try:
            parsed = decode_address(data, 3)
        except RemoteProtocolError:
            return
        if parsed is None:
            return
        source, end = parsed
        if not source.is_ip:
            return
        self._from_peer(data[end:], (source.host, source.port))
