"""The supervisor's side of limits and monitors shared by ``--workers N``.

The table files live in a private temporary directory made before the first
worker starts; workers map them (``--limits PATH``, ``--monitors PATH``).
When a worker ends, its column of session counts and its row of monitor
counters are zeroed, so a crashed worker's slots are free again before its
replacement starts.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from dantex.limits._monshare import MonitorShare
from dantex.limits._table import LimitTable

__all__ = ["SharedLimits"]


class SharedLimits:
    """The table files shared by ``workers`` processes, owned by the supervisor."""

    def __init__(self, workers: int) -> None:
        self._dir = tempfile.mkdtemp(prefix="dantex-limits-")
        self.path = os.path.join(self._dir, "limits")
        self.table = LimitTable.create(self.path, workers)
        self.monitors_path = os.path.join(self._dir, "monitors")
        self.monitors = MonitorShare.create(self.monitors_path, workers)

    def worker_gone(self, index: int) -> None:
        """Free the slots worker ``index`` held, forget its monitor counters."""
        self.table.clear_worker(index)
        self.monitors.clear_worker(index)

    def close(self) -> None:
        """Unmap and remove the files (all workers have ended)."""
        self.table.close()
        self.monitors.close()
        shutil.rmtree(self._dir, ignore_errors=True)
