"""One timer for many deadlines of the same length (the negotiation timeout).

Every accepted connection gets a negotiation deadline and nearly every one
is cancelled a few milliseconds later.  A ``DelayedCall`` each (an object,
a heap entry, a cancellation the reactor later sweeps out) was several
percent of a setup's CPU.  Deadlines that are all "added now + the same
delay" fall due in the order they were added, so they can wait in an
insertion-ordered dict: adding and removing one is a dict operation, and a
single ``DelayedCall`` -- for the earliest -- serves the whole queue.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

from twisted.internet.interfaces import IDelayedCall, IReactorTime

__all__ = ["DeadlineQueue"]


class DeadlineQueue:
    """Deadlines ``delay`` seconds after each :meth:`add`, on ``clock``."""

    def __init__(self, clock: IReactorTime, delay: float) -> None:
        self.delay = delay
        self._clock = clock
        self._due: dict[Hashable, tuple[float, Callable[[], None]]] = {}
        self._call: IDelayedCall | None = None

    def __len__(self) -> int:
        return len(self._due)

    def add(self, key: Hashable, expire: Callable[[], None]) -> None:
        """Call ``expire`` in ``delay`` seconds unless ``key`` is removed first."""
        clock = self._clock
        self._due[key] = (clock.seconds() + self.delay, expire)
        if self._call is None:
            self._call = clock.callLater(self.delay, self._fire)

    def remove(self, key: Hashable) -> None:
        """Forget ``key``'s deadline (nothing if it has none)."""
        self._due.pop(key, None)

    def _fire(self) -> None:
        self._call = None
        due = self._due
        now = self._clock.seconds()
        while due:
            key = next(iter(due))
            when, expire = due[key]
            if when > now:  # the earliest left: wait for it
                self._call = self._clock.callLater(when - now, self._fire)
                return
            del due[key]
            expire()
