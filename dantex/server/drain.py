"""Graceful stop: let live sessions finish for ``timeout.shutdown`` seconds.

On SIGTERM the service stops accepting first (its listeners close), then
:func:`drain` waits until no session is left or the time is up, and closes
what remains: relayed sessions end with "server shutting down" in their
disconnect line, sessions still negotiating are closed.  With
``timeout.shutdown: 0`` (the default) the remaining sessions are closed at
once, as before.

The wait polls the session set on the injected clock (a few times a
second); nothing is added to the relay's hot path.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from dantex.server.relay import EndReason

__all__ = ["POLL", "close_sessions", "drain"]

#: Seconds between looks at the session set while draining.
POLL = 0.1


def close_sessions(sessions: Collection[object], why: str) -> int:
    """Close every session in ``sessions``; returns how many there were."""
    from dantex.server.session import State

    closed = 0
    for session in list(sessions):
        closed += 1
        relay: Any = getattr(session, "relay", None)
        state = getattr(session, "state", None)
        if relay is not None and state is State.RELAYING:
            relay.abort(EndReason("timeout", why), reset=False)
            continue
        finish: Callable[..., None] | None = getattr(session, "finish", None)
        if finish is not None:
            finish(why, reason_side="error")
    return closed


def drain(
    sessions: Collection[object],
    clock: IReactorTime,
    timeout: float,
    log: Callable[[str], None],
) -> Deferred[None]:
    """Wait (at most ``timeout`` s) for ``sessions`` to empty, then close the rest.

    :param sessions: the live set; sessions remove themselves when they end.
    :param log: receives one line when draining starts and one at the end.
    :returns: fires when no session is left.
    """
    done: Deferred[None] = Deferred()
    if not sessions:
        done.callback(None)
        return done
    if timeout <= 0:
        n = close_sessions(sessions, "server shutting down")
        log(f"shutdown: closed {n} live session(s)")
        done.callback(None)
        return done
    log(f"shutdown: waiting up to {timeout:g}s for {len(sessions)} live session(s)")
    deadline = clock.seconds() + timeout

    def look() -> None:
        if not sessions:
            log("shutdown: every session has ended")
            done.callback(None)
            return
        if clock.seconds() >= deadline:
            n = close_sessions(
                sessions, f"server shutting down (timeout.shutdown {timeout:g}s)"
            )
            log(f"shutdown: closed {n} session(s) still live after {timeout:g}s")
            done.callback(None)
            return
        clock.callLater(min(POLL, max(deadline - clock.seconds(), 0.0)), look)

    clock.callLater(POLL, look)
    return done
