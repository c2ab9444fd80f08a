"""Token buckets and the shaper on a Clock: rates, debt, fair resumption."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from dantex.limits.bucket import TokenBucket, burst_for
from dantex.limits.shaper import Gate, Shaper


def test_bucket_starts_with_a_burst_and_charges_debt() -> None:
    """A 1000 B/s bucket holds 100 B; 600 B read leave 500 B of debt = 0.5 s."""
    clock = Clock()
    bucket = TokenBucket(1000, clock)
    assert burst_for(1000) == 100
    assert bucket.take(100) == 0
    assert bucket.take(500) == pytest.approx(0.5)
    clock.advance(0.25)
    assert bucket.wait() == pytest.approx(0.25)
    clock.advance(0.25)
    assert bucket.wait() == 0


def test_bucket_never_saves_more_than_its_burst() -> None:
    """An idle hour refills only the burst, not an hour of bytes."""
    clock = Clock()
    bucket = TokenBucket(1000, clock)
    clock.advance(3600)
    assert bucket.take(100) == 0
    assert bucket.take(1000) == pytest.approx(1.0)


def test_bucket_refuses_a_zero_rate() -> None:
    """A rate must be positive."""
    with pytest.raises(ValueError):
        TokenBucket(0, Clock())


class Producer:
    """A push producer that records pause/resume."""

    def __init__(self) -> None:
        self.paused = False
        self.events: list[str] = []

    def pauseProducing(self) -> None:
        self.paused = True
        self.events.append("pause")

    def resumeProducing(self) -> None:
        self.paused = False
        self.events.append("resume")

    def stopProducing(self) -> None:
        self.events.append("stop")


def test_gate_resumes_only_when_neither_reason_holds() -> None:
    """Backpressure and shaping pause independently; both must lift."""
    p = Producer()
    gate = Gate(p)  # type: ignore[arg-type]
    gate.hold()
    gate.pauseProducing()  # consumer full as well
    gate.release()
    assert p.paused  # still full
    gate.resumeProducing()
    assert not p.paused
    gate.pauseProducing()
    gate.hold()
    gate.resumeProducing()
    assert p.paused  # still in debt
    gate.release()
    assert not p.paused


def shaped(rate: int) -> tuple[Clock, Shaper, StringTransport, StringTransport]:
    clock = Clock()
    shaper = Shaper(TokenBucket(rate, clock), clock)
    client, target = StringTransport(), StringTransport()
    shaper.attach(client, target)
    return clock, shaper, client, target


def test_shaper_pauses_the_reading_side_until_the_debt_is_paid() -> None:
    """A read that overdraws the bucket pauses that side for debt/rate seconds."""
    clock, shaper, client, target = shaped(1000)
    shaper.consumed("client", 100)
    assert client.producerState == "producing"
    shaper.consumed("client", 1000)  # 1000 B of debt: 1 s
    assert client.producerState == "paused"
    assert target.producerState == "producing"
    clock.advance(0.99)
    assert client.producerState == "paused"
    clock.advance(0.01)
    assert client.producerState == "producing"


def test_shaper_counts_both_directions_against_one_bucket() -> None:
    """Bytes in either direction draw on the same credit; both sides resume."""
    clock, shaper, client, target = shaped(1000)
    shaper.consumed("client", 600)
    shaper.consumed("target", 500)  # 1100 > 100 credit: 1 s of debt
    assert target.producerState == "paused"
    shaper.consumed("client", 1000)  # 2 s of debt now
    assert client.producerState == "paused"
    clock.advance(1.0)  # the first check finds 1 s still owed
    assert client.producerState == "paused"
    clock.advance(1.0)
    assert (client.producerState, target.producerState) == ("producing", "producing")


def test_shaper_stop_cancels_its_timer() -> None:
    """After the relay ends no timer is left and nothing is resumed."""
    clock, shaper, _client, _target = shaped(1000)
    shaper.consumed("client", 5000)
    assert clock.getDelayedCalls()
    shaper.stop()
    assert not clock.getDelayedCalls()


def test_average_rate_over_many_reads_is_the_rate() -> None:
    """64 KiB reads whenever allowed, for 10 s at 100 KB/s: ~1 MB moved."""
    clock, shaper, client, _target = shaped(100_000)
    moved = 0
    for _ in range(10_000):
        if clock.seconds() >= 10:
            break
        if client.producerState == "producing":
            shaper.consumed("client", 65536)
            moved += 65536
        else:
            clock.advance(0.01)
    assert moved / 10 == pytest.approx(100_000, rel=0.08)
