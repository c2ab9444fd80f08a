"""Run one real daemon for an integration test: start, wait until ready, stop.

A :class:`Daemon` owns its process through :class:`subprocess.Popen`: it is
stopped by its own PID only (SIGTERM, then SIGKILL), never by name, so
concurrent test runs on the same machine cannot hurt each other. Output goes
to a file in the daemon's private temporary directory (never to a pipe, which
could fill and block the daemon).

Not implemented: privilege dropping for the daemons (they run as root, like
the test suite) and restarts.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TypeVar

__all__ = [
    "POLL_INTERVAL",
    "READY_TIMEOUT",
    "Daemon",
    "DaemonError",
    "PeerMissingError",
    "free_port",
    "fresh_dir",
    "listening",
    "make_dir",
    "port_open",
    "require_binary",
    "retry_on_bind_failure",
    "wait_until",
]

#: Step of every readiness poll, seconds.
POLL_INTERVAL = 0.1
#: Default bound on a daemon's start, seconds.
READY_TIMEOUT = 10.0
#: How many bytes of a log end up in an error message.
_TAIL = 4000
#: Messages daemons print when their listening port is taken.
_BIND_FAILURE = re.compile(
    r"address already in use|address in use|eaddrinuse"
    # tinyproxy and oidentd say only this:
    r"|could not create listening sockets|unable to set up listening socket",
    re.I,
)

T = TypeVar("T")


class PeerMissingError(Exception):
    """A program a fixture needs is not installed.

    The conftest turns this into a failure under ``DANTEX_REQUIRE_PEERS=1``
    and into a skip otherwise; nothing else may skip.
    """


class DaemonError(RuntimeError):
    """A daemon exited early or did not become ready in time.

    :ivar log: the daemon's whole log at the time of failure.
    """

    def __init__(self, message: str, log: str) -> None:
        tail = log[-_TAIL:]
        super().__init__(f"{message}\n--- log tail ---\n{tail}")
        self.log = log

    @property
    def bind_failure(self) -> bool:
        """Whether the log says the listening address was taken."""
        return _BIND_FAILURE.search(self.log) is not None


def require_binary(name: str, package: str) -> str:
    """Return the absolute path of program *name*.

    Searches ``PATH`` plus ``/usr/sbin`` and ``/sbin`` (daemons live there and
    a non-login ``PATH`` may lack them).

    :raises PeerMissingError: when it is not installed.
    """
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    found = shutil.which(name, path=path)
    if found is None:
        raise PeerMissingError(
            f"{name!r} is not installed (Debian package {package!r}); "
            "./test.sh installs every peer"
        )
    return found


def free_port(host: str = "127.0.0.1", kind: int = socket.SOCK_STREAM) -> int:
    """Return a port that was free on *host* a moment ago.

    Binds port 0, reads the port back and closes the socket. This races with
    anything else on the machine that binds the port (or gets it as the
    ephemeral source port of an outgoing connection) between our close and
    the daemon's bind. So readiness checks that the daemon's own PID holds
    the listener (:func:`listening`), not just that the port accepts, and the
    peer modules retry their start once with a fresh port when the daemon
    reports a bind failure (:func:`retry_on_bind_failure`).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, kind) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def retry_on_bind_failure(start: Callable[[], T]) -> T:
    """Call *start*; if it fails because its port was taken, call it once more.

    *start* must pick a new port (and directory) on each call.
    """
    try:
        return start()
    except DaemonError as e:
        if not e.bind_failure:
            raise
    return start()


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether a TCP connection to *host*:*port* succeeds right now."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(
    check: Callable[[], bool], *, timeout: float, what: str, step: float = POLL_INTERVAL
) -> None:
    """Poll *check* every *step* seconds until it is true.

    :raises TimeoutError: after *timeout* seconds, naming *what*.
    """
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


def make_dir(name: str) -> Path:
    """Create a private temporary directory for one daemon instance.

    Under the system temp dir (not pytest's ``tmp_path``, whose parents are
    mode 0700 and so closed to daemons that drop to ``proxy`` or ``nobody``).
    """
    return Path(tempfile.mkdtemp(prefix=f"dantex-{name}-"))


@contextmanager
def fresh_dir(name: str) -> Iterator[Path]:
    """:func:`make_dir`, removed again if the block raises (e.g. a failed
    ``slapadd`` before the daemon exists); on success the :class:`Daemon`
    started in it owns it."""
    directory = make_dir(name)
    try:
        yield directory
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            # sl local_address rem_address st ... inode (10th field)
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def listening(pid: int, port: int) -> bool:
    """Whether process *pid* holds a TCP socket listening on *port*.

    Read from ``/proc`` (Linux): unlike a connect probe, this cannot be
    fooled by another program that took the port first (the race of
    :func:`free_port`), and it leaves no trace in the daemon's logs.
    """
    wanted = {f"socket:[{inode}]" for inode in _listening_inodes(port)}
    if not wanted:
        return False
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(fd) in wanted:
                return True
        except OSError:
            continue
    return False


