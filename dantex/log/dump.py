"""The SIGUSR1 state dump (Dante §2.13 "info dump"): counters, then one line
per live session, all at level info.

Session lines follow danted's layout::

    tcp: <client> <internal> <-> <external> <target>: age: 3s, idle: 1s,
    bytes transferred: 1000 <-> 2000

A session still negotiating shows its state instead of byte counts.  Pure:
the caller passes the sessions and the clock reading.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from dantex.log.format import client_text, dante_addr

__all__ = ["session_text", "state_lines"]


def session_text(session: Any, now: float) -> str:
    """One live session (a :class:`~dantex.server.session.SocksSession`)."""
    here = (
        f"{client_text(session.client, session.method, session.user)} "
        f"{dante_addr(session.server)}"
    )
    age = int(now - session.started)
    relay = session.relay
    if relay is None:
        state = getattr(session.state, "value", str(session.state))
        target = f" -> {dante_addr(session.target)}" if session.target else ""
        return f"tcp: {here}{target}: age: {age}s, state: {state}"
    c_read, _c_written, t_read, _t_written = relay.counts()
    idle = int(now - relay.last_active)
    there = f"{dante_addr(session.external)} {dante_addr(session.target)}"
    return (
        f"tcp: {here} <-> {there}: age: {age}s, idle: {idle}s, "
        f"bytes transferred: {c_read} <-> {t_read} ({relay.kind} relay)"
    )


def state_lines(
    sessions: Iterable[Any],
    *,
    now: float,
    started: float,
    accepted: int,
    generation: int,
    worker: int | None = None,
) -> list[str]:
    """The whole dump: a header with counters, then the sessions, oldest first."""
    live = sorted(sessions, key=lambda s: s.started)
    relaying = sum(1 for s in live if s.relay is not None)
    who = f"worker {worker}" if worker is not None else "server"
    lines = [
        f"info dump [: {who} pid {os.getpid()}, up {int(now - started)}s, "
        f"config generation {generation}",
        f"sessions: a: {accepted} c: {len(live)} (negotiating: "
        f"{len(live) - relaying}, relaying: {relaying})",
    ]
    lines.extend(session_text(s, now) for s in live)
    lines.append(f"info dump ]: {len(live)} session{'s' if len(live) != 1 else ''}")
    return lines
