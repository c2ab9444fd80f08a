"""The BIND command (RFC 1928 §4 and §6, SOCKS 4): Dante's semantics (§2.7).

A listening socket is bound on the external side first, because the
socks-rules see BIND with ``to:`` = the address bound.  The first reply
carries that address (or ``external.advertise``); the first connection to it
gets the second reply, with the connecting peer's address, and is then
relayed over the control connection like a CONNECT (splice or copy relay,
same backpressure and half-close).  Only one connection is taken: if the
request named a peer address, a connection from any other address ends the
session with reply 0x02 (the port is ignored, as Dante does); the peer must
also pass the socks-rules as ``bindreply`` (``from:`` = the peer, ``to:`` =
the client).  Waiting for the peer is bounded by ``timeout.io`` only (Dante
waits as long as the client stays connected; so does the default, 0).

A request for 255.255.255.255 asks for Dante's BIND extension (keep
listening, connect each peer back to the client): refused as danted refuses
it when ``extension: bind`` is off.  Not implemented: Dante 1.4's own client
never sends that request (socksify asks for 0.0.0.0 and its port, observed).

Log lines follow danted 1.4.2 as observed: ``tcp/bind [`` at the first
reply, ``tcp/bindreply [`` at the second, and at the end ``tcp/bindreply ]``
with the counts, ``tcp/bind ]`` without, ``tcp/accept ]``.  In the
``bindreply`` session Dante calls the peer the "local client" and the SOCKS
client the "remote peer"; the end reasons keep that wording.

Not implemented: the BIND extension (above), ``compatibility: sameport``
(binding a privileged port the client asked for).
"""

from __future__ import annotations

import errno
import os
import socket
from typing import TYPE_CHECKING

from dantex.protocol import socks4
from dantex.protocol.address import Address, AddressType
from dantex.protocol.socks5 import Reply
from dantex.rules.engine import Match
from dantex.server import sockopts
from dantex.server._bindwait import BindWait
from dantex.server._state import State
from dantex.server.connect import _kernel_source, source_for
from dantex.server.context import family_of
from dantex.server.errors import ConnectFailed

if TYPE_CHECKING:
    from dantex.server.session import SocksSession

__all__ = [
    "BIND_EXTENSION_ADDRESS",
    "BindWait",
    "advertised",
    "start_bind",
    "start_local_bind",
]

#: The request address that asks for Dante's BIND extension (since 1.2).
BIND_EXTENSION_ADDRESS = "255.255.255.255"
#: Pending connections the kernel may queue on a BIND socket.
_BACKLOG = 8
#: Where the default route leads, to learn the default source address.
_ROUTE_PROBE: dict[int, str] = {
    socket.AF_INET: "192.0.2.1",
    socket.AF_INET6: "2001:db8::1",
}


def start_bind(session: SocksSession) -> None:
    """Carry out a BIND request for ``session`` (rules are checked here);
    through a parent when a route names ``bind`` (:mod:`._routebind`)."""
    target = session.target
    assert target is not None
    if target.type is AddressType.IPV4 and target.host == BIND_EXTENSION_ADDRESS:
        _refuse_extension(session)
        return
    from dantex.server._routebind import routed_bind

    if not routed_bind(session):
        start_local_bind(session)


def start_local_bind(session: SocksSession) -> None:
    """BIND here: listen on the external side."""
    target = session.target
    assert target is not None
    if target.is_ip:
        unspecified = target.host in ("0.0.0.0", "::")
        _listen(session, [] if unspecified else [target.host], family_of(target.host))
        return
    d = session.runtime.resolver.forward(target.host)
    session._pending = d  # type: ignore[assignment]

    def resolved(addresses: tuple[str, ...]) -> None:
        session._pending = None
        if session.version == socks4.VERSION:
            addresses = tuple(a for a in addresses if ":" not in a)
        if not addresses:
            session.refuse(Reply.HOST_UNREACHABLE, f"could not resolve {target.host!r}")
            return
        _listen(session, list(addresses), family_of(addresses[0]))

    d.addCallback(resolved)


