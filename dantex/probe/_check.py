"""The probe itself: one session over a blocking socket, within a deadline."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from dantex.client._handshake import (
    Handshake,
    Replied,
    Socks4Handshake,
    Socks5Handshake,
    UserPass,
)
from dantex.client.errors import ProxyError
from dantex.protocol import NEED_DATA
from dantex.protocol.address import Address
from dantex.protocol.errors import RemoteProtocolError
from dantex.protocol.socks5 import (
    AuthMethod,
    AuthResult,
    Command,
    MethodSelected,
    Socks5ClientCodec,
)

__all__ = ["ProbeFailed", "ProbeSpec", "Session", "open_session", "run_check"]

#: PROXY protocol headers the probe can send first (proxy-protocol.txt):
#: v2 LOCAL and v1 UNKNOWN, "use the connection's real addresses".
PROXY_HEADERS = {
    "v1": b"PROXY UNKNOWN\r\n",
    "v2": b"\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00",
}
_MAX_READ = 65536


class ProbeFailed(Exception):
    """The server is not healthy; the message says why (never a password)."""


@dataclass(frozen=True)
class ProbeSpec:
    """What to check.

    :ivar target: CONNECT (or BIND) target; None: only negotiate (SOCKS 5).
    :ivar send: bytes to send through the tunnel once it is up.
    :ivar expect: bytes the far side must send back (a substring of the
        first 64 KiB), None: not checked.
    :ivar send_proxy: send this PROXY header version ("v1"/"v2") first.
    """

    host: str
    port: int
    version: int = 5
    target: Address | None = None
    bind: bool = False
    credentials: UserPass | None = field(default=None, repr=False)
    send: bytes = b""
    expect: bytes | None = None
    send_proxy: str | None = None
    timeout: float = 5.0

    @property
    def name(self) -> str:
        """``socks5 HOST:PORT``, for messages."""
        return f"socks{self.version} {self.host}:{self.port}"


@dataclass
class Session:
    """An open session: its socket, a BIND peer if any, what was done."""

    sock: socket.socket
    done: str = ""
    rest: bytes = b""
    peers: list[socket.socket] = field(default_factory=list)

    def close(self) -> None:
        """Close the socket and any BIND peer opened for it."""
        for peer in self.peers:
            peer.close()
        self.peers = []
        self.sock.close()


class _Deadline:
    def __init__(self, seconds: float, now: Callable[[], float]) -> None:
        self.seconds = seconds
        self._now = now
        self._end = now() + seconds

    def arm(self, sock: socket.socket) -> None:
        left = self._end - self._now()
        if left <= 0:
            raise ProbeFailed(f"timed out after {self.seconds:g}s")
        sock.settimeout(left)


def _recv(sock: socket.socket, deadline: _Deadline, what: str) -> bytes:
    deadline.arm(sock)
    data = sock.recv(_MAX_READ)
    if not data:
        raise ProbeFailed(f"the server closed the connection {what}")
    return data


def _negotiate_only(sock: socket.socket, spec: ProbeSpec, deadline: _Deadline) -> str:
    """SOCKS 5 method selection (and RFC 1929 when credentials are given)."""
    codec = Socks5ClientCodec()
    methods: tuple[int, ...] = (AuthMethod.NO_AUTH,)
    if spec.credentials is not None:
        methods = (AuthMethod.NO_AUTH, AuthMethod.USERNAME_PASSWORD)
    sock.sendall(codec.greeting(methods))
    while True:
        try:
            event = codec.next_event()
        except RemoteProtocolError as e:
            raise ProbeFailed(f"malformed reply: {e}") from None
        if event is NEED_DATA:
            codec.feed(_recv(sock, deadline, "during negotiation"))
            continue
        if isinstance(event, MethodSelected):
            if event.method == AuthMethod.NO_ACCEPTABLE:
                raise ProbeFailed("no acceptable authentication method")
            if event.method != AuthMethod.USERNAME_PASSWORD:
                return "negotiated"
            assert spec.credentials is not None
            sock.sendall(codec.userpass(*spec.credentials.encoded()))
        elif isinstance(event, AuthResult):
            if not event.ok:
                raise ProbeFailed("user name and password rejected (RFC 1929)")
            return "authenticated"


def _handshake(session: Session, spec: ProbeSpec, deadline: _Deadline) -> None:
    target = spec.target
    assert target is not None
    hs: Handshake
    try:
        if spec.version == 4:
            userid = b""
            if spec.credentials is not None:
                userid = spec.credentials.encoded()[0]
            hs = Socks4Handshake(spec.name, target, userid=userid, bind=spec.bind)
        else:
            command = Command.BIND if spec.bind else Command.CONNECT
            hs = Socks5Handshake(
                spec.name, target, command=command, credentials=spec.credentials
            )
    except ValueError as e:
        raise ProbeFailed(str(e)) from None
    sock = session.sock
    sock.sendall(hs.start())
    replies: list[Replied] = []
    while not replies or not replies[-1].final:
        data = _recv(sock, deadline, "during the request")
        try:
            out, steps = hs.feed(data)
        except ProxyError as e:
            raise ProbeFailed(e.message) from None
        if out:
            sock.sendall(out)
        for step in steps:
            replies.append(step)
            if not step.final:
                session.peers.append(_bind_peer(sock, spec, step, deadline))
    session.rest = hs.leftover()
    session.done = "bind" if spec.bind else "connect"


def _bind_peer(
    sock: socket.socket, spec: ProbeSpec, first: Replied, deadline: _Deadline
) -> socket.socket:
    """BIND's first reply: connect to the bound address as the peer would."""
    bound = first.bound
    if bound is None or bound.port == 0:
        raise ProbeFailed("BIND reply without a bound address")
    host = bound.host
    if host in ("0.0.0.0", "::"):
        host = spec.host
    deadline.arm(sock)
    try:
        return socket.create_connection((host, bound.port), timeout=sock.gettimeout())
    except OSError as e:
        raise ProbeFailed(f"cannot connect to the bound address: {e}") from None


