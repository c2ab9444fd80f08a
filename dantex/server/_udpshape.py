"""``bandwidth:`` for a UDP association (Dante's bandwidth module, §1.9).

A datagram cannot be half-read, and a UDP sender cannot be told to wait, so
the association does what the TCP shaper does with a producer: every datagram
read is charged to the rule's bucket after it is read (and relayed), and
while the bucket is in debt the association stops reading *all* its sockets.
Datagrams that arrive meanwhile wait in the kernel's receive buffers, and
what does not fit there is dropped by the kernel -- UDP's own answer to a
receiver that is slower than its sender.  Nothing is buffered by us.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from twisted.internet.interfaces import IDelayedCall, IReactorFDSet, IReactorTime

from dantex.limits.shaper import Meter
from dantex.server._udpsock import UdpEndpoint

__all__ = ["UdpShaper"]


class UdpShaper:
    """Holds an association's sockets while its bucket is in debt.

    :param endpoints: the association's sockets as they are now (an external
        one is added when first used).
    """

    def __init__(
        self,
        meter: Meter,
        reactor: IReactorFDSet,
        clock: IReactorTime,
        endpoints: Callable[[], Iterable[UdpEndpoint]],
    ) -> None:
        self._meter = meter
        self._reactor = reactor
        self._clock = clock
        self._endpoints = endpoints
        self._timer: IDelayedCall | None = None

    @property
    def holding(self) -> bool:
        """Whether reading is stopped until the bucket is out of debt."""
        return self._timer is not None

    def charge(self, n: int) -> None:
        """``n`` bytes were read: stop reading if that put the bucket in debt."""
        if self._timer is None and self._meter.take(n) > 0:
            for endpoint in self._endpoints():
                self.hold(endpoint)
            self._timer = self._clock.callLater(self._meter.wait(), self._check)

    def hold(self, endpoint: UdpEndpoint) -> None:
        """Stop reading ``endpoint`` (also the rest of a read batch)."""
        endpoint.held = True
        self._reactor.removeReader(endpoint)

    def stop(self) -> None:
        """The association ended: forget the timer."""
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None

    def _check(self) -> None:
        wait = self._meter.wait()
        if wait > 0:  # the bucket is shared: others may have taken from it
            self._timer = self._clock.callLater(wait, self._check)
            return
        self._timer = None
        for endpoint in self._endpoints():
            if endpoint.held and not endpoint.closed:
                endpoint.held = False
                self._reactor.addReader(endpoint)
