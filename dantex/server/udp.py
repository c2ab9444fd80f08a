"""UDP ASSOCIATE (RFC 1928 §4, §6, §7) with Dante's semantics (§2.8).

The request is checked against the socks-rules with the destination not yet
known (from the declared client address when it is complete, then from the
control connection's address).  A UDP socket facing the client is bound on
the internal address the client connected to (port from the rule's
``udp.portrange``); the reply carries it (or ``internal.advertise``).

Each association (:class:`UdpAssociation`) then relays datagrams:

* from the client: only from the control connection's IP (and the declared
  port, if one was given); the first one locks the client address in and the
  socket is connected to it.  Dante accepts the first sender from anywhere
  when the request says 0.0.0.0:0; dantex does not.  The SOCKS header is
  parsed (FRAG != 0 dropped), the destination checked as ``udpassociate``
  (``from:`` the client, ``to:`` the destination), domain names resolved
  without blocking through the shared cache, and the payload sent from an
  external socket bound lazily per address family (``external:`` and
  ``external.rotation`` apply; ``udp.connectdst`` connects it to a sole
  destination);
* to the client: only datagrams from a destination the client has sent to
  (address and port) are considered at all (no reflection, no open relay),
  then checked as ``udpreply`` (``from:`` the sender, ``to:`` the client).

Rule decisions are cached per destination and per sender for the life of the
association.  The association ends with its TCP control connection, or after
``timeout.io.udp`` without a datagram.  Log lines and counters follow danted
1.4.2 as observed (``udp/udpassociate [``, ``-``, ``]`` with
``bytes/packets``; client-side counts include the SOCKS header).

Not implemented: ``compatibility: draft-5.05`` (the USECLIENTSPORT flag),
ICMP port-unreachable messages to senders (danted sends them as root),
reassembly of fragments (dropped, as by danted).
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

from dantex.protocol.address import Address
from dantex.protocol.socks5 import Reply
from dantex.rules.engine import Match, SocksFacts
from dantex.server import sockopts
from dantex.server._state import State
from dantex.server._udprelay import UdpAssociation
from dantex.server._udpsock import bind_in_range, udp_socket
from dantex.server.bind import advertised
from dantex.server.context import family_of
from dantex.server.errors import ConnectFailed

if TYPE_CHECKING:
    from dantex.server.session import SocksSession

__all__ = ["UdpAssociation", "associate", "start_udp"]

_WILDCARD = ("0.0.0.0", "::")


def start_udp(session: SocksSession) -> None:
    """Carry out a UDP ASSOCIATE request for ``session``."""
    declared = session.target
    assert declared is not None
    if declared.is_ip:
        _check_rules(session, declared)
        return
    d = session.runtime.resolver.forward(declared.host)
    session._pending = d  # type: ignore[assignment]

    def resolved(addresses: tuple[str, ...]) -> None:
        session._pending = None
        if not addresses:
            session.refuse(
                Reply.HOST_UNREACHABLE,
                f"client says it will send us UDP packets from hostname "
                f'"{declared.host}", but we are unable to resolve that hostname',
            )
            return
        _check_rules(session, Address.from_host(addresses[0], declared.port))

    d.addCallback(resolved)


def _unspecified(address: Address) -> bool:
    return address.host in ("0.0.0.0", "::")


def _facts(session: SocksSession, client: Address) -> SocksFacts:
    return session.socks_facts(client, None, "udpassociate")


def _check_rules(session: SocksSession, declared: Address) -> None:
    """Dante: a complete declared address is checked first, then the control
    connection's address decides which rule the association belongs to."""

    rules = session.policy.rules

    def by_control(_: object = None) -> None:
        facts = _facts(session, session.client)
        session.decide(lambda a: rules.match_socks(facts, a), decided)

    def decided(match: Match) -> None:
        if session.state is not State.REQUESTED:
            return
        session.socks_match = match
        if not match.passed:
            session.blocked(match)
            return
        if not session.admit_limits(match):
            return
        _open(session, match, declared)

    def declared_decided(match: Match) -> None:
        if session.state is not State.REQUESTED:
            return
        if not match.passed:
            session.socks_match = match
            session.blocked(match)
            return
        by_control()

    if not _unspecified(declared) and declared.port != 0:
        facts = _facts(session, declared)
        session.decide(lambda a: rules.match_socks(facts, a), declared_decided)
    else:
        by_control()


def _internal_address(session: SocksSession, family: int) -> str:
    """Where to receive the client's datagrams: the address it connected to,
    else the first ``internal:`` address of the family (Dante's getinaddr)."""
    if family_of(session.server.host) == family:
        return session.server.host
    for internal in session.policy.config.internals:
        if family_of(internal.host) == family and internal.host not in _WILDCARD:
            return internal.host
    kind = "IPv6" if family == socket.AF_INET6 else "IPv4"
    raise ConnectFailed(
        Reply.ADDRESS_TYPE_NOT_SUPPORTED,
        f"client wants to send us UDP packets from {kind}, but no {kind} "
        "configured for our usage on the internal interface",
    )


def _open(session: SocksSession, match: Match, declared: Address) -> None:
    """Bind the client-facing socket, reply, start relaying."""
    control = session.client
    if _unspecified(declared):
        family = family_of(control.host)
    else:
        family = family_of(declared.host)
    # The client must send from the control connection's IP; a declared
    # address in another family (a dual-stack client) is taken as it is.
    if family_of(control.host) == family:
        expect_ip = control.host
        same = _unspecified(declared) or declared.host == control.host
        expect_port = declared.port if same else 0
    else:
        if _unspecified(declared):
            session.refuse(Reply.ADDRESS_TYPE_NOT_SUPPORTED, "no client address")
            return
        expect_ip, expect_port = declared.host, declared.port
    sock = udp_socket(family)
    policy = session.policy
    options = policy.socket_options("internal", session.client_rule, match.rule)
    sockopts.apply(sock, options, policy.log.warning)
    portrange = match.rule.udp_portrange if match.rule is not None else None
    address = ""
    try:
        address = _internal_address(session, family)
        if portrange is not None:
            bind_in_range(sock, address, *portrange)
        else:
            sock.bind((address, 0))
        if expect_port:
            sock.connect((expect_ip, expect_port))
    except ConnectFailed as e:
        sock.close()
        session.refuse(e.reply, e.reason)
        return
    except OSError as e:
        sock.close()
        why = (
            "no free ports in range to bind"
            if e.errno == errno.EADDRINUSE and portrange is not None
            else f"could not bind local address {address}: {e.strerror}"
        )
        session.refuse(Reply.GENERAL_FAILURE, why)
        return
    from dantex.server._routeudp import routed_udp

    if not routed_udp(session, match, sock, expect_ip, expect_port):
        associate(session, match, sock, expect_ip, expect_port)


def associate(
    session: SocksSession,
    match: Match,
    sock: socket.socket,
    expect_ip: str,
    expect_port: int,
    make: Callable[..., UdpAssociation] = UdpAssociation,
) -> None:
    """Reply with the client-facing socket's address and start relaying
    (``make`` builds the association: through a parent, see ._routeudp)."""
    host, port = sock.getsockname()[:2]
    internal = Address.from_host(str(host), int(port))
    config = session.policy.config
    reply = session.reply(
        Reply.SUCCEEDED, advertised(config.internal_advertise, internal)
    )
    session._write(reply)
    shown = session.target  # logs show the request's address, a name as a name
    assert shown is not None
    association = make(session, match, sock, internal, shown, expect_ip, expect_port)
    association.start()
