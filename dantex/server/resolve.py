"""Name resolution that never blocks the reactor, with a cache.

``getaddrinfo``/``getnameinfo`` run in a thread pool; answers are cached for
``ttl`` seconds (failures for ``negative_ttl``), and concurrent questions for
the same name share one lookup.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorThreads, IReactorTime
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

__all__ = ["Resolver"]

_Key = tuple[str, str]


class Resolver:
    """Cached forward and reverse lookups.

    :param clock: for cache expiry.
    :param threads: where blocking calls run (reactor's pool by default).
    """

    def __init__(
        self,
        reactor: IReactorTime,
        pool: ThreadPool | None = None,
        *,
        ttl: float = 60.0,
        negative_ttl: float = 5.0,
        max_entries: int = 10_000,
    ) -> None:
        self._reactor = reactor
        self._pool = pool
        self._ttl = ttl
        self._negative_ttl = negative_ttl
        self._max = max_entries
        self._cache: dict[_Key, tuple[float, tuple[str, ...]]] = {}
        self._waiting: dict[_Key, list[Deferred[tuple[str, ...]]]] = {}

    def cached(self, kind: str, key: str) -> tuple[str, ...] | None:
        """A fresh cached answer (empty tuple = failed lookup), else None."""
        hit = self._cache.get((kind, key))
        if hit is None:
            return None
        if hit[0] < self._reactor.seconds():
            del self._cache[(kind, key)]
            return None
        return hit[1]

    def __getitem__(self, key: _Key, /) -> tuple[str, ...]:
        """The rule engine's view of the cache (``Answers``): KeyError if unknown."""
        hit = self.cached(*key)
        if hit is None:
            raise KeyError(key)
        return hit

    def lookup(self, kind: str, key: str) -> Deferred[tuple[str, ...]]:
        """``forward`` or ``reverse`` lookup by name."""
        return self.forward(key) if kind == "forward" else self.reverse(key)

    def forward(self, name: str) -> Deferred[tuple[str, ...]]:
        """Addresses of ``name`` (IPv4 first, then IPv6); empty if none."""
        return self._lookup("forward", name, _forward)

    def reverse(self, ip: str) -> Deferred[tuple[str, ...]]:
        """Host names of ``ip`` (PTR); empty if none."""
        return self._lookup("reverse", ip, _reverse)

    def _lookup(
        self, kind: str, key: str, fn: Callable[[str], tuple[str, ...]]
    ) -> Deferred[tuple[str, ...]]:
        hit = self.cached(kind, key)
        if hit is not None:
            return succeed(hit)
        waiters = self._waiting.get((kind, key))
        d: Deferred[tuple[str, ...]] = Deferred()
        if waiters is not None:
            waiters.append(d)
            return d
        self._waiting[(kind, key)] = [d]
        pool = self._pool
        if pool is None:
            assert IReactorThreads.providedBy(self._reactor)
            pool = self._reactor.getThreadPool()
        lookup = deferToThreadPool(self._reactor, pool, fn, key)  # type: ignore[arg-type]
        lookup.addBoth(self._done, kind, key)
        return d

    def _done(self, result: tuple[str, ...] | Failure, kind: str, key: str) -> None:
        if isinstance(result, Failure):
            result = ()
        ttl = self._ttl if result else self._negative_ttl
        if len(self._cache) >= self._max:
            self._cache.clear()
        self._cache[(kind, key)] = (self._reactor.seconds() + ttl, result)
        for d in self._waiting.pop((kind, key), []):
            d.callback(result)


def _forward(name: str) -> tuple[str, ...]:
    try:
        infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return ()
    seen: dict[str, None] = {}
    for family in (socket.AF_INET, socket.AF_INET6):
        for info in infos:
            if info[0] == family:
                seen.setdefault(str(info[4][0]), None)
    return tuple(seen)


def _reverse(ip: str) -> tuple[str, ...]:
    try:
        name, aliases, _addrs = socket.gethostbyaddr(ip)
    except OSError:
        return ()
    return (name, *aliases)
