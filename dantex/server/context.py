"""What a session is given: the policy of one config generation and the
process-wide runtime (reactor, resolver, connector, relays, log).

A reload builds a new :class:`Policy`; sessions keep the one they started
with, so live sessions are untouched by a reload.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from twisted.cred.checkers import ICredentialsChecker
from twisted.internet.interfaces import IReactorTime
from twisted.python.threadpool import ThreadPool

from dantex._interfaces import IServerReactor
from dantex.auth._base import in_pool
from dantex.auth.methods import Authenticator
from dantex.config.model import Config, Rule
from dantex.limits._table import LimitTable
from dantex.limits.monitors import MonitorSet
from dantex.limits.shaper import Shaper, TableMeter
from dantex.log.levels import ErrorLevels
from dantex.log.output import DanteLog
from dantex.rules.engine import RuleSet
from dantex.server import _srchost, sockopts
from dantex.server._deadlines import DeadlineQueue
from dantex.server._handover import take_client
from dantex.server.connector import TcpConnector
from dantex.server.lean import Conn
from dantex.server.proxyproto import ProxyTrust
from dantex.server.relay import OnEnd, Relay, TransportTarget, TwistedRelay
from dantex.server.resolve import Resolver
from dantex.server.route import RouteMarks, RouteTable
from dantex.server.splice import PipePool, SpliceRelay, splice_available

if TYPE_CHECKING:
    from dantex.metrics import SessionMetrics
    from dantex.server.session import SocksSession

__all__ = ["Policy", "Runtime"]


#: no ``.error`` log levels at all
_NO_LEVELS = ErrorLevels(())


class Policy:
    """One configuration generation: the parsed file, its compiled rules, its log,
    and its authentication backends (:class:`~dantex.auth.methods.Authenticator`).

    :param auth: the backends; by default built from ``config`` on ``clock``
        with blocking checks run inline (the service passes one that uses
        its thread pool).
    """

    def __init__(
        self,
        config: Config,
        log: DanteLog,
        generation: int = 1,
        *,
        auth: Authenticator | None = None,
        clock: IReactorTime | None = None,
    ) -> None:
        self.config = config
        self.rules = RuleSet(config)
        self.log = log
        self.generation = generation
        self.timeouts = config.timeouts
        #: compiled socket options: global ones by side, then per rules;
        #: ``sockopts_used``: whether the configuration has any
        self._sockopts: dict[tuple[object, ...], tuple[sockopts.Compiled, ...]] = {}
        self.sockopts_used = bool(config.socket_options) or any(
            r.socket_options for r in (*config.client_rules, *config.socks_rules)
        )
        #: ``<side>.log.<level>.*`` specs, global and per rule pair;
        #: ``log_levels_used``: whether the configuration has any
        self._error_levels: dict[tuple[int, int], ErrorLevels] = {}
        self.log_levels_used = bool(config.log_levels) or any(
            r.log_levels for r in (*config.client_rules, *config.socks_rules)
        )
        #: ``compatibility: sameport``: the client's port on the external side
        self.sameport = "sameport" in config.compatibility
        #: ``srchost:`` DNS checks made on every client after its client-rule
        self.srchost_checks = config.srchost & _srchost.DNS_CHECKS
        #: rule_timeout()'s answers by (id of socks-rule, id of client-rule,
        #: name); the rules live as long as this policy
        self.rule_timeouts: dict[tuple[int, int, str], float] = {}
        if auth is None:
            from twisted.internet.task import Clock

            auth = Authenticator.from_config(
                config, clock=clock or Clock(), reactor=clock
            )
        self.auth = auth
        #: client-level methods that need work before the client-rules
        #: (ident, PAM with the client's address)
        wanted = set(config.clientmethods)
        for rule in config.client_rules:
            wanted.update(rule.clientmethods or ())
        self.client_checks = tuple(
            m for m in ("rfc931", "pam.address", "pam.any") if m in wanted
        )
        #: whether any socks-rule asks for ``ldap.group``
        self.uses_ldap_group = any(r.ldap.get("ldap.group") for r in config.socks_rules)
        #: the compiled ``route { }`` blocks (None: every request goes direct)
        self.routes = RouteTable(config) if config.routes else None
        #: ``internal.proxyprotocol`` (None: off), see dantex.server.proxyproto
        self.proxy_trust = ProxyTrust.from_config(config)
        #: the source address per family, when it cannot change: ``external:``
        #: addresses only (no interfaces) and no rotation (dantex.server.connect)
        self.sources: dict[int, str | None] | None = (
            {}
            if config.external_rotation == "none"
            and all(e.interface is None for e in config.externals)
            else None
        )

    def error_levels(
        self, client_rule: Rule | None, socks_rule: Rule | None
    ) -> ErrorLevels:
        """The ``.error`` log levels in force for a session under these rules."""
        if not self.log_levels_used:
            return _NO_LEVELS
        key = (id(client_rule), id(socks_rule))
        found = self._error_levels.get(key)
        if found is None:
            specs = list(self.config.log_levels)
            for rule in (client_rule, socks_rule):
                if rule is not None:
                    specs.extend(rule.log_levels)
            found = self._error_levels[key] = ErrorLevels(specs)
        return found

    def socket_options(
        self, side: str, *rules: Rule | None
    ) -> tuple[sockopts.Compiled, ...]:
        """Socket options for ``side``: the global ones, then each rule's
        (in the order given: the most specific last, so it wins)."""
        if not self.sockopts_used:
            return ()
        key = (side, *(id(r) for r in rules))
        found = self._sockopts.get(key)
        if found is None:
            found = sockopts.compile_options(self.config.socket_options, side)
            for rule in rules:
                if rule is not None:
                    found += sockopts.compile_options(rule.socket_options, side)
            self._sockopts[key] = found
        return found


class Runtime:
    """Process-wide services shared by every session.

    :param relay_mode: ``auto`` (splice where possible), ``splice`` or ``copy``.
    """

    def __init__(
        self,
        reactor: IServerReactor,
        *,
        relay_mode: str = "auto",
        resolver: Resolver | None = None,
        connector: TcpConnector | None = None,
    ) -> None:
        self.reactor = reactor
        self.clock: IReactorTime = reactor
        self.resolver = resolver or Resolver(self.clock)
        self.connector = connector or TcpConnector(reactor)
        if relay_mode == "splice" and not splice_available():
            raise ValueError("the splice relay needs Linux (os.splice)")
        self.use_splice = relay_mode != "copy" and splice_available()
        self.pipes = PipePool()
        #: (ip, port) of every socket we listen on, to refuse loops to ourselves.
        self.listening: set[tuple[str, int]] = set()
        #: live sessions, for the state dump and graceful stop.
        self.sessions: set[object] = set()
        #: connections accepted since start, for the state dump.
        self.accepted = 0
        self.started = self.clock.seconds()
        self.on_session_end: list[Callable[[object], None]] = []
        #: threads for blocking authentication (hashes, PAM, LDAP, NSS);
        #: started and stopped by the service
        self.auth_pool = ThreadPool(minthreads=0, maxthreads=8, name="dantex-auth")
        self.blocking = in_pool(reactor, self.auth_pool)
        #: routes marked bad (server chaining), kept across reloads
        self.route_marks = RouteMarks(self.clock)
        #: ``monitor { }`` blocks at work (configured by the service)
        self.monitors = MonitorSet(self.clock)
        #: negotiation deadlines, one queue per timeout length
        self._negotiation: dict[float, DeadlineQueue] = {}
        #: Prometheus counters (``metrics.internal``), None when off
        self.metrics: SessionMetrics | None = None
        #: session counters and buckets of rules with limits: made on first
        #: use, or the table shared by ``--workers`` (see dantex.limits)
        self.limit_table: LimitTable | None = None

    def authenticator(
        self,
        config: Config,
        warn: Callable[[str], None] | None = None,
        checkers: Sequence[ICredentialsChecker] = (),
    ) -> Authenticator:
        """Backends for ``config`` that run blocking checks in :attr:`auth_pool`."""
        return Authenticator.from_config(
            config,
            clock=self.clock,
            reactor=self.reactor,
            run=self.blocking,
            checkers=checkers,
            warn=warn,
        )

    def negotiation_deadlines(self, delay: float) -> DeadlineQueue:
        """The queue of negotiation deadlines ``delay`` seconds long."""
        queue = self._negotiation.get(delay)
        if queue is None:
            queue = self._negotiation[delay] = DeadlineQueue(self.clock, delay)
        return queue

    def start_relay(
        self,
        session: SocksSession,
        target: Conn | socket.socket | TransportTarget,
        reply: bytes,
        leftover: bytes,
        io_timeout: float,
        on_end: OnEnd | None = None,
    ) -> Relay:
        """A relay between ``session``'s client and ``target`` (not started).

        The splice relay when allowed, else the Twisted relay (always for a
        :class:`TransportTarget`: TLS to a parent proxy).  ``reply`` goes
        to the client first, ``leftover`` (client bytes that came with the
        request) to the target.  ``on_end`` replaces ``session.relay_ended``
        (BIND logs its own lines).
        """
        if on_end is None:
            on_end = session.relay_ended
        client, unsent = take_client(session.transport, self.reactor)
        flags = session.log_flags()
        io_log = not flags.isdisjoint(_IO_FLAGS)  # only the copy relay sees reads
        relay: Relay
        held = session.limits
        bandwidth = held.bandwidth if held is not None else None
        if (
            self.use_splice
            and not io_log
            and bandwidth is None  # the shaper must see the bytes
            and not isinstance(target, TransportTarget)
        ):
            relay = SpliceRelay(
                self.reactor,
                self.clock,
                self.pipes,
                client,
                target,
                on_end,
                to_client=unsent + reply,
                to_target=leftover,
                io_timeout=io_timeout,
            )
        else:
            relay = TwistedRelay(
                self.reactor,
                self.clock,
                client.release(),
                target.release() if isinstance(target, Conn) else target,
                on_end,
                to_client=unsent + reply,
                to_target=leftover,
                io_timeout=io_timeout,
            )
            if io_log:
                relay.on_io = session.io_record
            if bandwidth is not None:
                assert held is not None
                meter = TableMeter(
                    held.table, bandwidth.digest, bandwidth.rate, self.clock
                )
                relay.shaper = Shaper(meter, self.clock)
        relay.want_tcpinfo = "tcpinfo" in flags
        return relay

    def is_own_address(self, ip: str, port: int, local_ip: str) -> bool:
        """Whether ``ip:port`` is one of our listening sockets."""
        if (ip, port) in self.listening:
            return True
        for lip, lport in self.listening:
            wildcard = lport == port and lip in ("0.0.0.0", "::")
            if wildcard and (ip == local_ip or ip.startswith("127.") or ip == "::1"):
                return True
        return False


#: ``log:`` flags that need the copy relay (it sees every read)
_IO_FLAGS = frozenset({"iooperation", "data"})


def family_of(ip: str) -> int:
    """``AF_INET6`` for addresses with a colon, else ``AF_INET``."""
    return socket.AF_INET6 if ":" in ip else socket.AF_INET
