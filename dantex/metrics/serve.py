"""Serving the metrics: a Twisted web resource and the multiprocess directory.

The exposition is generated in the reactor thread (it reads in-memory
counters, or a few small files with workers); Prometheus scrapes seldom.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

__all__ = [
    "MetricsResource",
    "aggregate_registry",
    "forget_process",
    "metrics_site",
    "new_multiprocess_dir",
    "remove_multiprocess_dir",
]


class MetricsResource(Resource):
    """``GET /metrics`` (and ``/``): the text exposition format."""

    isLeaf = True
    log = Logger()

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.registry = registry

    def render_GET(self, request: Request) -> bytes:
        if request.path not in (b"/metrics", b"/"):
            request.setResponseCode(404)
            return b"not found\n"
        for _ in range(3):
            try:
                body = generate_latest(self.registry)
                break
            except Exception as e:  # a worker's file grew while being read
                why = e
        else:
            self.log.warn("metrics could not be read: {why}", why=why)
            request.setResponseCode(503)
            return b"metrics temporarily unavailable\n"
        request.setHeader(b"Content-Type", CONTENT_TYPE_LATEST.encode("ascii"))
        return body


def metrics_site(registry: CollectorRegistry) -> Site:
    """A quiet web site serving ``registry``."""
    site = Site(MetricsResource(registry))
    site.noisy = False
    site.log = lambda request: None  # type: ignore[method-assign]
    return site


def new_multiprocess_dir() -> str:
    """A fresh private directory for the workers' metric files."""
    return tempfile.mkdtemp(prefix="dantex-metrics-")


def remove_multiprocess_dir(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


def aggregate_registry(path: str) -> CollectorRegistry:
    """A registry that sums the metric files of every worker in ``path``."""
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
    return registry


def forget_process(path: str, pid: int) -> None:
    """A worker exited: drop its live gauges (its counters stay counted)."""
    from prometheus_client import multiprocess

    if os.path.isdir(path):
        multiprocess.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]
