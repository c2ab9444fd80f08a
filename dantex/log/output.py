"""Where Dante-format lines go: ``logoutput``/``errorlog`` destinations.

Lines are buffered and written once per reactor turn (or when the buffer
grows past 64 KiB), so logging costs the relay one list append per line.
Files are opened in append mode and reopened on SIGHUP.
"""

from __future__ import annotations

import os
import sys
import syslog
from collections.abc import Sequence
from typing import IO

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from dantex.config.model import LogTarget
from dantex.log.format import line_prefix

__all__ = ["LEVELS", "DanteLog"]

#: Dante's level names, most severe first, with their syslog priorities.
LEVELS = {
    "emergency": syslog.LOG_EMERG,
    "alert": syslog.LOG_ALERT,
    "critical": syslog.LOG_CRIT,
    "error": syslog.LOG_ERR,
    "warning": syslog.LOG_WARNING,
    "notice": syslog.LOG_NOTICE,
    "info": syslog.LOG_INFO,
    "debug": syslog.LOG_DEBUG,
}
_SERIOUS = frozenset({"emergency", "alert", "critical", "error"})
_FLUSH_AT = 64 * 1024


class _Stream:
    """A file-like destination (stderr, stdout or a file we own)."""

    def __init__(self, target: LogTarget) -> None:
        self.target = target
        self.file: IO[str] | None = None
        self.open()

    def open(self) -> None:
        if self.target.kind == "stderr":
            self.file = sys.stderr
        elif self.target.kind == "stdout":
            self.file = sys.stdout
        else:
            assert self.target.path is not None
            self.file = open(self.target.path, "a", encoding="utf-8", errors="replace")  # noqa: SIM115

    def reopen(self) -> None:
        if self.target.kind == "file":
            self.close()
            self.open()

    def write(self, text: str) -> None:
        if self.file is not None:
            try:
                self.file.write(text)
                self.file.flush()
            except (OSError, ValueError):
                pass

    def close(self) -> None:
        if self.target.kind == "file" and self.file is not None:
            self.file.close()
        self.file = None


class DanteLog:
    """Writes Dante-format lines to the configured destinations.

    :param targets: ``logoutput`` destinations (everything goes there).
    :param errorlog: ``errorlog`` destinations (only serious messages).
    :param clock: schedules the batched flush.
    """

    def __init__(
        self,
        targets: Sequence[LogTarget],
        errorlog: Sequence[LogTarget] = (),
        clock: IReactorTime | None = None,
        program: str = "dantex",
        debug: int = 0,
    ) -> None:
        #: the ``debug:`` level; above 0, :meth:`debug` lines are written
        self.debug_level = debug
        self._clock = clock
        self._program = program
        self._pid = os.getpid()
        self._streams = [_Stream(t) for t in targets if t.kind != "syslog"]
        self._err_streams = [_Stream(t) for t in errorlog if t.kind != "syslog"]
        self._syslog = [t for t in targets if t.kind == "syslog"]
        self._err_syslog = [t for t in errorlog if t.kind == "syslog"]
        self._pending: list[str] = []
        self._pending_size = 0
        self._flush_call: IDelayedCall | None = None
        self.enabled = bool(targets or errorlog)

    def __call__(self, level: str, message: str) -> None:
        """Log ``message`` at ``level`` (one of :data:`LEVELS`)."""
        if not self.enabled:
            return
        now = self._clock.seconds() if self._clock is not None else 0.0
        if self._clock is None:
            import time

            now = time.time()
        line = line_prefix(now, self._program, self._pid, level) + message + "\n"
        if self._syslog:
            self._to_syslog(self._syslog, level, message)
        if level in _SERIOUS:
            for s in self._err_streams:
                s.write(line)
            if self._err_syslog:
                self._to_syslog(self._err_syslog, level, message)
        if not self._streams:
            return
        self._pending.append(line)
        self._pending_size += len(line)
        if self._clock is None or self._pending_size >= _FLUSH_AT:
            self.flush()
        elif self._flush_call is None:
            self._flush_call = self._clock.callLater(0, self.flush)

    def info(self, message: str) -> None:
        """Log at level info."""
        self("info", message)

    def warning(self, message: str) -> None:
        """Log at level warning."""
        self("warning", message)

    def error(self, message: str) -> None:
        """Log at level error (also to ``errorlog``)."""
        self("error", message)

    def debug(self, message: str) -> None:
        """Log at level debug, only when ``debug:`` is above 0."""
        if self.debug_level > 0:
            self("debug", message)

    def flush(self) -> None:
        """Write out everything buffered."""
        if self._flush_call is not None:
            if self._flush_call.active():
                self._flush_call.cancel()
            self._flush_call = None
        if not self._pending:
            return
        text = "".join(self._pending)
        self._pending.clear()
        self._pending_size = 0
        for s in self._streams:
            s.write(text)

    def _to_syslog(self, targets: list[LogTarget], level: str, message: str) -> None:
        for t in targets:
            facility = getattr(syslog, f"LOG_{t.facility.upper()}", syslog.LOG_DAEMON)
            syslog.openlog(self._program, syslog.LOG_PID, facility)
            syslog.syslog(LEVELS.get(level, syslog.LOG_INFO), message)

    def reopen(self) -> None:
        """Reopen log files (SIGHUP), after flushing what is buffered."""
        self.flush()
        for s in (*self._streams, *self._err_streams):
            s.reopen()

    def close(self) -> None:
        """Flush and close files we opened."""
        self.flush()
        for s in (*self._streams, *self._err_streams):
            s.close()
