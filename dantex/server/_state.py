"""Where a session is: a module of its own, so that every command handler
can import it at load time (the session module imports the handlers)."""

from __future__ import annotations

import enum

__all__ = ["EMPTY", "State"]


class State(enum.Enum):
    """Where a session is."""

    ACCEPTING = "accepting"  # client-rules pending (DNS)
    NEGOTIATING = "negotiating"
    AUTHENTICATING = "authenticating"  # a credentials check is pending
    REQUESTED = "requested"  # request read; rules, DNS, connect in progress
    RELAYING = "relaying"
    CLOSED = "closed"


#: one shared empty set (``frozenset()`` allocates a new one each call)
EMPTY: frozenset[str] = frozenset()
