"""The counters behind session limits and bandwidth buckets, in one ``mmap``.

One process (``--workers 1``) keeps the table in anonymous memory.  With
``--workers N`` the supervisor creates a file before starting the workers;
each worker maps it and takes an ``fcntl.lockf`` lock around every change, so
the limits hold across processes.  Each worker counts its sessions in a column
of its own: when a worker dies the supervisor zeroes that column
(:meth:`LimitTable.clear_worker`), which frees the slots it held.  Rate
windows (``session.throttle``) and bandwidth credit are shared values.

Layout: a 16-byte header (magic, workers, entries), then ``entries`` fixed-size
records found by open addressing on a 16-byte digest of the key.  A record
whose counts are all zero and whose window/bucket state has expired is dead
and may be taken over by another key; records are never emptied, so probe
chains stay intact.  Only sessions of rules with limits touch the table.
"""

from __future__ import annotations

import fcntl
import hashlib
import mmap
import os
import struct
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from attrs import frozen

from dantex.limits.bucket import burst_for, charge, refill, wait_for

__all__ = ["Check", "LimitTable", "digest_of", "map_file"]

_MAGIC = b"DXLIMIT1"
_HEADER = struct.Struct("<8sII")
#: digest, expires, tokens, stamp, window start, window count, padding
_FIXED = struct.Struct("<16sddddII")
_EMPTY = bytes(16)
#: records probed for a key before the table counts as full
_PROBES = 64
DEFAULT_ENTRIES = 8192


def digest_of(*parts: object) -> bytes:
    """The 16-byte table key for ``parts`` (rule identity, key value ...)."""
    text = "\x1f".join(str(p) for p in parts)
    data = text.encode("utf-8", "surrogateescape")
    return hashlib.blake2b(data, digest_size=16).digest()


@frozen
class Check:
    """One limit to check and count when a session is admitted.

    :ivar digest: the counter (see :func:`digest_of`).
    :ivar max: concurrent sessions allowed (None: no such limit).
    :ivar throttle: (new sessions, seconds) allowed (None: no such limit).
    """

    digest: bytes
    max: int | None = None
    throttle: tuple[int, int] | None = None


def map_file(path: str, size: int | None = None) -> tuple[int, mmap.mmap]:
    """``(fd, mapping)`` of a shared table file: a new zeroed one of ``size``
    bytes (readable by its owner only), or the existing one without."""
    if size is None:
        fd = os.open(path, os.O_RDWR)
    else:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        os.ftruncate(fd, size)
    return fd, mmap.mmap(fd, 0)


