"""The monitor table shared by --workers N: rows, digests, a worker's end."""

from __future__ import annotations

from pathlib import Path

from dantex.limits._monshare import ZERO, MonitorShare


def test_a_worker_reads_the_others_rows_and_a_gone_worker_counts_nothing(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "monitors")
    supervisor = MonitorShare.create(path, 3)
    w0, w1, w2 = (MonitorShare.open(path, i) for i in range(3))
    w1.publish(7, 0, (1, 2, 3, 4, 1, 5, 2, 3))
    w2.publish(7, 0, (10, 20, 30, 40, 2, 1, 0, 1))
    w2.publish(8, 1, (100, 0, 0, 0, 0, 0, 0, 0))  # another monitor set
    w0.publish(7, 0, (999, 999, 999, 999, 9, 9, 9, 9))  # its own: not read
    assert w0.rows(7, 0) == [(1, 2, 3, 4, 1, 5, 2, 3), (10, 20, 30, 40, 2, 1, 0, 1)]
    assert w0.rows(7, 1) == [ZERO, ZERO]  # digest 8 is not the reader's
    assert w1.rows(7, 0)[0] == (999, 999, 999, 999, 9, 9, 9, 9)
    supervisor.clear_worker(2)  # worker 2 ended
    assert w0.rows(7, 0) == [(1, 2, 3, 4, 1, 5, 2, 3), ZERO]
    for share in (w0, w1, w2, supervisor):
        share.close()
