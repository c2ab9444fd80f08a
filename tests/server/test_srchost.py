"""srchost: nodnsunknown / nodnsmismatch, in memory with fixed DNS tables.

The client is 127.0.0.1:40000 and talks SOCKS 5 (RFC 1928 §3 greeting
VER=5 NMETHODS=1 METHODS=[00], answered 05 00 when the client is let in).
"""

from __future__ import annotations

from collections.abc import Mapping

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from dantex.server import _srchost
from dantex.testing import MemorySession, StaticResolver, memory_session

RULES = """
internal: 127.0.0.1 port = 1080
external: 127.0.0.1
socksmethod: none
client pass { from: 127.0.0.0/8 to: 0/0 log: connect error }
socks pass { from: 0/0 to: 0/0 }
"""
GREETING = b"\x05\x01\x00"


Table = Mapping[str, tuple[str, ...]]
NONE: Table = {}


def session(
    options: str, reverse: Table = NONE, forward: Table = NONE
) -> MemorySession:
    return memory_session(
        f"srchost: {options}\n" + RULES, reverse=reverse, forward=forward
    )


def refused(m: MemorySession, why: str) -> None:
    assert m.send(GREETING) == b""
    assert m.transport.disconnecting or not m.transport.connected
    assert m.log.messages() == [
        f"block(1): tcp/accept ]: 127.0.0.1.40000 127.0.0.1.1080: srchost: {why}"
    ]


def test_nodnsunknown_refuses_a_client_without_a_name() -> None:
    refused(session("nodnsunknown"), "127.0.0.1 has no DNS name (nodnsunknown)")


def test_nodnsmismatch_refuses_a_name_that_does_not_resolve_back() -> None:
    m = session(
        "nodnsmismatch",
        reverse={"127.0.0.1": ("gw.test",)},
        forward={"gw.test": ("192.0.2.7", "2001:db8::7")},
    )
    refused(
        m,
        "127.0.0.1 is named gw.test, which resolves to 192.0.2.7, 2001:db8::7 "
        "(nodnsmismatch)",
    )


def test_a_name_that_resolves_back_passes_both_checks() -> None:
    m = session(
        "nodnsunknown nodnsmismatch",
        reverse={"127.0.0.1": ("localhost",)},
        forward={"localhost": ("::1", "127.0.0.1")},
    )
    assert m.send(GREETING) == b"\x05\x00"
    assert m.log.messages() == ["pass(1): tcp/accept [: 127.0.0.1.40000 127.0.0.1.1080"]


def test_nodnsmismatch_alone_lets_a_nameless_client_in() -> None:
    """With no name there is nothing to mismatch (nodnsunknown is for that)."""
    m = session("nodnsmismatch")
    assert m.send(GREETING) == b"\x05\x00"


class Pending(StaticResolver):
    """Lookups that wait until the test answers them with ``_done``."""

    def _lookup(self, kind: str, key: str, fn: object) -> Deferred[tuple[str, ...]]:
        self.asked.append((kind, key))
        d: Deferred[tuple[str, ...]] = Deferred()
        self._waiting.setdefault((kind, key), []).append(d)
        return d


def test_slow_answers_are_waited_for_and_cached_answers_are_not() -> None:
    """The check waits for the reverse then the forward lookup; a second
    check finds both in the cache and answers at once."""
    resolver = Pending(Clock())
    options = frozenset({"nodnsunknown", "nodnsmismatch"})
    verdict = _srchost.check(resolver, "127.0.0.1", options)
    assert isinstance(verdict, Deferred)
    got: list[str | None] = []
    verdict.addCallback(got.append)
    assert resolver.asked == [("reverse", "127.0.0.1")]
    resolver._done(("localhost",), "reverse", "127.0.0.1")
    assert resolver.asked[-1] == ("forward", "localhost") and got == []
    resolver._done(("127.0.0.1",), "forward", "localhost")
    assert got == [None]
    assert _srchost.check(resolver, "127.0.0.1", options) is None
    assert len(resolver.asked) == 2
