"""A zero-copy relay for Linux: ``splice(2)`` socket -> pipe -> socket.

Each socket is one :class:`~dantex.server.lean.Conn` registered with the
reactor (its read and write roles in one object, as the reactor requires);
the client's is the very descriptor that negotiated, so the hand-over costs
no re-registration.  A direction borrows a pipe from a shared
:class:`PipePool` only while bytes sit in it, so idle sessions hold no pipes;
when no pipe can be had the direction falls back to ``recv``/``send`` through
one bounded buffer.  A direction keeps reading while its pipe has room and
stops when the pipe is full (or while the copy fallback holds bytes): a slow
reader never makes the server buffer more than one pipe.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket

from twisted.internet.interfaces import IReactorFDSet, IReactorTime
from twisted.python.failure import Failure

from dantex.server.lean import Conn
from dantex.server.relay import EndReason, OnEnd, Relay

__all__ = ["PipePool", "SpliceRelay", "splice_available"]

_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_FLAGS = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)
_COPY_CHUNK = 65536
_splice = getattr(os, "splice", None)

Pipe = tuple[int, int, int]


def splice_available() -> bool:
    """Whether this platform has ``os.splice`` (Linux, Python >= 3.10)."""
    return _splice is not None


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
        self._idle: list[Pipe] = []
        self._max_idle = max_idle
        self._max_open = max_open
        self.open_count = 0
        self._resize = True

    def acquire(self) -> Pipe | None:
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

    def release(self, pipe: Pipe) -> None:
        """Return an empty pipe."""
        if len(self._idle) < self._max_idle:
            self._idle.append(pipe)
        else:
            self.discard(pipe)

    def discard(self, pipe: Pipe) -> None:
        """Close a pipe (it may hold bytes nobody will read)."""
        os.close(pipe[0])
        os.close(pipe[1])
        self.open_count -= 1

    def close(self) -> None:
        """Close every idle pipe."""
        while self._idle:
            self.discard(self._idle.pop())


class _Flow:
    """One direction: bytes read from ``src`` and written to ``dst``."""

    __slots__ = (
        "buf",
        "dst",
        "eof",
        "pipe",
        "pipe_bytes",
        "pool",
        "read",
        "relay",
        "shut",
        "src",
        "written",
    )

    def __init__(
        self, relay: SpliceRelay, src: Conn, dst: Conn, initial: bytes
    ) -> None:
        self.relay = relay
        self.pool = relay._pool
        self.src = src
        self.dst = dst
        self.pipe: Pipe | None = None
        self.pipe_bytes = 0
        self.buf = initial
        self.read = 0
        self.written = 0
        self.eof = False
        self.shut = False

    def pump(self) -> None:
        """``src`` is readable: move what it has towards ``dst``.

        Reading goes on while the pipe has room, so the next bytes come in
        while earlier ones wait for ``dst``; a full pipe stops reading.
        """
        relay = self.relay
        if relay._done:
            return
        if self.buf:  # the copy fallback holds bytes: stop reading
            self.src.want_read(False)
            return
        if relay._track:
            relay.last_active = relay._clock.seconds()
        pipe = self.pipe
        fresh = pipe is None
        if pipe is None:
            pipe = self.pool.acquire()
            if pipe is None:
                self._copy()
                return
        room = pipe[2] - self.pipe_bytes
        if room <= 0:
            self.src.want_read(False)
            return
        try:
            n = _splice(self.src.fd, pipe[1], room, flags=_FLAGS)  # type: ignore[misc]
        except BlockingIOError:
            if fresh:
                self.pool.release(pipe)
            return
        except OSError as e:
            if fresh:
                self.pool.release(pipe)
            if e.errno == errno.ECONNRESET:
                self.src.reset_by_peer = True
            relay._failed(self.src, os.strerror(e.errno or errno.EIO))
            return
        if n == 0:
            if fresh:
                self.pool.release(pipe)
            self._eof()
            return
        self.read += n
        self.pipe = pipe
        self.pipe_bytes += n
        if not self.dst.writing:  # otherwise writability will drain it
            self.drain()
        elif n == room:
            self.src.want_read(False)

    def _copy(self) -> None:
        """No pipe to be had: one bounded recv/send instead."""
        try:
            data = self.src.sock.recv(_COPY_CHUNK)
        except BlockingIOError:
            return
        except OSError as e:
            self.relay._failed(self.src, os.strerror(e.errno or errno.EIO))
            return
        if not data:
            self._eof()
            return
        self.read += len(data)
        self.buf = data
        self.drain()

    def drain(self) -> None:
        """Write what the flow holds into ``dst``; resume reading when empty."""
        relay = self.relay
        if relay._done:
            return
        dst = self.dst
        try:
            if self.buf:
                sent = dst.sock.send(self.buf)
                self.written += sent
                self.buf = self.buf[sent:]
            pipe = self.pipe
            if not self.buf and pipe is not None:
                while self.pipe_bytes:
                    m = _splice(pipe[0], dst.fd, self.pipe_bytes, flags=_FLAGS)  # type: ignore[misc]
                    self.pipe_bytes -= m
                    self.written += m
                self.pool.release(pipe)
                self.pipe = None
        except BlockingIOError:
            pass
        except OSError as e:
            relay._failed(dst, os.strerror(e.errno or errno.EIO))
            return
        pipe = self.pipe
        if self.buf or pipe is not None:
            dst.want_write(True)
            self.src.want_read(
                not self.buf
                and not self.eof
                and pipe is not None
                and self.pipe_bytes < pipe[2]
            )
            return
        if dst.writing:
            dst.want_write(False)
        if self.eof:
            self._shutdown()
        elif not self.src.reading:
            self.src.want_read(True)

    def _eof(self) -> None:
        self.eof = True
        relay = self.relay
        if relay._first is None:
            relay._first = EndReason(relay._name(self.src))
            relay._half_close_began()
        self.src.want_read(False)
        if not self.buf and self.pipe is None:
            self._shutdown()

    def _shutdown(self) -> None:
        """Pass the EOF on: half-close ``dst``; end when both ways are done."""
        if self.shut:
            return
        self.shut = True
        relay = self.relay
        other = relay._down if self is relay._up else relay._up
        if other.shut:  # both done: closing sends the FIN, no shutdown needed
            relay._close(relay._first or EndReason(relay._name(self.src)), reset=False)
            return
        try:
            self.dst.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass


class SpliceRelay(Relay):
    """Relay two connected sockets with ``splice(2)``.

    :param client: the client's descriptor (taken from its lean transport) or
        its socket.
    :param target: the connected target socket (or descriptor).
    :param to_client: bytes to send the client first (e.g. the SOCKS reply).
    :param to_target: bytes the client sent early, for the target first.
    """

    kind = "splice"

    def __init__(
        self,
        reactor: IReactorFDSet,
        clock: IReactorTime,
        pool: PipePool,
        client: Conn | socket.socket,
        target: Conn | socket.socket,
        on_end: OnEnd,
        *,
        to_client: bytes = b"",
        to_target: bytes = b"",
        io_timeout: float = 0.0,
    ) -> None:
        super().__init__(clock, on_end, io_timeout)
        self._reactor = reactor
        self._pool = pool
        c = client if isinstance(client, Conn) else Conn(reactor, client)
        t = target if isinstance(target, Conn) else Conn(reactor, target)
        self._client = c
        self._target = t
        self._up = up = _Flow(self, c, t, to_target)
        up.read = len(to_target)  # client data that arrived with the request
        self._down = down = _Flow(self, t, c, to_client)
        down.written = -len(to_client)  # the SOCKS reply is not relayed data
        self._first: EndReason | None = None
        self._done = False
        self._track = io_timeout > 0
        c.read_cb = up.pump
        c.write_cb = down.drain
        c.lost_cb = self._client_lost
        t.read_cb = down.pump
        t.write_cb = up.drain
        t.lost_cb = self._target_lost

    def start(self) -> None:
        """Send what is pending, then watch each socket with one epoll call."""
        up, down = self._up, self._down
        for flow in (up, down):
            if flow.buf:
                try:
                    sent = flow.dst.sock.send(flow.buf)
                except BlockingIOError:
                    sent = 0
                except OSError as e:
                    self._failed(flow.dst, os.strerror(e.errno or errno.EIO))
                    return
                flow.written += sent
                flow.buf = flow.buf[sent:]
        # A direction with bytes still pending waits for its destination to
        # drain before it reads more.
        self._client.set_interest(not up.buf, bool(down.buf))
        self._target.set_interest(not down.buf, bool(up.buf))

    def counts(self) -> tuple[int, int, int, int]:
        up, down = self._up, self._down
        return (up.read, down.written, down.read, up.written)

    def _name(self, conn: Conn) -> str:
        return "client" if conn is self._client else "target"

    def _client_lost(self, reason: Failure) -> None:
        self._failed(self._client, _text(reason))

    def _target_lost(self, reason: Failure) -> None:
        self._failed(self._target, _text(reason))

    def _failed(self, conn: Conn, error: str) -> None:
        """An error on ``conn``: reset the other side too, and end."""
        if not self._done:
            self._close(EndReason(self._name(conn), error), reset=True)

    def abort(self, reason: EndReason, *, reset: bool = True) -> None:
        if not self._done:
            self._close(reason, reset=reset)

    def _close(self, reason: EndReason, *, reset: bool) -> None:
        self._done = True
        self._capture_tcp_info(self._client.sock, self._target.sock)
        for flow in (self._up, self._down):
            if flow.pipe is not None:
                self._pool.discard(flow.pipe)
                flow.pipe = None
        self._client.close(reset=reset)
        self._target.close(reset=reset)
        self._ended(reason)
        # The flows and the relay refer to each other; parting them lets
        # reference counting free a finished session (no cyclic garbage).
        # Nothing calls a flow after this: its sockets dropped their callbacks.
        del self._up.relay, self._down.relay


def _text(reason: Failure) -> str:
    value = reason.value
    if isinstance(value, OSError) and value.strerror:
        return value.strerror
    return "Connection reset by peer"
