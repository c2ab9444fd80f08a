"""Dante's ``internal|external.log.<level>.error: <symbols>``: failures on
one side of a session logged again at a chosen level; and
``internal|external.log.<level>.tcp.disabled|tcp.enabled: <options>``: a
session whose connection on that side did not (or did) negotiate one of the
TCP options ``ecn sack timestamps wscale`` (its TCP_INFO, read when the
session ends) is logged at that level.

A failure is known by its text (the system's own message for an errno, as
dantex's log lines carry it, e.g. ``remote peer error (Connection
refused)``) or as a failed name resolution.  The symbols:

* an errno name, lower case (``econnrefused``, ``etimedout`` ...);
* ``no-route``: ``enetunreach``, ``ehostunreach``, ``enetdown``,
  ``ehostdown``;
* ``system-any``: any errno;
* ``dns-any`` and the ``eai_*`` names: any failed resolution (the resolver
  does not keep getaddrinfo's own code, so every ``eai_*`` name matches
  every resolution failure).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable

from dantex.config.model import ErrorLogSpec

__all__ = ["ErrorLevels", "errno_of", "tcp_option_lines"]

#: the system's message for each errno -> the errno
_BY_TEXT = {os.strerror(n): n for n in sorted(errno.errorcode, reverse=True)}
_NO_ROUTE = frozenset(
    {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN, errno.EHOSTDOWN}
)
#: how dantex's lines begin a failed resolution
_DNS_TEXTS = ("could not resolve",)
#: dantex's own words for some errno failures
_ALIASES = {"connect timed out": errno.ETIMEDOUT}


def errno_of(text: str) -> int | None:
    """The errno whose message ``text`` is, or ends with in parentheses."""
    if text.endswith(")") and "(" in text:
        text = text[text.rindex("(") + 1 : -1]
    return _BY_TEXT.get(text, _ALIASES.get(text))


class ErrorLevels:
    """The ``.error`` specs of a configuration and its rules, by side, and
    the ``.tcp.disabled``/``.tcp.enabled`` ones (:attr:`tcp`)."""

    def __init__(self, specs: Iterable[ErrorLogSpec]) -> None:
        self._by_side: dict[str, list[tuple[str, frozenset[str]]]] = {}
        #: the TCP option specs, in file order
        self.tcp: tuple[ErrorLogSpec, ...] = ()
        for spec in specs:
            if spec.what == "error":
                self._by_side.setdefault(spec.side, []).append(
                    (spec.level, frozenset(spec.values))
                )
            else:
                self.tcp += (spec,)

    def __bool__(self) -> bool:
        return bool(self._by_side or self.tcp)

    def levels(self, side: str, text: str) -> list[str]:
        """The levels at which a failure on ``side`` (``internal`` or
        ``external``) described by ``text`` is to be logged again."""
        wanted = self._by_side.get(side)
        if not wanted:
            return []
        dns = text.startswith(_DNS_TEXTS)
        number = None if dns else errno_of(text)
        if number is None and not dns:
            return []
        names: set[str] = set()
        if dns:
            names.add("dns-any")
        else:
            assert number is not None
            names.update(("system-any", errno.errorcode[number].lower()))
            if number in _NO_ROUTE:
                names.add("no-route")
        out = []
        for level, symbols in wanted:
            if level in out:
                continue
            if names & symbols or (dns and any(s.startswith("eai_") for s in symbols)):
                out.append(level)
        return out


def tcp_option_lines(
    specs: Iterable[ErrorLogSpec],
    internal: frozenset[str] | None,
    external: frozenset[str] | None,
) -> list[tuple[str, str]]:
    """``(level, text)`` for each ``<side>.log.<level>.tcp.disabled|enabled``
    spec whose options the side's connection did not (``disabled``) or did
    (``enabled``) negotiate; ``internal``/``external``: the options each
    connection negotiated (None: unknown, nothing said)."""
    out = []
    for spec in specs:
        have = internal if spec.side == "internal" else external
        if have is None:
            continue
        enabled = spec.what == "tcp.enabled"
        hits = [o for o in spec.values if (o in have) is enabled]
        if hits:
            state = "negotiated" if enabled else "not negotiated"
            out.append(
                (
                    spec.level,
                    f"TCP options {state} on the {spec.side} side: " + " ".join(hits),
                )
            )
    return out
