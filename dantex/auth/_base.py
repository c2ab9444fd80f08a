"""What every checker shares: credentials, the avatar, the blocking runner, the cache.

Credentials: :class:`SocksCredentials` is what a SOCKS session has after
RFC 1929 -- a user name and password *and* the two ends of the connection
(PAM wants the client address as ``PAM_RHOST``, ident queries the client's
host).  Address-only methods (``rfc931``, ``pam.address``) get a
:class:`ConnectionCredentials`.

Blocking work (hashes, PAM, LDAP, NSS group lookups) goes through a
:data:`Blocking` runner: :func:`in_pool` runs it in a ``ThreadPool`` (the
server), :func:`inline` runs it at once (unit tests, tools).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from attrs import field, frozen
from twisted.cred.credentials import IUsernamePassword
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorFromThreads, IReactorTime
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool
from zope.interface import Attribute, Interface, implementer

__all__ = [
    "AvatarId",
    "Blocking",
    "ConnectionCredentials",
    "IConnectionCredentials",
    "ISocksUser",
    "SocksCredentials",
    "SocksUser",
    "VerifiedCache",
    "in_pool",
    "inline",
    "printable",
]

T = TypeVar("T")

#: What ``ICredentialsChecker.requestAvatarId`` gives, as Twisted types it.
AvatarId = bytes | tuple[()]


class IConnectionCredentials(Interface):
    """The two ends of a client's TCP connection (for ident and PAM_RHOST)."""

    client_host = Attribute("the client's IP address, text")
    client_port = Attribute("the client's port")
    server_host = Attribute("our address the client connected to, text")
    server_port = Attribute("our port the client connected to")


class ISocksUser(Interface):
    """The avatar: who a SOCKS client is, for ``user:``/``group:`` rules and logs."""

    name = Attribute("the user name, text")
    groups = Attribute("frozenset of group names (system, file or LDAP groups)")


@implementer(ISocksUser)
@frozen
class SocksUser:
    """An authenticated SOCKS user and the groups it belongs to."""

    name: str
    groups: frozenset[str] = frozenset()


@implementer(IConnectionCredentials)
@frozen
class ConnectionCredentials:
    """Address-only credentials: ``rfc931`` and ``pam.address``."""

    client_host: str
    client_port: int
    server_host: str
    server_port: int


@implementer(IUsernamePassword, IConnectionCredentials)
@frozen
class SocksCredentials:
    """RFC 1929 user name and password plus the connection they came on.

    The password never appears in ``repr()``.
    """

    username: bytes
    password: bytes = field(repr=False)
    client_host: str = ""
    client_port: int = 0
    server_host: str = ""
    server_port: int = 0

    def checkPassword(self, password: bytes) -> bool:
        """Constant-time comparison with ``password`` (IUsernamePassword)."""
        return hmac.compare_digest(self.password, password)


class Blocking(Protocol):
    """Runs a blocking callable somewhere it may block; its result as a Deferred."""

    def __call__(self, fn: Callable[..., T], /, *args: Any) -> Deferred[T]: ...


def in_pool(reactor: IReactorFromThreads, pool: ThreadPool) -> Blocking:
    """A runner using ``pool`` (``deferToThreadPool``): never blocks the reactor."""

    def run(fn: Callable[..., T], /, *args: Any) -> Deferred[T]:
        return deferToThreadPool(reactor, pool, fn, *args)

    return run


def inline(fn: Callable[..., T], /, *args: Any) -> Deferred[T]:
    """A runner calling ``fn`` at once (tests, command-line tools)."""
    return maybeDeferred(fn, *args)


def printable(name: bytes | str, limit: int = 64) -> str:
    """A user name safe for a log line: no control characters, bounded length."""
    text = name.decode("utf-8", "replace") if isinstance(name, bytes) else name
    out = []
    for ch in text[:limit]:
        if ch.isprintable() and ch not in '"\\':
            out.append(ch)
        else:
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")
    return "".join(out) + ("..." if len(text) > limit else "")


class VerifiedCache:
    """Successful verifications, keyed by user and a keyed hash of the password.

    The password itself is never stored: the key is an HMAC-SHA256 of it
    under a random per-process secret.  Each entry holds a *token* (what the
    verification depended on, e.g. the stored hash) that the caller compares
    on a hit, so a changed password file invalidates entries at once.

    :param ttl: seconds an entry lives (0 disables the cache).
    :param max_entries: oldest entries are dropped beyond this.
    """

    def __init__(
        self, clock: IReactorTime, ttl: float, max_entries: int = 10_000
    ) -> None:
        self._clock = clock
        self.ttl = ttl
        self._max = max_entries
        self._secret = os.urandom(32)
        self._entries: OrderedDict[tuple[str, bytes], tuple[float, object]] = (
            OrderedDict()
        )

    def _key(self, user: str, password: bytes) -> tuple[str, bytes]:
        return user, hmac.new(self._secret, password, hashlib.sha256).digest()

    def get(self, user: str, password: bytes) -> object | None:
        """The token stored for this user and password, if fresh."""
        if self.ttl <= 0:
            return None
        key = self._key(user, password)
        entry = self._entries.get(key)
        if entry is None:
            return None
        expiry, token = entry
        if expiry <= self._clock.seconds():
            del self._entries[key]
            return None
        return token

    def put(self, user: str, password: bytes, token: object) -> None:
        """Remember a successful verification."""
        if self.ttl <= 0:
            return
        key = self._key(user, password)
        self._entries[key] = (self._clock.seconds() + self.ttl, token)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        """Forget everything."""
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