def _refuse_extension(session: SocksSession) -> None:
    """Dante's BIND extension, as danted answers it when it is off: 0x02
    echoing the request and one ``tcp/accept ]`` line.  dantex has no
    ``extension: bind`` (no Dante 1.4 client sends this request)."""
    session.log_higher_level_block(
        "#0: client requested disabled Dante extension: bind"
    )
    session._write(session.reply(Reply.NOT_ALLOWED, session.target))
    session._close_now(logged=True)


def listen_address(session: SocksSession, family: int, peer: str | None) -> str:
    """The external address to listen on: a concrete one, never a wildcard.

    ``external:`` and ``external.rotation`` decide when configured (Dante
    §2.9); otherwise the kernel's source address towards the expected peer,
    else the default route's, else the address the client connected to.

    :raises ConnectFailed: no usable address of ``family`` (0x08).
    """
    probe = peer or ("0.0.0.0" if family == socket.AF_INET else "::")
    chosen = source_for(session.policy, probe, session.server.host)
    if chosen is not None:
        return chosen
    for where in (peer, _ROUTE_PROBE[family]):
        if where:
            routed = _kernel_source(family, where)
            if routed is not None:
                return routed.partition("%")[0]
    if family_of(session.server.host) == family:
        return session.server.host
    kind = "IPv6" if family == socket.AF_INET6 else "IPv4"
    raise ConnectFailed(
        Reply.ADDRESS_TYPE_NOT_SUPPORTED, f"no {kind} address to bind for the peer"
    )


def advertised(configured: tuple[str, ...], bound: Address) -> Address:
    """``bound``, or the ``*.advertise`` address of its family with its port."""
    for ip in configured:
        if family_of(ip) == family_of(bound.host):
            return Address.from_host(ip, bound.port)
    return bound


def bind_listener(address: str, port: int) -> socket.socket:
    """A non-blocking listening TCP socket on ``address``, ``port`` if free.

    :raises OSError: not even an ephemeral port can be bound.
    """
    family = family_of(address)
    sock = socket.socket(
        family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC
    )
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError:
            if port == 0:
                raise
            sock.bind((address, 0))  # Dante: any port when the one asked is taken
        sock.listen(_BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


def _listen(session: SocksSession, expected: list[str], family: int) -> None:
    """Bind and listen, check the socks-rules against the bound address."""

    if session.state is not State.REQUESTED:
        return
    target = session.target
    assert target is not None
    # Dante binds the requested port only when no peer address was given,
    # and a privileged one only with compatibility: sameport.
    wanted = target.port >= 1024 or session.policy.sameport
    port = target.port if not expected and wanted else 0
    try:
        address = listen_address(session, family, expected[0] if expected else None)
        sock = bind_listener(address, port)
    except ConnectFailed as e:
        session.refuse(e.reply, e.reason)
        return
    except OSError as e:
        session.refuse(
            Reply.NETWORK_UNREACHABLE,
            "could not get address to use on external side: failed to bind "
            f"address on external side: {os.strerror(e.errno or errno.EIO)}",
        )
        return
    # accepted peers inherit them
    sockopts.apply(sock, session.external_options(), session.policy.log.warning)
    host, bport = sock.getsockname()[:2]
    bound = Address.from_host(str(host), int(bport))
    facts = session.socks_facts(session.client, bound, "bind")

    session.cleanups.append(sock.close)  # if the client leaves during DNS

    def decided(match: Match) -> None:
        if sock.close in session.cleanups:
            session.cleanups.remove(sock.close)
        if session.state is not State.REQUESTED:
            sock.close()
            return
        session.socks_match = match
        if not match.passed:
            sock.close()
            session.blocked(match)
            return
        if not session.admit_limits(match):
            sock.close()
            return
        session.external = bound
        config = session.policy.config
        reply = session.reply(
            Reply.SUCCEEDED, advertised(config.external_advertise, bound), final=False
        )
        session._write(reply)
        wait = BindWait(session, sock, bound, expected)
        session.relay_started(wait)
        wait.start()

    session.decide(
        lambda answers: session.policy.rules.match_socks(facts, answers), decided
    )
