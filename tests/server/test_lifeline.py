"""A worker notices that its supervisor is gone: EOF on the lifeline pipe."""

from __future__ import annotations

import os

from dantex.server._lifeline import Lifeline
from dantex.server.reactor import DantexReactor


def test_closing_the_write_end_calls_gone_once_and_forgets_the_pipe() -> None:
    reactor = DantexReactor()  # type: ignore[no-untyped-call]
    r, w = os.pipe()
    calls: list[str] = []
    lifeline = Lifeline(r, reactor, lambda: calls.append("gone"))
    reactor.addReader(lifeline)  # type: ignore[no-untyped-call]
    try:
        reactor.doPoll(0)
        assert calls == []  # the supervisor is still there
        os.close(w)
        for _ in range(10):  # bounded: the HUP is there at the first poll
            reactor.doPoll(0.1)
            if calls:
                break
        assert calls == ["gone"]
        assert lifeline not in reactor.getReaders()  # type: ignore[no-untyped-call]
        reactor.doPoll(0)
        assert calls == ["gone"]
    finally:
        reactor.removeAll()  # type: ignore[no-untyped-call]
        reactor._poller.close()
    try:
        os.fstat(r)
    except OSError:
        pass
    else:
        raise AssertionError("the read end is still open")
