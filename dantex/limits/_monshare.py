"""Monitor counters shared by ``--workers N`` processes, in one ``mmap``.

A monitor (Dante §1.7) judges every session it matches; with several worker
processes each sees only its own.  Each worker publishes, per monitor, what
its sessions did so far -- cumulative bytes of the four counters, sessions
alive, sessions ended and by whom -- in its own row of this file, and the
alarms run in one worker (index 0) over the sum of the rows (danted keeps
such counters in shared memory too).

Layout: a header (magic, workers, monitors per worker), then for each worker
``SLOTS`` records of ``<config digest, 4 byte counters, alive, ended,
closed by client, closed by target>``, all little-endian 64-bit.  Only the
owning worker writes a row, so no lock is taken; a reader may see a record
between two of its fields' updates, which moves a count from one alarm
period to the next at worst.  A record counts only when its digest is the
reader's: after a reload, rows of workers still on the old monitors are
left out until they reload too.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import struct
from collections.abc import Sequence

from dantex.config.model import Monitor
from dantex.limits._table import map_file

__all__ = ["SLOTS", "ZERO", "MonitorShare", "Snapshot", "digest_of"]

_MAGIC = 0x4D4F4E31  # "MON1"
_HEADER = struct.Struct("<III")
_RECORD = struct.Struct("<Q4QQQQQ")
#: monitors per worker row; more are watched per worker only
SLOTS = 64

#: (bytes read from client, written to client, read from target, written to
#: target, sessions alive, sessions ended, closed by client, closed by target)
Snapshot = tuple[int, int, int, int, int, int, int, int]
ZERO: Snapshot = (0, 0, 0, 0, 0, 0, 0, 0)


def digest_of(monitors: Sequence[Monitor]) -> int:
    """A number that differs between two different sets of monitors."""
    text = repr(tuple(monitors)).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little")


class MonitorShare:
    """The table file; the supervisor :meth:`create`\\ s it, workers :meth:`open` it."""

    def __init__(self, mm: mmap.mmap, fd: int, worker: int) -> None:
        magic, workers, slots = _HEADER.unpack_from(mm, 0)
        if magic != _MAGIC:
            raise ValueError("not a dantex monitor table")
        self._mm = mm
        self._fd: int | None = fd
        self.worker = worker
        self.workers: int = workers
        self.slots: int = slots

    @staticmethod
    def _length(workers: int) -> int:
        return _HEADER.size + workers * SLOTS * _RECORD.size

    @classmethod
    def create(cls, path: str, workers: int) -> MonitorShare:
        """A new, zeroed table for ``workers`` processes."""
        fd, mm = map_file(path, cls._length(workers))
        _HEADER.pack_into(mm, 0, _MAGIC, workers, SLOTS)
        return cls(mm, fd, -1)

    @classmethod
    def open(cls, path: str, worker: int) -> MonitorShare:
        """Map the table as worker ``worker`` (its row is the one it writes)."""
        fd, mm = map_file(path)
        share = cls(mm, fd, worker)
        if not 0 <= worker < share.workers:
            raise ValueError(f"worker {worker} is not in a table for {share.workers}")
        return share

    def _offset(self, worker: int, slot: int) -> int:
        return _HEADER.size + (worker * self.slots + slot) * _RECORD.size

    def publish(self, digest: int, slot: int, counts: Snapshot) -> None:
        """This worker's counters for monitor ``slot`` of the set ``digest``."""
        _RECORD.pack_into(self._mm, self._offset(self.worker, slot), digest, *counts)

    def rows(self, digest: int, slot: int) -> list[Snapshot]:
        """The other workers' counters for monitor ``slot``, in worker order;
        zeros for a row of other monitors (not reloaded yet, or not started)."""
        out: list[Snapshot] = []
        for worker in range(self.workers):
            if worker == self.worker:
                continue
            record = _RECORD.unpack_from(self._mm, self._offset(worker, slot))
            if record[0] == digest:
                out.append(
                    (
                        record[1],
                        record[2],
                        record[3],
                        record[4],
                        record[5],
                        record[6],
                        record[7],
                        record[8],
                    )
                )
            else:
                out.append(ZERO)
        return out

    def clear_worker(self, worker: int) -> None:
        """Zero worker ``worker``'s row (it ended; a new one starts afresh)."""
        start = self._offset(worker, 0)
        self._mm[start : start + self.slots * _RECORD.size] = bytes(
            self.slots * _RECORD.size
        )

    def close(self) -> None:
        """Unmap and close the file."""
        self._mm.close()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
