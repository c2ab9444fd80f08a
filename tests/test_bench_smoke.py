"""bench/run.py works end to end: builds the C load generator, runs dantex.

A smoke test of the measuring stick, not a measurement: tiny counts, one
round, the ``setups`` scenario against direct loopback and one dantex.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.integration


def test_bench_quick_setups_direct_and_dantex(tmp_path: Path) -> None:
    if shutil.which("gcc") is None and shutil.which("cc") is None:
        pytest.fail("bench/run.py needs gcc to build bench/loadgen.c")
    raw = tmp_path / "results.json"
    table = tmp_path / "table.md"
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "run.py"),
            "--quick",
            "--scenarios",
            "setups",
            "--systems",
            "direct,dantex",
            "--dantex-workers",
            "1",
            "--seconds",
            "0.3",
            "--concurrency",
            "8",
            "--build-dir",
            str(tmp_path / "build"),
            "--json",
            str(raw),
            "--markdown",
            str(table),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads(raw.read_text())["setups"]
    assert set(results) == {"direct", "dantex-w1"}
    for name, runs in results.items():
        (run,) = runs
        assert run["rate"] > 0, (name, run)
        assert run["ok"] > 0 and run["corrupt"] == 0, (name, run)
    text = table.read_text()
    lines = [ln for ln in text.splitlines() if ln.startswith("| dantex-w1 ")]
    assert len(lines) == 1 and lines[0].endswith("| OK |"), text
