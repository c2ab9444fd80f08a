"""bench/run.py works end to end: builds the C load generator, runs dantex.

A smoke test of the measuring stick, not a measurement: tiny counts, one
round, the ``setups`` scenario against direct loopback and one dantex.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.integration


def _require_gcc() -> None:
    if shutil.which("gcc") is None and shutil.which("cc") is None:
        pytest.fail("bench/run.py needs gcc to build bench/loadgen.c")


@pytest.fixture
def loadgen(tmp_path: Path) -> Path:
    """bench/loadgen.c built by run.py's own build step."""
    _require_gcc()
    sys.path.insert(0, str(REPO / "bench"))
    try:
        import run  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(REPO / "bench"))
    binary, _targets = run.build(tmp_path / "build")
    assert isinstance(binary, Path)
    return binary


@pytest.fixture
def corrupting_echo() -> Iterator[int]:
    """An echo server on 127.0.0.1 that flips one bit of every third reply."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()
    count = [0]

    def serve(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            try:
                while data := conn.recv(4096):
                    count[0] += 1
                    if count[0] % 3 == 0:
                        data = bytes([data[0] ^ 1]) + data[1:]
                    conn.sendall(data)
            except OSError:
                pass

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        stop.set()
        thread.join(5)
        server.close()


def test_loadgen_counts_corrupted_echoes(loadgen: Path, corrupting_echo: int) -> None:
    """The integrity check works: changed bytes are counted, not passed."""
    port = str(corrupting_echo)
    args = ["--proxy", "0", "--target", port, "--concurrency", "2", "--duration", "0.3"]
    done = subprocess.run(
        [str(loadgen), "setups", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    result = json.loads(done.stdout)
    assert result["ok"] > 0 and result["corrupt"] > 0, result
    assert "echo differs from what was sent" in done.stderr


def test_bench_quick_setups_direct_and_dantex(tmp_path: Path) -> None:
    _require_gcc()
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
