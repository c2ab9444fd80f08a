"""A password file: htpasswd-style ``user:hash[:group,group...]`` lines.

Hashes (chosen by their prefix; anything else is refused at load with a
warning naming the file and line, never the hash):

* ``$2a$`` / ``$2b$`` / ``$2y$`` -- bcrypt (``htpasswd -B``), checked with
  pyca ``bcrypt`` (it reads at most 72 bytes of a password, as bcrypt does);
* ``$6$`` / ``$5$`` -- SHA-512-crypt / SHA-256-crypt (``openssl passwd -6``,
  ``mkpasswd -m sha-512``), checked with libpass (the maintained passlib);
* ``{PLAIN}secret`` -- plain text, only when marked so explicitly.

MD5 schemes (``$apr1$``, ``$1$``, htpasswd's default) and DES crypt are
refused as too weak.  Blank lines and ``#`` comments are ignored.

The file is re-read (in the thread pool) when its size, mtime or inode
changes; the check is one ``stat()`` at most every ``check_interval``
seconds.  Successful verifications are cached (:class:`VerifiedCache`): a
hit costs one HMAC and no hashing; an entry is only used while the user's
stored hash is unchanged, so editing the file takes effect at once.

Not implemented: writing the file (use ``htpasswd -B`` or ``openssl passwd -6``).
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable, Mapping
from typing import Any, cast

import bcrypt
from attrs import field, frozen

# Imported here, on the thread that loads the configuration: passlib.hash
# resolves its handlers lazily on first attribute access, and two pool
# threads doing that first access at once can fail with ImportError.
from passlib.hash import sha256_crypt, sha512_crypt
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from dantex.auth._base import AvatarId, Blocking, VerifiedCache, inline, printable

__all__ = [
    "PasswordEntry",
    "PasswordFile",
    "PasswordFileChecker",
    "parse_password_file",
    "verify_hash",
]

_BCRYPT = ("$2a$", "$2b$", "$2y$")
_SHA_CRYPT = ("$6$", "$5$")
_PLAIN = "{PLAIN}"
_WEAK = {"$apr1$": "MD5 (apr1)", "$1$": "MD5-crypt", "{SHA}": "unsalted SHA-1"}


@frozen
class PasswordEntry:
    """One user's line.  The hash never appears in ``repr()``."""

    user: str
    hash: str = field(repr=False)
    groups: frozenset[str]
    line: int


def _scheme(hashed: str) -> str | None:
    """The scheme name, or None if unsupported."""
    if hashed.startswith(_BCRYPT):
        return "bcrypt"
    if hashed.startswith(_SHA_CRYPT):
        return "sha-crypt"
    if hashed.startswith(_PLAIN):
        return "plain"
    return None


def parse_password_file(
    text: str, path: str, warn: Callable[[str], None]
) -> dict[str, PasswordEntry]:
    """The entries of a password file's text; bad lines are skipped with a warning.

    Warnings read ``path:line: message`` and never quote a hash.
    """
    entries: dict[str, PasswordEntry] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        user, colon, rest = line.partition(":")
        if not colon or not user or not rest:
            warn(f"{path}:{number}: not 'user:hash[:groups]'; line ignored")
            continue
        if _scheme(rest) == "plain":
            hashed, groups_text = rest, ""
            if ":" in rest[len(_PLAIN) :]:
                # {PLAIN} passwords may not contain ':' when groups follow.
                hashed, _, groups_text = rest.rpartition(":")
        else:
            hashed, _, groups_text = rest.partition(":")
        scheme = _scheme(hashed)
        if scheme is None:
            weak = next((n for p, n in _WEAK.items() if hashed.startswith(p)), None)
            what = f"{weak} hashes are too weak" if weak else "unknown hash format"
            warn(
                f"{path}:{number}: user {printable(user)!r}: {what}; line ignored "
                "(use bcrypt: htpasswd -B, or SHA-512-crypt: openssl passwd -6)"
            )
            continue
        if user in entries:
            warn(f"{path}:{number}: user {printable(user)!r} repeated; first kept")
            continue
        groups = frozenset(g.strip() for g in groups_text.split(",") if g.strip())
        entries[user] = PasswordEntry(user, hashed, groups, number)
    return entries


def verify_hash(hashed: str, password: bytes) -> bool:
    """Whether ``password`` matches ``hashed`` (blocking for real hashes).

    Every comparison is constant-time (bcrypt, libpass, ``hmac.compare_digest``).
    """
    scheme = _scheme(hashed)
    if scheme == "bcrypt":
        try:
            return bool(bcrypt.checkpw(password[:72], hashed.encode("ascii")))
        except ValueError:
            return False
    if scheme == "sha-crypt":
        handler = sha512_crypt if hashed.startswith("$6$") else sha256_crypt
        try:
            return bool(handler.verify(password, hashed))
        except ValueError:
            return False
    if scheme == "plain":
        return hmac.compare_digest(hashed[len(_PLAIN) :].encode("utf-8"), password)
    return False


