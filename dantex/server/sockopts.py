"""Dante's socket options (``internal|external.socket|ip|tcp|udp.<name>``),
set on the server's sockets.

Each option is compiled once per configuration into ``setsockopt``
arguments.  Where they apply:

* global ``internal.*``: the listening sockets (before ``listen``, and again
  on every reload; accepted connections inherit them) and the UDP socket an
  association opens for its client;
* global ``external.*``: every socket towards targets -- outgoing TCP
  connections before ``connect``, BIND's listening socket, an association's
  external UDP sockets;
* a client- or socks-rule's ``internal.*``: the client's connection, once the
  rule has passed it; a socks-rule's ``external.*``: the sockets its session
  opens towards targets, after the global ones.

``tcp`` options go to TCP sockets only and ``udp`` options to UDP sockets
only.  On IPv6 sockets the ``ip`` options with an IPv6 counterpart use it
(``ip_tos`` -> ``IPV6_TCLASS``, ``ip_ttl`` -> ``IPV6_UNICAST_HOPS``,
``ip_minttl`` -> ``IPV6_MINHOPCOUNT``, ``ip_mtu_discover`` ->
``IPV6_MTU_DISCOVER``).  A refusal by the kernel is logged (once per option
and socket kind) and the socket is used as it is.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable

from attrs import frozen

from dantex.config.model import SocketOption

__all__ = ["Compiled", "Warn", "apply", "compile_options"]

_LEVELS = {
    "socket": socket.SOL_SOCKET,
    "ip": socket.IPPROTO_IP,
    "tcp": socket.IPPROTO_TCP,
    "udp": socket.IPPROTO_UDP,
}
#: option names -> numbers (values Linux uses where Python has no constant)
_NUMBERS = {
    "so_broadcast": socket.SO_BROADCAST,
    "so_debug": socket.SO_DEBUG,
    "so_dontroute": socket.SO_DONTROUTE,
    "so_keepalive": socket.SO_KEEPALIVE,
    "so_oobinline": socket.SO_OOBINLINE,
    "so_priority": getattr(socket, "SO_PRIORITY", 12),
    "so_rcvbuf": socket.SO_RCVBUF,
    "so_rcvbufforce": 33,
    "so_rcvlowat": socket.SO_RCVLOWAT,
    "so_sndbuf": socket.SO_SNDBUF,
    "so_sndbufforce": 32,
    "so_sndlowat": socket.SO_SNDLOWAT,
    "so_timestamp": getattr(socket, "SO_TIMESTAMP", 29),
    "tcp_cork": getattr(socket, "TCP_CORK", 3),
    "tcp_keepcnt": getattr(socket, "TCP_KEEPCNT", 6),
    "tcp_keepidle": getattr(socket, "TCP_KEEPIDLE", 4),
    "tcp_keepintvl": getattr(socket, "TCP_KEEPINTVL", 5),
    "tcp_linger2": getattr(socket, "TCP_LINGER2", 8),
    "tcp_maxseg": socket.TCP_MAXSEG,
    "tcp_nodelay": socket.TCP_NODELAY,
    "tcp_syncnt": getattr(socket, "TCP_SYNCNT", 7),
    "tcp_window_clamp": getattr(socket, "TCP_WINDOW_CLAMP", 10),
    "udp_cork": 1,
    "ip_freebind": getattr(socket, "IP_FREEBIND", 15),
    "ip_minttl": 21,
    "ip_mtu_discover": 10,
    "ip_tos": socket.IP_TOS,
    "ip_tos.dscp": socket.IP_TOS,
    "ip_tos.prec": socket.IP_TOS,
    "ip_tos.tos": socket.IP_TOS,
    "ip_ttl": socket.IP_TTL,
}
#: ``ip`` options on IPv6 sockets: IP_TOS, IP_TTL, IP_MINTTL, IP_MTU_DISCOVER
_IPV6 = {
    socket.IP_TOS: 67,  # IPV6_TCLASS
    socket.IP_TTL: 16,  # IPV6_UNICAST_HOPS
    21: 73,  # IPV6_MINHOPCOUNT
    10: 23,  # IPV6_MTU_DISCOVER
}


@frozen
class Compiled:
    """One option, ready for ``setsockopt``."""

    level: int
    number: int
    value: int
    #: "tcp", "udp" or "" (any socket)
    only: str
    #: how the log names it: ``external.ip.ip_tos``
    name: str


def compile_options(options: Iterable[SocketOption], side: str) -> tuple[Compiled, ...]:
    """The options of ``side`` (``internal`` or ``external``), in file order."""
    out = []
    for o in options:
        if o.side != side:
            continue
        number = int(o.name) if o.name.isdigit() else _NUMBERS[o.name]
        only = o.level if o.level in ("tcp", "udp") else ""
        name = f"{o.side}.{o.level}.{o.name}"
        out.append(Compiled(_LEVELS[o.level], number, o.value, only, name))
    return tuple(out)


Warn = Callable[[str], None]
_warned: set[tuple[str, int, int]] = set()


def apply(sock: socket.socket, options: tuple[Compiled, ...], warn: Warn) -> None:
    """Set ``options`` on ``sock`` (those for its type and family)."""
    if not options:
        return
    kind = "udp" if sock.type == socket.SOCK_DGRAM else "tcp"
    v6 = sock.family == socket.AF_INET6
    for o in options:
        if o.only and o.only != kind:
            continue
        level, number = o.level, o.number
        if v6 and level == socket.IPPROTO_IP and number in _IPV6:
            level, number = socket.IPPROTO_IPV6, _IPV6[number]
        try:
            sock.setsockopt(level, number, o.value)
        except OSError as e:
            key = (o.name, o.value, sock.family)
            if key not in _warned:
                _warned.add(key)
                warn(
                    f"socket option {o.name}: {o.value} refused on a "
                    f"{'IPv6' if v6 else 'IPv4'} {kind.upper()} socket: {e.strerror}"
                )
