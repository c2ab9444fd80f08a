"""The supervisor's side of limits shared by ``--workers N``.

The table file lives in a private temporary directory made before the first
worker starts; workers map it (``--limits PATH``).  When a worker ends, its
column of session counts is zeroed, so a crashed worker's slots are free
again before its replacement starts.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from dantex.limits._table import LimitTable

__all__ = ["SharedLimits"]


class SharedLimits:
    """The table file shared by ``workers`` processes, owned by the supervisor."""

    def __init__(self, workers: int) -> None:
        self._dir = tempfile.mkdtemp(prefix="dantex-limits-")
        self.path = os.path.join(self._dir, "limits")
        self.table = LimitTable.create(self.path, workers)

    def worker_gone(self, index: int) -> None:
        """Free the slots worker ``index`` held."""
        self.table.clear_worker(index)

    def close(self) -> None:
        """Unmap and remove the file (all workers have ended)."""
        self.table.close()
        shutil.rmtree(self._dir, ignore_errors=True)