class Daemon:
    """One daemon process started in the foreground in its own directory.

    :param name: short name, used for the log file ``<dir>/<name>.log``.
    :param argv: the command; ``argv[0]`` should be an absolute path.
    :param directory: its private directory (see :func:`make_dir`); removed on
        :meth:`stop`.
    :param extra_logs: other files the daemon writes (e.g. squid's
        ``cache.log``), included in :meth:`log_text` and error messages.
    :param env: extra environment variables.
    :param secrets: arguments (passwords) shown as ``***`` in error messages.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        directory: Path,
        *,
        extra_logs: Sequence[Path] = (),
        env: Mapping[str, str] | None = None,
        secrets: Collection[str] = (),
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.dir = directory
        self.log_path = directory / f"{name}.log"
        self.extra_logs = list(extra_logs)
        self._env = env
        self._secrets = frozenset(secrets)
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        self._cleaned = False
        self._terminated = False

    @property
    def pid(self) -> int:
        """The daemon's PID."""
        if self._proc is None:
            raise RuntimeError(f"{self.name} was not started")
        return self._proc.pid

    @property
    def returncode(self) -> int | None:
        """Exit status once the process has exited, else ``None``."""
        return None if self._proc is None else self._proc.poll()

    def alive(self) -> bool:
        """Whether the process was started and has not exited."""
        return self._proc is not None and self._proc.poll() is None

    def start(
        self,
        ready: Callable[[], bool],
        *,
        timeout: float = READY_TIMEOUT,
        what: str = "readiness",
    ) -> None:
        """Start the process and wait until *ready* returns true.

        *ready* is polled every 100 ms while the process is alive; it should
        return false, not raise, while the daemon is not ready.

        :raises DaemonError: if the process exits before it is ready, or is
            not ready within *timeout* seconds; the message ends with the
            log's tail. On any failure the process is stopped and the
            directory removed.
        """
        env = None if self._env is None else {**os.environ, **self._env}
        self._log_file = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            self.argv,
            cwd=self.dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )
        try:
            self._wait_ready(self._proc, ready, timeout, what)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(
        self,
        proc: subprocess.Popen[bytes],
        ready: Callable[[], bool],
        timeout: float,
        what: str,
    ) -> None:
        deadline = time.monotonic() + timeout
        while True:
            # Exit is checked before and after the probe: a daemon that failed
            # to bind must not pass for ready.
            if proc.poll() is None and ready() and proc.poll() is None:
                return
            code = proc.poll()
            if code is not None:
                raise DaemonError(
                    f"{self.name} exited with status {code} before {what}: "
                    f"{self.command_line()}",
                    self.log_text(),
                )
            if time.monotonic() >= deadline:
                self.stop(remove_dir=False)  # its last words go into the log
                raise DaemonError(
                    f"{self.name} not ready ({what}) within {timeout} s: "
                    f"{self.command_line()}",
                    self.log_text(),
                )
            time.sleep(POLL_INTERVAL)

    def command_line(self) -> str:
        """The command, with :attr:`secrets` replaced by ``***``."""
        return " ".join("***" if a in self._secrets else a for a in self.argv)

    def log_text(self) -> str:
        """Everything the daemon has logged so far: stdout+stderr, then extras."""
        parts = []
        for path in [self.log_path, *self.extra_logs]:
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue
            if path != self.log_path:
                text = f"--- {path.name} ---\n{text}"
            parts.append(text)
        return "".join(parts)

    def terminate(self) -> None:
        """Send SIGTERM (once) without waiting, so that several slow daemons
        can shut down in parallel before :meth:`stop` waits for each."""
        if self.alive() and not self._terminated:
            self._terminated = True
            assert self._proc is not None
            self._proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 10.0, *, remove_dir: bool = True) -> int | None:
        """Stop the process by PID: SIGTERM, wait up to *timeout*, then SIGKILL.

        Idempotent. Removes the directory unless *remove_dir* is false.

        :returns: the exit status, or ``None`` if it was never started.
        """
        proc = self._proc
        code = None
        if proc is not None:
            if proc.poll() is None:
                self.terminate()
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout)
            code = proc.returncode
        if remove_dir:
            self._cleanup()
        return code

    def _cleanup(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if not self._cleaned:
            self._cleaned = True
            shutil.rmtree(self.dir, ignore_errors=True)
