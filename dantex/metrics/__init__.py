"""Prometheus metrics (``metrics.internal: 127.0.0.1 port = 9464``).

Off unless configured.  Every number is updated when a session ends, when a
check finishes or when a request is refused, never per relayed chunk: the
relays already count bytes and datagrams, and the session-end hook (the one
that writes the disconnect line) adds them up.  Gauges (live sessions,
route health) are refreshed once a second.

With ``--workers N`` the workers write to prometheus_client's multiprocess
files in a directory the supervisor creates, and the supervisor serves the
sum over every worker, dead ones included for counters
(:mod:`dantex.metrics.serve`).

Metrics:

* ``dantex_sessions_total{command,rule}``: sessions that were relayed
  (CONNECT, BIND, UDP ASSOCIATE), by the socks-rule that passed them;
* ``dantex_bytes_total{direction,rule,user}``: bytes from the client
  (``in``) and to the client (``out``);
* ``dantex_auth_total{method,result}``: credential and ident/PAM checks;
* ``dantex_refusals_total{reason}``: requests refused (``client-rule``,
  ``socks-rule``, ``auth``, ``connection-refused``, ``host-unreachable``,
  ``ttl-expired`` ..., ``protocol-error``, ``negotiate-timeout``);
* ``dantex_udp_datagrams_total{outcome}``: ``relayed`` or ``dropped``;
* ``dantex_sessions_active``: live sessions (summed over workers);
* ``dantex_route_up{route}``: 1 when the route may be used, 0 while it is
  marked bad (with workers: the lowest of the workers' views).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge

if TYPE_CHECKING:
    from dantex.server.context import Policy, Runtime

__all__ = ["MULTIPROC_ENV", "SessionMetrics"]

#: prometheus_client's variable naming the multiprocess directory.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class SessionMetrics:
    """The metrics of one process.

    :param registry: where they are registered (None in a worker: the
        multiprocess files are read by the supervisor instead).
    """

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.registry = registry
        self.sessions = Counter(
            "dantex_sessions",
            "Relayed sessions, counted when they end",
            ["command", "rule"],
            registry=registry,
        )
        self.bytes = Counter(
            "dantex_bytes",
            "Bytes from (in) and to (out) clients, counted when sessions end",
            ["direction", "rule", "user"],
            registry=registry,
        )
        self.auth = Counter(
            "dantex_auth",
            "Authentication checks by method and result",
            ["method", "result"],
            registry=registry,
        )
        self.refusals = Counter(
            "dantex_refusals",
            "Requests refused, by reason",
            ["reason"],
            registry=registry,
        )
        self.udp = Counter(
            "dantex_udp_datagrams",
            "UDP datagrams relayed or dropped, counted when associations end",
            ["outcome"],
            registry=registry,
        )
        self.active = Gauge(
            "dantex_sessions_active",
            "Live sessions",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.route_up = Gauge(
            "dantex_route_up",
            "1 when a route may be used, 0 while it is marked bad",
            ["route"],
            registry=registry,
            multiprocess_mode="min",
        )

    # -- hooks (called once per event, never per chunk) ----------------------

    def session_ended(self, session: Any) -> None:
        """A relayed session ended: add its counters (``on_session_end`` hook)."""
        relay = session.relay
        match = session.socks_match
        if relay is None or match is None:
            return
        rule = str(match.number)
        c_read, c_written, _t_read, _t_written = relay.counts()
        user = session.user or ""
        if c_read:
            self.bytes.labels("in", rule, user).inc(c_read)
        if c_written:
            self.bytes.labels("out", rule, user).inc(c_written)
        dropped = getattr(relay, "dropped", None)
        if dropped is not None:  # a UDP association: datagram counters
            read = relay.client_read[1] + relay.target_read[1]
            relayed = relay.client_written[1] + relay.target_written[1]
            if relayed:
                self.udp.labels("relayed").inc(relayed)
            lost = dropped + max(0, read - relayed)
            if lost:
                self.udp.labels("dropped").inc(lost)
        # Last: a scrape that counts this session also sees its bytes.
        self.sessions.labels(session.command, rule).inc()

    def refused(self, reason: str) -> None:
        """A request was refused."""
        self.refusals.labels(reason).inc()

    def auth_result(self, method: str, ok: bool) -> None:
        """A credentials or address check finished."""
        self.auth.labels(method, "success" if ok else "failure").inc()

    def refresh(self, runtime: Runtime, policy: Policy) -> None:
        """Update the gauges (once a second)."""
        self.active.set(len(runtime.sessions))
        routes = policy.routes
        if routes is not None:
            for number, usable in routes.health(runtime.route_marks):
                self.route_up.labels(f"#{number}").set(1 if usable else 0)
