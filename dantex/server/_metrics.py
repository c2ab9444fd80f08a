"""Wiring of :mod:`dantex.metrics` into a serving process.

One process (``--workers 1``): the metrics live in a private registry and
this process serves them on ``metrics.internal``.  A worker: the metrics
are written to the supervisor's multiprocess directory (the environment
says where) and the supervisor serves the sum.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from twisted.internet.interfaces import IListeningPort
from twisted.internet.task import LoopingCall

from dantex.config.model import InternalAddress
from dantex.log.format import dante_addr
from dantex.protocol.address import Address

if TYPE_CHECKING:
    from dantex._interfaces import IServerReactor
    from dantex.metrics import SessionMetrics
    from dantex.server.context import Policy, Runtime

__all__ = ["ProcessMetrics", "listen_metrics"]

#: Seconds between gauge refreshes.
REFRESH = 1.0


def listen_metrics(
    reactor: IServerReactor, where: InternalAddress, site: object
) -> tuple[IListeningPort, str]:
    """Bind the metrics web site; returns the port and a log line."""
    port = reactor.listenTCP(where.port, site, interface=where.host)  # type: ignore[arg-type]
    actual = port.getHost().port  # type: ignore[attr-defined]
    url_host = f"[{where.host}]" if ":" in where.host else where.host
    line = (
        f"serving metrics at http://{url_host}:{actual}/metrics "
        f"({dante_addr(Address.from_host(where.host, actual))})"
    )
    return port, line


class ProcessMetrics:
    """The metrics of one serving process and their upkeep."""

    def __init__(self, runtime: Runtime, where: InternalAddress) -> None:
        from dantex.metrics import MULTIPROC_ENV, SessionMetrics

        self.runtime = runtime
        self.where = where
        #: a worker writes multiprocess files and serves nothing
        self.worker = bool(os.environ.get(MULTIPROC_ENV))
        registry = None
        if not self.worker:
            from prometheus_client import CollectorRegistry

            registry = CollectorRegistry()
        self.metrics: SessionMetrics = SessionMetrics(registry)
        runtime.metrics = self.metrics
        runtime.on_session_end.append(self.metrics.session_ended)
        self.port: IListeningPort | None = None
        self._loop: LoopingCall | None = None

    def listen(self, reactor: IServerReactor, log: Callable[[str], None]) -> None:
        """Serve the registry (not in a worker)."""
        if self.worker or self.metrics.registry is None:
            return
        from dantex.metrics.serve import metrics_site

        self.port, line = listen_metrics(
            reactor, self.where, metrics_site(self.metrics.registry)
        )
        log(line)

    def start(self, policy: Callable[[], Policy]) -> None:
        """Refresh the gauges once a second."""
        loop = self._loop = LoopingCall(
            lambda: self.metrics.refresh(self.runtime, policy())
        )
        loop.clock = self.runtime.clock
        loop.start(REFRESH, now=True)

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        if self.port is not None:
            self.port.stopListening()
            self.port = None
