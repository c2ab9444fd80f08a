"""The rule engine: Dante's client-rules then socks-rules, first match wins.

Pure functions over an immutable :class:`~dantex.config.model.Config`: the
session gathers facts (addresses, method, user), asks, and acts on the answer.
"""

from dantex.rules.engine import (
    NO_ANSWERS,
    ClientFacts,
    Lookup,
    Match,
    NeedLookup,
    RuleSet,
    SocksFacts,
)

__all__ = [
    "NO_ANSWERS",
    "ClientFacts",
    "Lookup",
    "Match",
    "NeedLookup",
    "RuleSet",
    "SocksFacts",
]
