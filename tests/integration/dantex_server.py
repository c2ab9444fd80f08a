"""Start the real ``twistd -n dante -c <conf>`` as a subprocess for a test.

The server listens on port 0 and reports the port it got in its log
(``listening on 127.0.0.1.PORT``), which the fixture reads back.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from attrs import frozen

__all__ = ["REPO", "DantexServer", "run_twistd", "start_dantex"]

REPO = Path(__file__).resolve().parents[2]
_LISTENING = re.compile(r"listening on (\S+)\.(\d+)\b", re.M)


def twistd_command() -> list[str]:
    """The twistd entry point of this Python, running dantex from the checkout."""
    twistd = shutil.which(
        "twistd", path=os.path.dirname(sys.executable)
    ) or shutil.which("twistd")
    if twistd is None:
        raise RuntimeError("twistd is not installed (pip install twisted)")
    return [sys.executable, twistd]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_twistd(
    args: Sequence[str], cwd: Path, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run ``twistd <args>`` to completion (for --check, --help, bad configs)."""
    return subprocess.run(
        [*twistd_command(), *args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@frozen
class DantexServer:
    """A running dantex: where it listens and where its log is."""

    pid: int
    host: str
    port: int
    ports: tuple[tuple[str, int], ...]
    log_path: Path
    dir: Path

    def log_text(self) -> str:
        """Everything the server logged so far (Dante lines and twistd's)."""
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, pattern: str, timeout: float = 5.0) -> re.Match[str]:
        """Wait (bounded) until ``pattern`` appears in the log; return the match."""
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern, re.M)
        while True:
            m = rx.search(self.log_text())
            if m:
                return m
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{pattern!r} not logged within {timeout}s:\n"
                    + self.log_text()[-3000:]
                )
            time.sleep(0.05)

    def send_signal(self, signum: int) -> None:
        """Signal the server process."""
        os.kill(self.pid, signum)


@contextmanager
def start_dantex(
    config: str | None,
    tmp: Path,
    *,
    extra_args: Sequence[str] = (),
    prefix: Sequence[str] = (),
    expect_ports: int = 1,
    timeout: float = 15.0,
    twistd_args: Sequence[str] = (),
) -> Iterator[DantexServer]:
    """Write ``config`` (with ``logoutput`` added if absent) and serve it.

    ``internal:`` lines should use ``port = 0``; the real ports are read from
    the log.  ``config=None`` serves the embedded default (its log is on
    stderr).  ``prefix`` wraps the command (e.g. ``ip netns exec NS``);
    ``twistd_args`` go before ``dante`` (``--uid``).  The
    process is stopped by PID (SIGTERM, then SIGKILL).
    """
    tmp.mkdir(parents=True, exist_ok=True)
    args = ["-n", "--pidfile=", *twistd_args, "dante"]
    if config is None:
        log_path = tmp / "twistd.out"
    else:
        log_path = tmp / "dantex.log"
        if "logoutput:" not in config:
            config = f"logoutput: {log_path}\n" + config
        conf = tmp / "sockd.conf"
        conf.write_text(config)
        args += ["-c", str(conf)]
    out = open(tmp / "twistd.out", "wb")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(
        [*prefix, *twistd_command(), *args, *extra_args],
        cwd=tmp,
        env=_env(),
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + timeout
        ports: list[tuple[str, int]] = []
        while True:
            text = log_path.read_text(errors="replace") if log_path.exists() else ""
            ports = [(h, int(p)) for h, p in _LISTENING.findall(text)]
            if len(ports) >= expect_ports and "running" in text:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                out_text = (tmp / "twistd.out").read_text(errors="replace")
                raise RuntimeError(
                    f"dantex did not start (exit {proc.poll()}):\n"
                    f"{out_text[-3000:]}\n{text[-2000:]}"
                )
            time.sleep(0.05)
        host, port = ports[0]
        yield DantexServer(proc.pid, host, port, tuple(ports), log_path, tmp)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        out.close()