def open_session(spec: ProbeSpec, now: Callable[[], float] = time.monotonic) -> Session:
    """Connect and negotiate; the session is left open.

    :raises ProbeFailed: why the server is not healthy.
    """
    deadline = _Deadline(spec.timeout, now)
    try:
        sock = socket.create_connection((spec.host, spec.port), timeout=spec.timeout)
    except TimeoutError:
        raise ProbeFailed("cannot connect: timed out") from None
    except OSError as e:
        why = e.strerror or str(e)
        raise ProbeFailed(f"cannot connect: {why}") from None
    session = Session(sock)
    try:
        if spec.send_proxy is not None:
            sock.sendall(PROXY_HEADERS[spec.send_proxy])
        if spec.target is None:
            session.done = _negotiate_only(sock, spec, deadline)
        else:
            _handshake(session, spec, deadline)
        return session
    except TimeoutError:
        session.close()
        raise ProbeFailed(f"timed out after {spec.timeout:g}s") from None
    except OSError as e:
        session.close()
        raise ProbeFailed(f"connection failed: {e}") from None
    except BaseException:
        session.close()
        raise


def run_check(spec: ProbeSpec, now: Callable[[], float] = time.monotonic) -> str:
    """One full check: negotiate, request, exchange the payload.

    :returns: a short description of what succeeded.
    :raises ProbeFailed: why the server is not healthy.
    """
    started = now()
    session = open_session(spec, now)
    sock = session.sock
    try:
        deadline = _Deadline(spec.timeout - (now() - started), now)
        if spec.send:
            sock.sendall(spec.send)
        if spec.expect is not None:
            got = session.rest
            while spec.expect not in got:
                if len(got) >= _MAX_READ:
                    raise ProbeFailed("the expected response did not come back")
                try:
                    got += _recv(sock, deadline, "before the expected response")
                except TimeoutError:
                    raise ProbeFailed(
                        f"no expected response within {spec.timeout:g}s"
                    ) from None
    except OSError as e:
        raise ProbeFailed(f"data exchange failed: {e}") from None
    finally:
        session.close()
    ms = (now() - started) * 1000
    return f"{session.done} in {ms:.1f} ms"
