"""Graceful stop: let live sessions finish for ``timeout.shutdown`` seconds.

On SIGTERM the service stops accepting first (its listeners close), then
:func:`drain` waits until no session is left or the time is up, and closes
what remains: relayed sessions end with "server shutting down" in their
disconnect line, sessions still negotiating are closed.  With
``timeout.shutdown: 0`` (the default) the remaining sessions are closed at
once, as before.

The wait polls the session set on the injected clock (a few times a
second); nothing is added to the relay's hot path.  A second SIGTERM (or
SIGINT) during the wait closes the remaining sessions at once.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from dantex.server._state import State
from dantex.server.relay import EndReason

__all__ = ["POLL", "Drain", "close_sessions", "drain"]

#: Seconds between looks at the session set while draining.
POLL = 0.1


def close_sessions(sessions: Collection[object], why: str) -> int:
    """Close every session in ``sessions``; returns how many there were."""

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


class Drain:
    """Wait (at most ``timeout`` s) for ``sessions`` to empty, then close the rest.

    :param sessions: the live set; sessions remove themselves when they end.
    :param log: receives one line when draining starts and one at the end.

    :ivar done: fires when no session is left.
    """

    def __init__(
        self,
        sessions: Collection[object],
        clock: IReactorTime,
        timeout: float,
        log: Callable[[str], None],
    ) -> None:
        self.sessions = sessions
        self.clock = clock
        self.timeout = timeout
        self.log = log
        self.done: Deferred[None] = Deferred()
        self._call: IDelayedCall | None = None
        if not sessions:
            self.done.callback(None)
        elif timeout <= 0:
            n = close_sessions(sessions, "server shutting down")
            log(f"shutdown: closed {n} live session(s)")
            self.done.callback(None)
        else:
            log(
                f"shutdown: waiting up to {timeout:g}s for {len(sessions)} "
                "live session(s)"
            )
            self._deadline = clock.seconds() + timeout
            self._call = clock.callLater(POLL, self._look)

    def _look(self) -> None:
        self._call = None
        if not self.sessions:
            self.log("shutdown: every session has ended")
            self.done.callback(None)
            return
        clock = self.clock
        if clock.seconds() >= self._deadline:
            self._close(f"server shutting down (timeout.shutdown {self.timeout:g}s)")
            return
        delay = min(POLL, max(self._deadline - clock.seconds(), 0.0))
        self._call = clock.callLater(delay, self._look)

    def _close(self, why: str) -> None:
        n = close_sessions(self.sessions, why)
        self.log(f"shutdown: closed {n} session(s) still live ({why})")
        self.done.callback(None)

    def close_now(self) -> None:
        """Stop waiting (a second SIGTERM): close what is left at once."""
        if self.done.called:
            return
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        self._close("server shutting down")


def drain(
    sessions: Collection[object],
    clock: IReactorTime,
    timeout: float,
    log: Callable[[str], None],
) -> Deferred[None]:
    """:class:`Drain` ``sessions``; returns its ``done``."""
    return Drain(sessions, clock, timeout, log).done