class PasswordFile:
    """A password file, re-read when it changes.

    :param run: where the file is read (the thread pool in the server).
    :param warn: receives load warnings (bad lines, unreadable file).
    :param check_interval: seconds between ``stat()`` calls.
    """

    log = Logger()

    def __init__(
        self,
        path: str,
        clock: IReactorTime,
        run: Blocking = inline,
        *,
        warn: Callable[[str], None] | None = None,
        check_interval: float = 1.0,
    ) -> None:
        self.path = path
        self._clock = clock
        self._run = run
        self._warn = warn or (lambda m: self.log.warn("{message}", message=m))
        self._interval = check_interval
        self._entries: Mapping[str, PasswordEntry] = {}
        self._stamp: tuple[int, int, int] | None = None
        self._checked = float("-inf")
        self._loading: Deferred[Mapping[str, PasswordEntry]] | None = None

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _read(self) -> str | None:
        try:
            with open(self.path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError as e:
            self._warn(f"{self.path}: cannot read password file: {e.strerror}")
            return None

    def entries(self) -> Deferred[Mapping[str, PasswordEntry]]:
        """The current entries, re-reading the file first if it changed."""
        now = self._clock.seconds()
        if self._loading is not None:
            return _chain(self._loading)
        if now - self._checked < self._interval:
            return succeed(self._entries)
        self._checked = now
        stamp = self._stat()
        if stamp == self._stamp and stamp is not None:
            return succeed(self._entries)
        if stamp is None:
            if self._stamp is not None or not self._entries:
                self._warn(f"{self.path}: password file missing; nobody can log in")
            self._stamp, self._entries = None, {}
            return succeed(self._entries)
        self._stamp = stamp

        def parsed(text: str | None) -> Mapping[str, PasswordEntry]:
            self._loading = None
            if text is not None:
                self._entries = parse_password_file(text, self.path, self._warn)
            return self._entries

        def failed(f: Any) -> Mapping[str, PasswordEntry]:
            self._loading = None
            self._stamp = None
            self._warn(f"{self.path}: cannot load password file")
            return self._entries

        loading = self._run(self._read).addCallbacks(parsed, failed)
        if not loading.called:  # an inline runner has already finished
            self._loading = loading
        return _chain(loading)

    def load_now(self) -> Mapping[str, PasswordEntry]:
        """Read the file synchronously (start-up checks, tools)."""
        self._stamp = self._stat()
        self._checked = self._clock.seconds()
        text = self._read()
        if text is not None:
            self._entries = parse_password_file(text, self.path, self._warn)
        return self._entries


def _chain(
    d: Deferred[Mapping[str, PasswordEntry]],
) -> Deferred[Mapping[str, PasswordEntry]]:
    out: Deferred[Mapping[str, PasswordEntry]] = Deferred()

    def give(value: Mapping[str, PasswordEntry]) -> Mapping[str, PasswordEntry]:
        out.callback(value)
        return value

    d.addCallback(give)
    return out


@implementer(ICredentialsChecker)
class PasswordFileChecker:
    """``ICredentialsChecker`` for a :class:`PasswordFile` (``IUsernamePassword``).

    Usable on its own with a ``Portal``.  The avatar id is the user name
    (text).  ``groups_of`` is a group source for :class:`~dantex.auth.realm.SocksRealm`.

    :param cache_ttl: seconds a successful verification is reused (0: never).
    """

    credentialInterfaces = (IUsernamePassword,)

    def __init__(
        self,
        passwords: PasswordFile,
        clock: IReactorTime,
        run: Blocking = inline,
        *,
        cache_ttl: float = 3600.0,
    ) -> None:
        self.passwords = passwords
        self._run = run
        self.cache = VerifiedCache(clock, cache_ttl)
        #: slow verifications run (cache misses), for tests and benchmarks
        self.hashes_run = 0

    def requestAvatarId(self, credentials: IUsernamePassword) -> Deferred[AvatarId]:
        return cast("Deferred[AvatarId]", self._request(credentials))

    def _request(self, credentials: IUsernamePassword) -> Deferred[bytes]:
        try:
            user = bytes(credentials.username).decode("utf-8")
        except UnicodeDecodeError:
            return fail(UnauthorizedLogin("user name is not UTF-8"))
        password = bytes(credentials.password)
        return self.passwords.entries().addCallback(self._check, user, password)

    def _check(
        self, entries: Mapping[str, PasswordEntry], user: str, password: bytes
    ) -> Deferred[bytes] | bytes:
        entry = entries.get(user)
        if entry is None:
            if not entries:
                raise UnauthorizedLogin("no such user")
            # Hash against someone else's entry and discard the result, so
            # "no such user" takes as long as "wrong password".
            decoy = next(iter(entries.values())).hash
            self.hashes_run += 1
            return self._run(verify_hash, decoy, password).addCallback(
                lambda _: _refuse("no such user")
            )
        token = self.cache.get(user, password)
        if isinstance(token, str) and hmac.compare_digest(token, entry.hash):
            return user.encode("utf-8")
        self.hashes_run += 1

        def verified(ok: bool) -> bytes:
            if not ok:
                raise UnauthorizedLogin("wrong password")
            self.cache.put(user, password, entry.hash)
            return user.encode("utf-8")

        return self._run(verify_hash, entry.hash, password).addCallback(verified)

    def groups_of(self, name: str) -> Deferred[frozenset[str]]:
        """Groups from the file's third field (empty when none)."""

        def found(entries: Mapping[str, PasswordEntry]) -> frozenset[str]:
            entry = entries.get(name)
            return entry.groups if entry is not None else frozenset()

        return self.passwords.entries().addCallback(found)


def _refuse(why: str) -> bytes:
    raise UnauthorizedLogin(why)
