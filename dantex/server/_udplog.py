"""Dante-format log lines of a UDP association (danted 1.4.2, observed).

``udp/udpassociate [: <declared client> <internal>``; per datagram
``udp/udpassociate -: <client> <internal> -> <external> <target> (N)`` and
``udp/udpreply -: <sender> <external> -> <internal> <client> (N)`` (blocked
ones without ``(N)``, errors with ``: <why>``); at the end
``udp/udpassociate ]: W/w -> <client> <internal> -> R/r[, W/w -> <external>
<target> -> R/r]: <why>.  Session duration: Ns`` (bytes/datagrams; the
target is 0.0.0.0.0 once the client used several) and ``tcp/accept ]``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dantex.log.format import client_text, dante_addr, session_line
from dantex.protocol.address import Address
from dantex.rules.engine import Match
from dantex.server.context import family_of

if TYPE_CHECKING:
    from dantex.server._udprelay import UdpAssociation
    from dantex.server._udpsock import UdpEndpoint
    from dantex.server.relay import EndReason

__all__ = [
    "datagram_line",
    "end_lines",
    "reply_line",
    "sock_addr",
    "start_line",
    "stranger_line",
]

#: Flags under which a blocked datagram is logged.
BLOCK_FLAGS = ("connect", "disconnect", "error", "iooperation")


def sock_addr(endpoint: UdpEndpoint | None) -> str:
    """The local address of ``endpoint``'s socket, Dante-style."""
    if endpoint is None:
        return dante_addr(None)
    try:
        host, port = endpoint.sock.getsockname()[:2]
    except OSError:
        return dante_addr(None)
    return dante_addr(Address.from_host(str(host).partition("%")[0], int(port)))


def _client(assoc: UdpAssociation, address: Address | None) -> str:
    session = assoc.session
    return client_text(address, session.method, session.user)


def start_line(assoc: UdpAssociation) -> None:
    """``udp/udpassociate [`` with the address the client declared."""
    if assoc.session._logs(assoc.match, "connect"):
        text = f"{_client(assoc, assoc.declared)} {dante_addr(assoc.internal)}"
        assoc.session.policy.log.info(
            session_line("pass", assoc.match.number, "udp", "udpassociate", "[", text)
        )


def datagram_line(
    assoc: UdpAssociation,
    verdict: str,
    match: Match,
    target: Address | None,
    size: int | None = None,
    why: str = "",
    *,
    bad: bool = False,
) -> None:
    """``udpassociate -``: client internal -> external target.

    :param bad: a malformed datagram (Dante shows no external address then).
    """
    external = None
    if not bad and target is not None and target.is_ip:
        external = assoc.externals.get(family_of(target.host))
    elif not bad and assoc.externals:
        external = next(iter(assoc.externals.values()))
    text = (
        f"{_client(assoc, assoc.client)} {dante_addr(assoc.internal)} -> "
        f"{sock_addr(external)} {dante_addr(target)}"
    )
    if size is not None:
        text += f" ({size})"
    if why:
        text += f": {why}"
    assoc.session.policy.log.info(
        session_line(verdict, match.number, "udp", "udpassociate", "-", text)
    )


def reply_line(
    assoc: UdpAssociation,
    verdict: str,
    match: Match,
    source: Address,
    size: int | None = None,
) -> None:
    """``udpreply -``: sender external -> internal client."""
    external = assoc.externals.get(family_of(source.host))
    text = (
        f"{dante_addr(source)} {sock_addr(external)} -> "
        f"{dante_addr(assoc.internal)} {_client(assoc, assoc.client)}"
    )
    if size is not None:
        text += f" ({size})"
    assoc.session.policy.log.info(
        session_line(verdict, match.number, "udp", "udpreply", "-", text)
    )


def stranger_line(assoc: UdpAssociation, sender: Address, side: str) -> None:
    """The first datagram from neither the client nor one of its destinations."""
    if side == "internal":
        why = "datagram from an address other than the client's"
        text = f"{dante_addr(sender)} {dante_addr(assoc.internal)}"
    else:
        why = "datagram from an address the client has not sent to"
        external = assoc.externals.get(family_of(sender.host))
        text = f"{dante_addr(sender)} {sock_addr(external)}"
    assoc.session.policy.log.info(
        session_line(
            "block",
            assoc.match.number,
            "udp",
            "udpassociate",
            "-",
            f"{text}: {why}; dropped (logged once per association)",
        )
    )


def end_lines(assoc: UdpAssociation, reason: EndReason, external: str) -> None:
    """``udp/udpassociate ]`` and ``tcp/accept ]``.

    :param external: the external socket's address (it is closed by now).
    """
    session = assoc.session
    duration = int(session.runtime.clock.seconds() - session.started)
    tail = f": {reason}.  Session duration: {duration}s"
    cw, cr = assoc.client_written, assoc.client_read
    tw, tr = assoc.target_written, assoc.target_read
    client = assoc.client if assoc.client is not None else assoc.declared
    text = (
        f"{cw[0]}/{cw[1]} -> {_client(assoc, client)} "
        f"{dante_addr(assoc.internal)} -> {cr[0]}/{cr[1]}"
    )
    if assoc.externals:
        text += (
            f", {tw[0]}/{tw[1]} -> {external} "
            f"{dante_addr(assoc.destination)} -> {tr[0]}/{tr[1]}"
        )
    log = session.policy.log
    if session._logs(assoc.match, "disconnect"):
        log.info(
            session_line(
                "pass", assoc.match.number, "udp", "udpassociate", "]", text + tail
            )
        )
    cm = session.client_match
    if cm is not None and session._logs(cm, "disconnect"):
        here = f"{_client(assoc, session.client)} {dante_addr(session.server)}"
        counts = f"{cw[0]} -> {here} -> {tw[0]}"
        log.info(session_line("pass", cm.number, "tcp", "accept", "]", counts + tail))
