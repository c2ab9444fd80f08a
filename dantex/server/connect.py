"""The CONNECT command: resolve, pick the source address, connect, reply, relay.

With ``route { }`` blocks the request goes through :mod:`dantex.server.route`
first; a ``via: direct`` route comes back here.

Dante's external address choice (``external.rotation``) and reply codes; the
connection goes to the address that made an IP rule match a host name.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

from twisted.python.failure import Failure

from dantex.config.interfaces import interface_addresses
from dantex.config.model import AddressSpec, Config
from dantex.limits import redirect
from dantex.limits.timeouts import fin_wait, pick
from dantex.log.format import dante_addr
from dantex.protocol.socks5 import Reply
from dantex.rules.engine import Match
from dantex.server._state import State
from dantex.server.context import family_of
from dantex.server.errors import ConnectFailed, describe_failure
from dantex.server.lean import Conn, sockaddr_address

if TYPE_CHECKING:
    from dantex.server._session_end import SessionEnds
    from dantex.server.context import Policy
    from dantex.server.session import SocksSession

__all__ = [
    "choose_source",
    "connect_direct",
    "rule_timeout",
    "source_for",
    "start_connect",
]

#: Addresses of a resolved name tried in turn before giving up.
_MAX_CANDIDATES = 4


def rule_timeout(session: SessionEnds, name: str) -> float:
    """A timeout from the socks-rule, else the client-rule, else the global one.

    A rule's ``timeout.io`` stands for both ``io_tcp`` and ``io_udp``.  The
    answer for a pair of rules is worked out once per configuration.
    """
    sm, cm = session.socks_match, session.client_match
    rules = (sm.rule if sm is not None else None, cm.rule if cm is not None else None)
    known = session.policy.rule_timeouts
    key = (id(rules[0]), id(rules[1]), name)
    found = known.get(key)
    if found is None:
        if name == "tcp_fin_wait":
            found = fin_wait(rules, session.policy.timeouts)
        else:
            found = pick(name, rules, session.policy.timeouts)
        known[key] = found
    return found


def choose_source(config: Config, ip: str, internal_ip: str) -> str | None:
    """The local address to connect from (Dante's ``external.rotation``).

    :returns: None to let the kernel choose (no ``external:`` configured).
    :raises ConnectFailed: no external address of the target's family (0x08).
    """
    if not config.externals:
        return None
    family = family_of(ip)
    candidates: list[str] = []
    for ext in config.externals:
        if ext.ip is not None:
            candidates.append(ext.ip)
        elif ext.interface is not None:
            candidates.extend(
                a for f, a in interface_addresses(ext.interface) if "%" not in a
            )
    of_family = [a for a in candidates if family_of(a) == family]
    if (
        "ipv6" if family == socket.AF_INET6 else "ipv4"
    ) not in config.external_protocols:
        of_family = []  # external.protocol excludes this family
    rotation = config.external_rotation
    if rotation == "same-same":
        if internal_ip in of_family:
            return internal_ip
        raise ConnectFailed(
            Reply.ADDRESS_TYPE_NOT_SUPPORTED,
            f"same-same: {internal_ip} is not set on our external interface(s)",
        )
    if rotation == "route":
        routed = _kernel_source(family, ip)
        if routed in of_family:
            return routed
    if not of_family:
        kind = "IPv6" if family == socket.AF_INET6 else "IPv4"
        raise ConnectFailed(
            Reply.ADDRESS_TYPE_NOT_SUPPORTED,
            f"connect to {kind} address requested, but no {kind} address "
            "configured for our usage on the external interface",
        )
    return of_family[0]


def source_for(policy: Policy, ip: str, internal_ip: str) -> str | None:
    """:func:`choose_source`, remembered per family when it cannot change."""
    sources = policy.sources
    if sources is None:
        return choose_source(policy.config, ip, internal_ip)
    family = family_of(ip)
    try:
        return sources[family]
    except KeyError:
        source = sources[family] = choose_source(policy.config, ip, internal_ip)
        return source


def _kernel_source(family: int, ip: str) -> str | None:
    """The source address the kernel's routing table picks for ``ip``."""
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((ip, 9))
            return str(probe.getsockname()[0])
    except OSError:
        return None


def start_connect(session: SocksSession, match: Match) -> None:
    """Carry out a permitted CONNECT for ``session``: through its routes when
    the configuration has any (:mod:`dantex.server.route`), else direct."""
    match = _redirect_to(session, match)
    if session.policy.routes is not None:
        from dantex.server._failover import start_routed_connect

        start_routed_connect(session, match)
        return
    connect_direct(session, match)


def _redirect_to(session: SocksSession, match: Match) -> Match:
    """Apply ``redirect to:`` (:mod:`dantex.limits.redirect`) to the target."""
    rules = (match.rule, session.client_rule)
    spec = redirect.spec_for("to", rules)
    if spec is None or session.target is None:
        return match
    before = session.target
    session.target = redirect.target(before, spec)
    session.policy.log.debug(
        f"redirect to: {dante_addr(before)} becomes {dante_addr(session.target)}"
    )
    return Match(match.rule)  # a matched IP was the old target's


def _redirect_from(
    session: SocksSession, ip: str, usual: str | None
) -> tuple[str | None, tuple[int, int] | None]:
    """The source address and port range after ``redirect from:``."""
    match = session.socks_match
    spec = redirect.spec_for(
        "from", (match.rule if match else None, session.client_rule)
    )
    return redirected_source(spec, ip, usual)


def redirected_source(
    spec: AddressSpec | None, ip: str, usual: str | None
) -> tuple[str | None, tuple[int, int] | None]:
    """Where to connect to ``ip`` from under ``redirect from: spec`` (None:
    from ``usual``, any port).

    :raises ConnectFailed: the redirect has no address for ``ip``'s family.
    """
    if spec is None:
        return usual, None
    try:
        return redirect.source(spec, family_of(ip), usual)
    except redirect.RedirectError as e:
        raise ConnectFailed(Reply.ADDRESS_TYPE_NOT_SUPPORTED, str(e)) from None


def connect_direct(session: SocksSession, match: Match) -> None:
    """Resolve the target if needed and connect to it ourselves."""
    target = session.target
    assert target is not None
    if target.is_ip:
        _try(session, [target.host], 0, None)
        return
    if match.matched_ip:
        _try(session, [match.matched_ip], 0, None)
        return
    d = session.runtime.resolver.forward(target.host)
    session._pending = d  # type: ignore[assignment]

    def resolved(addresses: tuple[str, ...]) -> None:
        session._pending = None
        if not addresses:
            session.refuse(Reply.HOST_UNREACHABLE, f"could not resolve {target.host!r}")
            return
        _try(session, list(addresses[:_MAX_CANDIDATES]), 0, None)

    d.addCallback(resolved)


def _try(
    session: SocksSession, ips: list[str], i: int, last: ConnectFailed | None
) -> None:
    if session.state is not State.REQUESTED:
        return
    target = session.target
    assert target is not None
    if i >= len(ips):
        assert last is not None
        session.refuse(
            last.reply,
            f"remote peer error ({last.reason})"
            if last.reply != Reply.GENERAL_FAILURE
            else last.reason,
        )
        return
    ip = ips[i]
    runtime = session.runtime
    try:
        if runtime.is_own_address(ip, target.port, session.server.host):
            raise ConnectFailed(
                Reply.NOT_ALLOWED,
                "client is requesting a connection to the same address we listen to",
            )
        source = source_for(session.policy, ip, session.server.host)
        source, ports = _redirect_from(session, ip, source)
    except ConnectFailed as e:
        session.refuse(e.reply, e.reason)
        return
    d = runtime.connector.try_connect(
        family_of(ip),
        (ip, target.port),
        source=source,
        timeout=rule_timeout(session, "connect"),
        source_ports=ports,
        options=session.external_options() if session.policy.sockopts_used else (),
        warn=session.policy.log.warning,
        # compatibility: sameport -- the client's own port, if it is free
        prefer_port=session.client.port if session.policy.sameport else 0,
    )
    if isinstance(d, Conn):  # a local target: connected already
        _established(session, d)
        return
    session._pending = d  # type: ignore[assignment]

    def connected(target: Conn | socket.socket) -> None:
        session._pending = None
        if session.state is not State.REQUESTED:
            target.close()
            return
        _established(session, target)

    def failed(f: Failure) -> None:
        session._pending = None
        if session.state is not State.REQUESTED:
            return
        err = describe_failure(f.value or RuntimeError("connect failed"))
        if err.reply == Reply.TTL_EXPIRED:
            _try(session, ips, len(ips), err)  # no time left for another address
        else:
            _try(session, ips, i + 1, err)

    d.addCallbacks(connected, failed)


def _established(session: SocksSession, target: Conn | socket.socket) -> None:
    sock = target.sock if isinstance(target, Conn) else target
    bound = sockaddr_address(sock.getsockname())
    session.external = bound
    reply = session.reply(Reply.SUCCEEDED, bound)
    codec = session.codec
    assert codec is not None
    relay = session.runtime.start_relay(
        session, target, reply, codec.leftover(), rule_timeout(session, "io_tcp")
    )
    session.relay_started(relay)
    relay.start()
