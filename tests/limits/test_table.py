"""The limits table: slots, rate windows, per-worker columns, key reuse."""

from __future__ import annotations

from pathlib import Path

import pytest

from dantex.limits._table import Check, LimitTable, digest_of

A = digest_of("socks", 1, "s")
B = digest_of("socks", 1, "k", "127.0.0.1")


def test_max_admits_up_to_the_limit_and_release_frees_a_slot() -> None:
    """session.max: 2 -> two admitted, the third refused with Dante's text."""
    table = LimitTable.anonymous(64)
    check = [Check(A, max=2)]
    assert table.admit(check, 0.0) is None
    assert table.admit(check, 0.0) is None
    assert table.admit(check, 0.0) == "session limit reached (2/2 slot in use)"
    table.release([A], 1.0)
    assert table.in_use(A, 1.0) == 1
    assert table.admit(check, 1.0) is None


def test_release_never_goes_below_zero() -> None:
    """A double release leaves the count at zero."""
    table = LimitTable.anonymous(64)
    table.release([A], 0.0)
    assert table.in_use(A, 0.0) == 0


def test_throttle_counts_new_sessions_per_window() -> None:
    """session.throttle: 2/10 -> a third new session within 10 s is refused;
    the window restarts after 10 s."""
    table = LimitTable.anonymous(64)
    check = [Check(A, throttle=(2, 10))]
    assert table.admit(check, 100.0) is None
    table.release([A], 100.5)
    assert table.admit(check, 101.0) is None
    assert table.admit(check, 103.0) == (
        "session rate limit reached (already accepted 2 new clients during "
        "the last 3s.  Current client count: 1)"
    )
    assert table.admit(check, 110.0) is None


def test_all_checks_or_none() -> None:
    """A refusal by the per-key check counts nothing on the rule-wide one."""
    table = LimitTable.anonymous(64)
    assert table.admit([Check(B, max=1)], 0.0) is None
    refused = table.admit([Check(A, max=5), Check(B, max=1)], 0.0)
    assert refused == "session limit reached (1/1 slot in use)"
    assert table.in_use(A, 0.0) == 0


def test_dead_records_are_reused_by_other_keys() -> None:
    """Keys that come and go do not fill a small table."""
    table = LimitTable.anonymous(8)
    for n in range(100):
        key = digest_of("k", n)
        assert table.admit([Check(key, max=1)], float(n)) is None
        table.release([key], float(n))


def test_full_table_refuses() -> None:
    """With every record live, a new key is refused rather than unlimited."""
    table = LimitTable.anonymous(4)
    for n in range(4):
        assert table.admit([Check(digest_of("k", n), max=9)], 0.0) is None
    assert table.admit([Check(digest_of("k", 99), max=9)], 0.0) == (
        "session limit table full"
    )


def test_workers_share_counts_and_a_dead_worker_is_cleared(tmp_path: Path) -> None:
    """Two workers on one file see one limit; clearing a worker's column frees
    its slots only."""
    path = str(tmp_path / "limits")
    supervisor = LimitTable.create(path, 2, entries=64)
    w0, w1 = LimitTable.open(path, 0), LimitTable.open(path, 1)
    check = [Check(A, max=2)]
    assert w0.admit(check, 0.0) is None
    assert w1.admit(check, 0.0) is None
    assert w0.admit(check, 0.0) is not None
    supervisor.clear_worker(1)
    assert w0.in_use(A, 0.0) == 1
    assert w0.admit(check, 0.0) is None
    for t in (supervisor, w0, w1):
        t.close()


def test_open_checks_the_file_and_the_worker_index(tmp_path: Path) -> None:
    """A worker index outside the table, or a foreign file, is refused."""
    path = tmp_path / "limits"
    LimitTable.create(str(path), 2, entries=8).close()
    with pytest.raises(ValueError):
        LimitTable.open(str(path), 2)
    other = tmp_path / "other"
    other.write_bytes(bytes(64))
    with pytest.raises(ValueError):
        LimitTable.open(str(other), 0)


def test_buckets_in_the_table_share_credit() -> None:
    """Two meters on one digest draw on one credit (a rule's bandwidth)."""
    table = LimitTable.anonymous(64)
    bw = digest_of("socks", 1, "b")
    assert table.take(bw, 1000, 100, 0.0) == 0
    assert table.take(bw, 1000, 500, 0.0) == pytest.approx(0.5)
    assert table.wait(bw, 1000, 0.25) == pytest.approx(0.25)
    assert table.take(bw, 1000, 250, 0.5) == pytest.approx(0.25)


def test_supervisor_file_lives_in_a_private_directory() -> None:
    """SharedLimits makes a 0700 directory with the table; close removes it."""
    import os
    import stat

    from dantex.limits._shared import SharedLimits

    shared = SharedLimits(2)
    directory = os.path.dirname(shared.path)
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    worker = LimitTable.open(shared.path, 1)
    assert worker.admit([Check(A, max=1)], 0.0) is None
    shared.worker_gone(1)
    assert worker.in_use(A, 0.0) == 0
    worker.close()
    shared.close()
    assert not os.path.exists(directory)
