"""The epoll reactor without the per-event logging context.

Twisted's epoll reactor wraps every readiness event in
``log.callWithLogger`` (a context push and pop, for the legacy log system's
per-descriptor prefixes).  dantex's descriptors log through ``Logger``
objects and Dante-format lines, so the wrapper is pure cost: on the setup
path it was several percent of the CPU.  A plain readable or writable event
on one of dantex's own :class:`~dantex.server.lean.Conn` descriptors (the
relays' sockets) goes straight to its callback; everything else, and any
exception, takes the epoll reactor's own path.  Worker processes install
this reactor; behaviour is otherwise the epoll reactor's own.
"""

from __future__ import annotations

import errno
import select
from time import perf_counter

from twisted.internet import epollreactor
from twisted.internet.main import installReactor
from twisted.logger import Logger
from twisted.python.failure import Failure

from dantex.server.connector import _Connecting
from dantex.server.lean import Conn, LeanTransport

__all__ = ["DantexReactor", "install"]

_log = Logger()
#: descriptor classes whose plain events skip Twisted's generic dispatch
_FAST: frozenset[type] = frozenset({Conn, LeanTransport, _Connecting})
_SPIN = 50e-6
#: spin only after a poll with at most this many events: a conversation
#: waiting on its next message; busier polls mean the process has work
#: queued anyway, and spinning then takes CPU from it (setups/s +5 %)
_SPIN_AFTER = 2
_IN = select.EPOLLIN
_OUT = select.EPOLLOUT


class DantexReactor(epollreactor.EPollReactor):
    """``EPollReactor`` that dispatches events directly."""

    #: seconds to keep polling without sleeping after a batch of events
    spin = _SPIN

    _busy = False

    def doPoll(self, timeout: float | None) -> None:
        if timeout is None:
            timeout = -1
        poll = self._poller.poll
        most = len(self._selectables)
        try:
            events = poll(0, most)
            if not events and timeout != 0:
                if self._busy and self.spin > 0:
                    # Right after activity the answer is often microseconds
                    # away: waiting awake for it saves the sleep and the
                    # wake-up (tens of microseconds on a virtual CPU).
                    window = self.spin if timeout < 0 else min(self.spin, timeout)
                    deadline = perf_counter() + window
                    while not events and perf_counter() < deadline:
                        events = poll(0, most)
                if not events:
                    events = poll(timeout, most)
        except OSError as err:
            if err.errno == errno.EINTR:
                return
            raise
        self._busy = 0 < len(events) <= _SPIN_AFTER
        selectables = self._selectables
        dispatch = self._doReadOrWrite
        for fd, event in events:
            selectable = selectables.get(fd)
            if selectable is None:
                continue
            if type(selectable) in _FAST and not selectable.closed:
                try:
                    if event == _IN:
                        selectable.read_cb()
                        continue
                    if event == _OUT:
                        selectable.write_cb()
                        continue
                except BaseException:
                    failure = Failure()
                    _log.failure("relay callback failed", failure)
                    self._disconnectSelectable(  # type: ignore[no-untyped-call]
                        selectable, failure.value, event == _IN
                    )
                    continue
            dispatch(selectable, fd, event)  # type: ignore[no-untyped-call]

    doIteration = doPoll


def install() -> DantexReactor:
    """Install :class:`DantexReactor` as the global reactor."""
    reactor = DantexReactor()  # type: ignore[no-untyped-call]
    installReactor(reactor)
    return reactor
