"""The epoll reactor without the per-event logging context.

Twisted's epoll reactor wraps every readiness event in
``log.callWithLogger`` (a context push and pop, for the legacy log system's
per-descriptor prefixes).  dantex's descriptors log through ``Logger``
objects and Dante-format lines, so the wrapper is pure cost: on the setup
path it was several percent of the CPU.  Worker processes install this
reactor; behaviour is otherwise the epoll reactor's own.
"""

from __future__ import annotations

import errno

from twisted.internet import epollreactor
from twisted.internet.main import installReactor

__all__ = ["DantexReactor", "install"]


class DantexReactor(epollreactor.EPollReactor):
    """``EPollReactor`` that dispatches events directly."""

    def doPoll(self, timeout: float | None) -> None:
        if timeout is None:
            timeout = -1
        try:
            events = self._poller.poll(timeout, len(self._selectables))
        except OSError as err:
            if err.errno == errno.EINTR:
                return
            raise
        selectables = self._selectables
        dispatch = self._doReadOrWrite
        for fd, event in events:
            selectable = selectables.get(fd)
            if selectable is not None:
                dispatch(selectable, fd, event)  # type: ignore[no-untyped-call]

    doIteration = doPoll


def install() -> DantexReactor:
    """Install :class:`DantexReactor` as the global reactor."""
    reactor = DantexReactor()  # type: ignore[no-untyped-call]
    installReactor(reactor)
    return reactor
