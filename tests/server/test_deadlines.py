"""The negotiation deadlines' queue: exact expiry, one timer for all."""

from __future__ import annotations

import functools

from twisted.internet.task import Clock

from dantex.server._deadlines import DeadlineQueue


def test_each_deadline_fires_exactly_delay_after_its_add() -> None:
    clock = Clock()
    queue = DeadlineQueue(clock, 5.0)
    fired: list[tuple[str, float]] = []
    queue.add("a", lambda: fired.append(("a", clock.seconds())))
    clock.advance(1.5)
    queue.add("b", lambda: fired.append(("b", clock.seconds())))
    assert len(clock.getDelayedCalls()) == 1  # one timer for the queue
    clock.advance(3.4)
    assert fired == []
    clock.advance(0.1)
    assert fired == [("a", 5.0)]
    clock.advance(1.4)
    assert fired == [("a", 5.0)]
    clock.advance(0.1)
    assert fired == [("a", 5.0), ("b", 6.5)]
    assert not clock.getDelayedCalls() and len(queue) == 0


def test_removed_deadlines_never_fire() -> None:
    clock = Clock()
    queue = DeadlineQueue(clock, 5.0)
    fired: list[str] = []
    for key in "abc":
        queue.add(key, functools.partial(fired.append, key))
        clock.advance(1)
    queue.remove("a")
    queue.remove("c")
    queue.remove("never added")
    clock.advance(10)
    assert fired == ["b"]


def test_an_expiry_may_remove_and_add_others() -> None:
    """What an expiry does to the queue is seen by the same sweep."""
    clock = Clock()
    queue = DeadlineQueue(clock, 2.0)
    fired: list[str] = []

    def first() -> None:
        fired.append("a")
        queue.remove("b")
        queue.add("c", lambda: fired.append("c"))

    queue.add("a", first)
    queue.add("b", lambda: fired.append("b"))
    clock.advance(2)
    assert fired == ["a"]
    clock.advance(2)
    assert fired == ["a", "c"]
