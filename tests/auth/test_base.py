"""Shared auth pieces: the verified cache, the failure limiter, safe names."""

from __future__ import annotations

from twisted.internet.task import Clock

from dantex.auth._base import SocksCredentials, VerifiedCache, printable
from dantex.auth.failures import MAX_DELAY, FailureLimiter


def test_cache_expires_after_ttl() -> None:
    """An entry is returned until its TTL passes on the injected clock."""
    clock = Clock()
    cache = VerifiedCache(clock, ttl=10)
    cache.put("alice", b"pw", "token")
    assert cache.get("alice", b"pw") == "token"
    assert cache.get("alice", b"other") is None
    clock.advance(10)
    assert cache.get("alice", b"pw") is None


def test_cache_keeps_no_password_and_stays_bounded() -> None:
    """Keys hold an HMAC, never the password; the oldest entries go first."""
    cache = VerifiedCache(Clock(), ttl=10, max_entries=2)
    for i in range(3):
        cache.put(f"u{i}", b"secret-password", i)
    assert len(cache) == 2
    assert cache.get("u0", b"secret-password") is None
    assert all(b"secret-password" not in key[1] for key in cache._entries)


def test_credentials_repr_hides_the_password() -> None:
    """SocksCredentials never shows the password."""
    creds = SocksCredentials(b"alice", b"hunter2", "127.0.0.1", 1, "127.0.0.1", 2)
    assert "hunter2" not in repr(creds)
    assert creds.checkPassword(b"hunter2") and not creds.checkPassword(b"x")


def test_printable_escapes_control_characters() -> None:
    """A user name cannot forge a log line."""
    assert printable(b"eve\nfake: line") == "eve\\x0afake: line"
    assert printable('a"b') == "a\\x22b"
    assert printable("x" * 100).endswith("...")


def test_limiter_waits_after_max_failures_and_doubles() -> None:
    """N failures in the window are free; then 1 s, 2 s, 4 s ... up to MAX_DELAY."""
    clock = Clock()
    limiter = FailureLimiter(clock, max_failures=3, window=60)
    delays = []
    for _ in range(10):
        delays.append(limiter.delay_for("10.0.0.1"))
        limiter.failed("10.0.0.1")
    assert delays[:4] == [0.0, 0.0, 0.0, 1.0]
    assert delays[4:6] == [2.0, 4.0]
    assert max(delays) == MAX_DELAY
    assert limiter.delay_for("10.0.0.2") == 0.0


def test_limiter_forgets_after_the_window_and_on_success() -> None:
    """Old failures leave the window; a success clears the source."""
    clock = Clock()
    limiter = FailureLimiter(clock, max_failures=1, window=60)
    limiter.failed("a")
    limiter.failed("b")
    assert limiter.delay_for("a") == 1.0
    clock.advance(61)
    assert limiter.delay_for("a") == 0.0
    limiter.succeeded("b")
    assert limiter.delay_for("b") == 0.0


def test_limiter_off_with_zero() -> None:
    """auth.failures: 0 turns slowing down off."""
    limiter = FailureLimiter(Clock(), max_failures=0)
    for _ in range(20):
        limiter.failed("a")
    assert limiter.delay_for("a") == 0.0
