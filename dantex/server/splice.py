"""A zero-copy relay for Linux: ``splice(2)`` socket -> pipe -> socket.

Each socket is one reactor descriptor (its read and write roles in one
object, as the reactor requires).  A direction borrows a pipe from a shared
:class:`PipePool` only while bytes sit in it, so idle sessions hold no pipes;
when no pipe can be had the direction falls back to ``recv``/``send`` through
one bounded buffer.  A direction stops reading while anything it read is still
unwritten: a slow reader never makes the server buffer more than one pipe.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import struct

from twisted.internet.interfaces import (
    IReactorFDSet,
    IReactorTime,
    IReadWriteDescriptor,
)
from twisted.python.failure import Failure
from zope.interface import implementer

from dantex.server.relay import EndReason, OnEnd, Relay

__all__ = ["PipePool", "SpliceRelay", "splice_available"]

_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_FLAGS = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)
_COPY_CHUNK = 65536
_LINGER_RESET = struct.pack("ii", 1, 0)


def splice_available() -> bool:
    """Whether this platform has ``os.splice`` (Linux, Python >= 3.10)."""
    return hasattr(os, "splice")


class PipePool:
    """Pipes for splicing, reused between sessions.

    :param size: capacity to ask for (``F_SETPIPE_SZ``); unprivileged users
        have a per-user budget, so a refusal keeps the default size.
    :param max_idle: idle pipes kept for reuse; more are closed.
    :param max_open: pipes open at once; beyond it callers copy instead.
    """

    def __init__(
        self, size: int = 1 << 20, max_idle: int = 64, max_open: int = 1024
    ) -> None:
        self.size = size
        self._idle: list[tuple[int, int, int]] = []
        self._max_idle = max_idle
        self._max_open = max_open
        self.open_count = 0
        self._resize = True

    def acquire(self) -> tuple[int, int, int] | None:
        """``(read_fd, write_fd, capacity)`` or None when none can be had."""
        if self._idle:
            return self._idle.pop()
        if self.open_count >= self._max_open:
            return None
        try:
            r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return None
        capacity = 65536
        if self._resize:
            try:
                capacity = fcntl.fcntl(w, _F_SETPIPE_SZ, self.size)
            except OSError:
                self._resize = False
        self.open_count += 1
        return (r, w, capacity)

    def release(self, pipe: tuple[int, int, int]) -> None:
        """Return an empty pipe."""
        if len(self._idle) < self._max_idle:
            self._idle.append(pipe)
        else:
            self.discard(pipe)

    def discard(self, pipe: tuple[int, int, int]) -> None:
        """Close a pipe (it may hold bytes nobody will read)."""
        os.close(pipe[0])
        os.close(pipe[1])
        self.open_count -= 1

    def close(self) -> None:
        """Close every idle pipe."""
        while self._idle:
            self.discard(self._idle.pop())


@implementer(IReadWriteDescriptor)
class _Side:
    """One socket of the session, registered with the reactor."""

    __slots__ = ("fd", "name", "reading", "relay", "sock", "writing")

    def __init__(self, relay: SpliceRelay, sock: socket.socket, name: str) -> None:
        self.relay = relay
        self.sock = sock
        self.fd = sock.fileno()
        self.name = name
        self.reading = False
        self.writing = False

    def fileno(self) -> int:
        return self.fd

    def logPrefix(self) -> str:
        return f"dantex-splice-{self.name}"

    def doRead(self) -> None:
        self.relay._pump(self.relay._flow_from[self.name])

    def doWrite(self) -> None:
        self.relay._drain(self.relay._flow_to[self.name])

    def connectionLost(self, reason: Failure) -> None:
        self.relay._failed(self, str(reason.value))


class _Flow:
    """One direction: bytes read from ``src`` and written to ``dst``."""

    __slots__ = (
        "buf",
        "dst",
        "eof",
        "pipe",
        "pipe_bytes",
        "read",
        "shut",
        "src",
        "written",
    )

    def __init__(self, src: _Side, dst: _Side, initial: bytes) -> None:
        self.src = src
        self.dst = dst
        self.pipe: tuple[int, int, int] | None = None
        self.pipe_bytes = 0
        self.buf = initial
        self.read = 0
        self.written = 0
        self.eof = False
        self.shut = False


class SpliceRelay(Relay):
    """Relay two connected sockets with ``splice(2)``.

    :param client: the client's socket (taken from its Twisted transport).
    :param target: the connected target socket.
    :param to_client: bytes to send the client first (e.g. the SOCKS reply).
    :param to_target: bytes the client sent early, for the target first.
    """

    kind = "splice"

    def __init__(
        self,
        reactor: IReactorFDSet,
        clock: IReactorTime,
        pool: PipePool,
        client: socket.socket,
        target: socket.socket,
        on_end: OnEnd,
        *,
        to_client: bytes = b"",
        to_target: bytes = b"",
        io_timeout: float = 0.0,
    ) -> None:
        super().__init__(clock, on_end, io_timeout)
        self._reactor = reactor
        self._pool = pool
        c = _Side(self, client, "client")
        t = _Side(self, target, "target")
        self._sides = (c, t)
        up = _Flow(c, t, to_target)
        up.read = len(to_target)  # client data that arrived with the request
        down = _Flow(t, c, to_client)
        down.written = -len(to_client)  # the SOCKS reply is not relayed data
        self._flow_from = {"client": up, "target": down}
        self._flow_to = {"target": up, "client": down}
        self._first: EndReason | None = None
        self._done = False
        self._track = io_timeout > 0

    def start(self) -> None:
        """Send what is pending and start watching both sockets."""
        for flow in self._flow_from.values():
            if flow.buf:
                self._drain(flow)
            elif not self._done:
                self._want_read(flow.src, True)

    def counts(self) -> tuple[int, int, int, int]:
        up, down = self._flow_from["client"], self._flow_from["target"]
        return (up.read, down.written, down.read, up.written)

    # -- reactor registration ------------------------------------------------

    def _want_read(self, side: _Side, on: bool) -> None:
        if on and not side.reading:
            side.reading = True
            self._reactor.addReader(side)
        elif not on and side.reading:
            side.reading = False
            self._reactor.removeReader(side)

    def _want_write(self, side: _Side, on: bool) -> None:
        if on and not side.writing:
            side.writing = True
            self._reactor.addWriter(side)
        elif not on and side.writing:
            side.writing = False
            self._reactor.removeWriter(side)

    # -- moving bytes ----------------------------------------------------------

    def _pump(self, flow: _Flow) -> None:
        """``flow.src`` is readable: move what it has towards ``flow.dst``."""
        if self._done:
            return
        if flow.buf or flow.pipe is not None:  # still draining: stop reading
            self._want_read(flow.src, False)
            return
        if self._track:
            self.last_active = self._clock.seconds()
        pipe = self._pool.acquire()
        if pipe is None:
            self._copy(flow)
            return
        try:
            n = os.splice(flow.src.fd, pipe[1], pipe[2], flags=_FLAGS)
        except BlockingIOError:
            self._pool.release(pipe)
            return
        except OSError as e:
            self._pool.release(pipe)
            self._failed(flow.src, os.strerror(e.errno or errno.EIO))
            return
        if n == 0:
            self._pool.release(pipe)
            self._eof(flow)
            return
        flow.read += n
        flow.pipe = pipe
        flow.pipe_bytes = n
        self._drain(flow)

    def _copy(self, flow: _Flow) -> None:
        """No pipe to be had: one bounded recv/send instead."""
        try:
            data = flow.src.sock.recv(_COPY_CHUNK)
        except BlockingIOError:
            return
        except OSError as e:
            self._failed(flow.src, os.strerror(e.errno or errno.EIO))
            return
        if not data:
            self._eof(flow)
            return
        flow.read += len(data)
        flow.buf = data
        self._drain(flow)

    def _drain(self, flow: _Flow) -> None:
        """Write what ``flow`` holds into ``flow.dst``; resume reading when empty."""
        if self._done:
            return
        dst = flow.dst
        try:
            if flow.buf:
                sent = dst.sock.send(flow.buf)
                flow.written += sent
                flow.buf = flow.buf[sent:]
            if not flow.buf and flow.pipe is not None:
                pipe = flow.pipe
                while flow.pipe_bytes:
                    m = os.splice(pipe[0], dst.fd, flow.pipe_bytes, flags=_FLAGS)
                    flow.pipe_bytes -= m
                    flow.written += m
                self._pool.release(pipe)
                flow.pipe = None
        except BlockingIOError:
            pass
        except OSError as e:
            self._failed(dst, os.strerror(e.errno or errno.EIO))
            return
        if flow.buf or flow.pipe is not None:
            self._want_read(flow.src, False)
            self._want_write(dst, True)
            return
        self._want_write(dst, False)
        if flow.eof:
            self._shutdown(flow)
        else:
            self._want_read(flow.src, True)

    def _eof(self, flow: _Flow) -> None:
        flow.eof = True
        if self._first is None:
            self._first = EndReason(flow.src.name)
        self._want_read(flow.src, False)
        if not flow.buf and flow.pipe is None:
            self._shutdown(flow)

    def _shutdown(self, flow: _Flow) -> None:
        """Pass the EOF on: half-close ``dst``; end when both ways are done."""
        if flow.shut:
            return
        flow.shut = True
        try:
            flow.dst.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        if all(f.shut for f in self._flow_from.values()):
            self._close(self._first or EndReason(flow.src.name), reset=False)

    def _failed(self, side: _Side, error: str) -> None:
        """An error on ``side``: reset the other side too, and end."""
        if self._done:
            return
        self._close(EndReason(side.name, error), reset=True)

    def abort(self, reason: EndReason, *, reset: bool = True) -> None:
        if not self._done:
            self._close(reason, reset=reset)

    def _close(self, reason: EndReason, *, reset: bool) -> None:
        self._done = True
        self._capture_tcp_info(self._sides[0].sock, self._sides[1].sock)
        for side in self._sides:
            self._want_read(side, False)
            self._want_write(side, False)
        for flow in self._flow_from.values():
            if flow.pipe is not None:
                self._pool.discard(flow.pipe)
                flow.pipe = None
        for side in self._sides:
            if reset:
                try:
                    side.sock.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET
                    )
                except OSError:
                    pass
            side.sock.close()
        self._ended(reason)