class LimitTable:
    """Session counters and bucket credit, shared by the worker processes.

    Use :meth:`anonymous`, :meth:`create` or :meth:`open`.
    """

    def __init__(
        self, mm: mmap.mmap, fd: int | None, worker: int, path: str | None = None
    ) -> None:
        magic, workers, entries = _HEADER.unpack_from(mm, 0)
        if magic != _MAGIC:
            raise ValueError("not a dantex limits table")
        self._mm = mm
        self._fd = fd
        self.path = path
        self.worker = worker
        self.workers: int = workers
        self.entries: int = entries
        self._counts = struct.Struct(f"<{workers}I")
        self._size = _FIXED.size + self._counts.size

    # -- construction -------------------------------------------------------

    @staticmethod
    def _length(workers: int, entries: int) -> int:
        return _HEADER.size + entries * (_FIXED.size + 4 * workers)

    @classmethod
    def anonymous(cls, entries: int = DEFAULT_ENTRIES) -> LimitTable:
        """A table for one process (no file, no locking)."""
        mm = mmap.mmap(-1, cls._length(1, entries))
        _HEADER.pack_into(mm, 0, _MAGIC, 1, entries)
        return cls(mm, None, 0)

    @classmethod
    def create(
        cls, path: str, workers: int, entries: int = DEFAULT_ENTRIES
    ) -> LimitTable:
        """A new shared table file for ``workers`` processes (the supervisor's)."""
        fd, mm = map_file(path, cls._length(workers, entries))
        _HEADER.pack_into(mm, 0, _MAGIC, workers, entries)
        return cls(mm, fd, -1, path)

    @classmethod
    def open(cls, path: str, worker: int) -> LimitTable:
        """Map the table the supervisor created, as worker ``worker``."""
        fd, mm = map_file(path)
        table = cls(mm, fd, worker, path)
        if not 0 <= worker < table.workers:
            raise ValueError(f"worker {worker} is not in a table for {table.workers}")
        return table

    def close(self) -> None:
        """Unmap (and close the file)."""
        self._mm.close()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    @contextmanager
    def _locked(self) -> Iterator[None]:
        fd = self._fd
        if fd is None:
            yield
            return
        fcntl.lockf(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.lockf(fd, fcntl.LOCK_UN)

    # -- records ----------------------------------------------------------------

    def _total(self, off: int) -> int:
        counts: tuple[int, ...] = self._counts.unpack_from(self._mm, off + _FIXED.size)
        return sum(counts)

    def _find(self, digest: bytes, now: float) -> int | None:
        """The record of ``digest`` (made if new); None when the table is full."""
        mm = self._mm
        size = self._size
        start = int.from_bytes(digest[:4], "little")
        reuse: int | None = None
        for i in range(_PROBES):
            off = _HEADER.size + ((start + i) % self.entries) * size
            key = mm[off : off + 16]
            if key == digest:
                return off
            if key == _EMPTY:
                break
            if reuse is None and self._dead(off, now):
                reuse = off
        else:
            off = -1
        if reuse is None:
            if off < 0:
                return None
            reuse = off
        mm[reuse : reuse + size] = bytes(size)
        # a new bucket is full: its last update is infinitely long ago
        _FIXED.pack_into(mm, reuse, digest, 0.0, 0.0, float("-inf"), 0.0, 0, 0)
        return reuse

    def _dead(self, off: int, now: float) -> bool:
        expires = struct.unpack_from("<d", self._mm, off + 16)[0]
        return now >= expires and self._total(off) == 0

    # -- sessions -------------------------------------------------------------------

    def admit(self, checks: Sequence[Check], now: float) -> str | None:
        """Count one new session against every check, or none if one refuses.

        :returns: None when admitted, else Dante's text for the refusal.
        """
        mm = self._mm
        with self._locked():
            found: list[tuple[int, Check]] = []
            for check in checks:
                off = self._find(check.digest, now)
                if off is None:
                    return "session limit table full"
                _d, _e, _t, _s, start, count, _p = _FIXED.unpack_from(mm, off)
                total = self._total(off)
                if check.max is not None and total >= check.max:
                    return f"session limit reached ({total}/{check.max} slot in use)"
                if check.throttle is not None:
                    limit, seconds = check.throttle
                    if now - start < seconds and count >= limit:
                        return (
                            f"session rate limit reached (already accepted {count} "
                            f"new clients during the last {int(now - start)}s.  "
                            f"Current client count: {total})"
                        )
                found.append((off, check))
            column = _FIXED.size + 4 * self.worker
            for off, check in found:
                slot = off + column
                held = struct.unpack_from("<I", mm, slot)[0]
                struct.pack_into("<I", mm, slot, held + 1)
                if check.throttle is not None:
                    _limit, seconds = check.throttle
                    fields = list(_FIXED.unpack_from(mm, off))
                    if now - fields[4] >= seconds:
                        fields[4], fields[5] = now, 0
                    fields[5] += 1
                    fields[1] = max(fields[1], fields[4] + seconds)
                    _FIXED.pack_into(mm, off, *fields)
        return None

    def release(self, digests: Sequence[bytes], now: float) -> None:
        """Give back one slot of each counter in ``digests`` (this worker's)."""
        mm = self._mm
        column = _FIXED.size + 4 * self.worker
        with self._locked():
            for digest in digests:
                off = self._find(digest, now)
                if off is None:
                    continue
                slot = off + column
                held = struct.unpack_from("<I", mm, slot)[0]
                if held:
                    struct.pack_into("<I", mm, slot, held - 1)

    def in_use(self, digest: bytes, now: float) -> int:
        """Sessions counted on ``digest`` by all workers."""
        with self._locked():
            off = self._find(digest, now)
            return 0 if off is None else self._total(off)

    def clear_worker(self, worker: int) -> None:
        """Free every slot held by ``worker`` (it died or was stopped)."""
        mm = self._mm
        column = _FIXED.size + 4 * worker
        with self._locked():
            for i in range(self.entries):
                off = _HEADER.size + i * self._size
                if mm[off : off + 16] != _EMPTY:
                    struct.pack_into("<I", mm, off + column, 0)

    # -- bandwidth -------------------------------------------------------------------

    def take(self, digest: bytes, rate: int, n: int, now: float) -> float:
        """Charge ``n`` bytes to the bucket ``digest``; seconds to pause."""
        mm = self._mm
        with self._locked():
            off = self._find(digest, now)
            if off is None:
                return 0.0
            fields = list(_FIXED.unpack_from(mm, off))
            tokens = charge(fields[2], fields[3], now, rate, n)
            fields[1] = now + (burst_for(rate) - tokens) / rate
            fields[2], fields[3] = tokens, now
            _FIXED.pack_into(mm, off, *fields)
        return wait_for(tokens, rate)

    def wait(self, digest: bytes, rate: int, now: float) -> float:
        """Seconds until the bucket ``digest`` is out of debt."""
        with self._locked():
            off = self._find(digest, now)
            if off is None:
                return 0.0
            _d, _e, tokens, stamp, _s, _c, _p = _FIXED.unpack_from(self._mm, off)
        return wait_for(refill(tokens, stamp, now, rate), rate)
