"""Token-bucket arithmetic for ``bandwidth:`` (Dante §1.9), on an injected clock.

The bucket holds at most ``burst`` bytes of credit and refills at ``rate``
bytes per second.  Bytes are charged *after* they were read (a read cannot be
made smaller than what the kernel hands over), so the credit may go negative:
the reader is then paused until the debt is paid back.  Over any long period
the average is exactly ``rate``; the error is at most one burst plus one read.

The state is two numbers (credit, time of the last update) so that it can
live in shared memory (:mod:`dantex.limits._table`) as well as in an object
(:class:`TokenBucket`).
"""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime

__all__ = ["TokenBucket", "burst_for", "charge", "refill"]

#: The credit a bucket may save up, as a fraction of one second of its rate.
BURST_SECONDS = 0.1


def burst_for(rate: int) -> float:
    """How many bytes a bucket of ``rate`` bytes/s may hold (at least 1)."""
    return max(1.0, rate * BURST_SECONDS)


def refill(tokens: float, stamp: float, now: float, rate: int) -> float:
    """The credit at ``now`` of a bucket that held ``tokens`` at ``stamp``."""
    if now > stamp:
        tokens += (now - stamp) * rate
    return min(tokens, burst_for(rate))


def charge(tokens: float, stamp: float, now: float, rate: int, n: int) -> float:
    """The credit after charging ``n`` bytes at ``now``."""
    return refill(tokens, stamp, now, rate) - n


def wait_for(tokens: float, rate: int) -> float:
    """Seconds until a credit of ``tokens`` is back to zero (0 if less than
    one byte is owed: float rounding must not cost another timer)."""
    return -tokens / rate if tokens < -0.5 else 0.0


class TokenBucket:
    """One bucket in process memory.

    :param rate: bytes per second (> 0).
    :param clock: where the time comes from.
    """

    def __init__(self, rate: int, clock: IReactorTime) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self._clock = clock
        self._tokens = burst_for(rate)
        self._stamp = clock.seconds()

    def take(self, n: int) -> float:
        """Charge ``n`` bytes; seconds the caller should pause (0: go on)."""
        now = self._clock.seconds()
        self._tokens = charge(self._tokens, self._stamp, now, self.rate, n)
        self._stamp = now
        return wait_for(self._tokens, self.rate)

    def wait(self) -> float:
        """Seconds until the bucket is out of debt (0: a reader may go on)."""
        now = self._clock.seconds()
        self._tokens = refill(self._tokens, self._stamp, now, self.rate)
        self._stamp = now
        return wait_for(self._tokens, self.rate)
