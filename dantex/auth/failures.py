"""Slowing down repeated authentication failures from one source address.

Dante has no such limit.  dantex counts failed authentications per client
IP address in a sliding window (``auth.failures: N/S``, default 5 in 60 s).
Once a source has N failures in the window, each further attempt waits
before it is checked: 1 s, then doubling per further failure, at most
:data:`MAX_DELAY` seconds.  The session reads nothing from that client
meanwhile.  A success from the address clears its record.  At most
``max_sources`` addresses are tracked (the oldest is forgotten first), so
memory stays bounded under a spray of sources.
"""

from __future__ import annotations

from collections import OrderedDict, deque

from twisted.internet.interfaces import IReactorTime

__all__ = ["MAX_DELAY", "FailureLimiter"]

#: Longest wait before a check, in seconds.
MAX_DELAY = 16.0


class FailureLimiter:
    """Counts failures per source; says how long the next attempt must wait.

    :param max_failures: failures allowed in ``window`` before waits start
        (0 turns the limiter off).
    :param window: seconds a failure is remembered.
    """

    def __init__(
        self,
        clock: IReactorTime,
        max_failures: int = 5,
        window: float = 60.0,
        *,
        max_sources: int = 65_536,
    ) -> None:
        self._clock = clock
        self.max_failures = max_failures
        self.window = window
        self._max_sources = max_sources
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, source: str) -> deque[float] | None:
        times = self._failures.get(source)
        if times is None:
            return None
        horizon = self._clock.seconds() - self.window
        while times and times[0] <= horizon:
            times.popleft()
        if not times:
            del self._failures[source]
            return None
        return times

    def delay_for(self, source: str) -> float:
        """Seconds the next attempt from ``source`` must wait (0: none)."""
        if self.max_failures <= 0:
            return 0.0
        times = self._recent(source)
        if times is None:
            return 0.0
        excess = len(times) - self.max_failures
        if excess < 0:
            return 0.0
        return min(MAX_DELAY, 2.0**excess)

    def failed(self, source: str) -> None:
        """Record a failed authentication from ``source``."""
        if self.max_failures <= 0:
            return
        times = self._recent(source)
        if times is None:
            times = self._failures[source] = deque(maxlen=self.max_failures + 8)
        times.append(self._clock.seconds())
        self._failures.move_to_end(source)
        while len(self._failures) > self._max_sources:
            self._failures.popitem(last=False)

    def succeeded(self, source: str) -> None:
        """A success clears ``source``'s record."""
        self._failures.pop(source, None)
