"""Dante's timeouts: which value applies to a session, and the FIN-WAIT limit.

Each ``timeout.*`` keyword may be given globally and in client- and
socks-rules (Dante §1.2, §2.11).  The socks-rule's value wins, else the
client-rule's, else the global one; ``timeout.io`` in a rule stands for
both ``timeout.io.tcp`` and ``timeout.io.udp``.  ``timeout.negotiate`` can
only come from the client-rule (socks-rules are matched after negotiation).

``timeout.tcp_fin_wait`` bounds how long a session may stay half-closed:
once one side has sent its EOF, the other direction must finish within
that many seconds or both connections are closed ("tcp-fin-wait timeout").
As danted does, a FIN-WAIT limit longer than a non-zero TCP i/o timeout is
cut down to it.

The end-of-session reasons are danted's words: ``i/o timeout``,
``tcp-fin-wait timeout``.
"""

from __future__ import annotations

from collections.abc import Iterable

from dantex.config.model import Rule, Timeouts

__all__ = ["FIN_WAIT_REASON", "IO_REASON", "fin_wait", "pick"]

#: the end-of-session reason of an idle session (danted's text)
IO_REASON = "i/o timeout"
#: the end-of-session reason of a half-closed session held too long
FIN_WAIT_REASON = "tcp-fin-wait timeout"


def pick(name: str, rules: Iterable[Rule | None], defaults: Timeouts) -> float:
    """The timeout ``name`` (a :class:`Timeouts` field) for a session.

    :param rules: the matched rules, most specific first (socks-rule, then
        client-rule); None for a level without a rule.
    """
    keys = (name, "io") if name.startswith("io_") else (name,)
    for rule in rules:
        if rule is None:
            continue
        for key in keys:
            if key in rule.timeouts:
                return float(rule.timeouts[key])
    return float(getattr(defaults, name))


def fin_wait(rules: Iterable[Rule | None], defaults: Timeouts) -> float:
    """``timeout.tcp_fin_wait`` for a session, at most its TCP i/o timeout."""
    chain = tuple(rules)
    value = pick("tcp_fin_wait", chain, defaults)
    io = pick("io_tcp", chain, defaults)
    if value > 0 and io > 0:
        return min(value, io)
    return value
