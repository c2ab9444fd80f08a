"""Applying ``bandwidth:`` to a relay by pausing its producers (Dante §1.9).

Each direction's producer (the transport bytes are read from) is registered
with its consumer through a :class:`Gate`.  The gate is paused for two
independent reasons -- the consumer's buffer is full (backpressure) or the
bucket is in debt (shaping) -- and resumes the transport only when neither
holds, so shaping never defeats backpressure and nothing is buffered beyond
one read per direction.

Bytes are charged after each read; when the bucket goes into debt the side
that read is held and one timer (on the injected clock) checks the bucket
again when the debt should be paid, resuming every held side if it is.
"""

from __future__ import annotations

from typing import Protocol

from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from zope.interface import implementer

from dantex.limits._table import LimitTable

__all__ = ["Gate", "Meter", "Shaper", "TableMeter"]


class Meter(Protocol):
    """A token bucket as the shaper sees it (see :mod:`dantex.limits.bucket`)."""

    rate: int

    def take(self, n: int) -> float:
        """Charge ``n`` bytes; seconds to pause (0: go on)."""

    def wait(self) -> float:
        """Seconds until the bucket is out of debt."""


class TableMeter:
    """A bucket kept in a :class:`~dantex.limits._table.LimitTable`."""

    def __init__(
        self, table: LimitTable, digest: bytes, rate: int, clock: IReactorTime
    ) -> None:
        self.table = table
        self.digest = digest
        self.rate = rate
        self._clock = clock

    def take(self, n: int) -> float:
        return self.table.take(self.digest, self.rate, n, self._clock.seconds())

    def wait(self) -> float:
        return self.table.wait(self.digest, self.rate, self._clock.seconds())


@implementer(IPushProducer)
class Gate:
    """Stands between a consumer and the producer it may pause."""

    def __init__(self, producer: IPushProducer) -> None:
        self.producer = producer
        self.flow_paused = False  #: the consumer asked (backpressure)
        self.held = False  #: the shaper asked (bucket in debt)

    def pauseProducing(self) -> None:
        self.flow_paused = True
        if not self.held:
            self.producer.pauseProducing()

    def resumeProducing(self) -> None:
        self.flow_paused = False
        if not self.held:
            self.producer.resumeProducing()

    def stopProducing(self) -> None:
        self.producer.stopProducing()

    def hold(self) -> None:
        """Stop reading until :meth:`release` (the bucket is in debt)."""
        if not self.held:
            self.held = True
            if not self.flow_paused:
                self.producer.pauseProducing()

    def release(self) -> None:
        """Read again unless the consumer still wants a pause."""
        if self.held:
            self.held = False
            if not self.flow_paused:
                self.producer.resumeProducing()


class Shaper:
    """Keeps both directions of one relay within a meter's rate."""

    def __init__(self, meter: Meter, clock: IReactorTime) -> None:
        self.meter = meter
        self._clock = clock
        self._gates: dict[str, Gate] = {}
        self._call: IDelayedCall | None = None

    def attach(self, client: object, target: object) -> None:
        """Register each transport as the other's producer, through gates.

        :param client: the client-side transport (an ``IConsumer`` and
            ``IPushProducer``).
        :param target: the target-side transport.
        """
        # Smaller reads at low rates: a 64 KiB read at 100 KB/s would be a
        # 0.6 s step; ~1/16 s of bytes keeps the flow (and the sharing) smooth.
        chunk = self.read_size()
        for transport in (client, target):
            if isinstance(getattr(transport, "bufferSize", None), int):
                transport.bufferSize = chunk  # type: ignore[attr-defined]
        from_client = Gate(client)  # type: ignore[arg-type]
        from_target = Gate(target)  # type: ignore[arg-type]
        self._gates = {"client": from_client, "target": from_target}
        client.registerProducer(from_target, True)  # type: ignore[attr-defined]
        target.registerProducer(from_client, True)  # type: ignore[attr-defined]

    def read_size(self) -> int:
        """How much a shaped transport reads at once (1 KiB .. 64 KiB)."""
        return int(min(65536, max(1024, self.meter.rate // 16)))

    def consumed(self, side: str, n: int) -> None:
        """``n`` bytes were read from ``side`` ("client" or "target")."""
        pause = self.meter.take(n)
        if pause <= 0:
            return
        gate = self._gates.get(side)
        if gate is not None:
            gate.hold()
        self._schedule(pause)

    def _schedule(self, pause: float) -> None:
        if self._call is None or not self._call.active():
            self._call = self._clock.callLater(pause, self._check)

    def _check(self) -> None:
        self._call = None
        pause = self.meter.wait()
        if pause > 0:
            self._schedule(pause)
            return
        for gate in self._gates.values():
            gate.release()

    def stop(self) -> None:
        """The relay ended: no more timers, no more resumes."""
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        self._gates = {}
