"""SOCKS Protocol Version 5, RFC 1928: method selection, request, reply, UDP.

The server codec walks RFC 1928 §3 (method selection), an optional RFC 1929
sub-negotiation (:mod:`dantex.protocol.userpass`), §4 (request) and §6
(reply).  GSS-API (RFC 1961) is not implemented: a server never selects it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, IntEnum, auto

from dantex.protocol import userpass
from dantex.protocol._buffer import NEED_DATA, ReceiveBuffer, _NeedData
from dantex.protocol._udp import UdpDatagram, decode_udp, encode_udp
from dantex.protocol.address import UNSPECIFIED, Address, decode_address
from dantex.protocol.errors import LocalProtocolError, RemoteProtocolError
from dantex.protocol.userpass import UserPassRequest

__all__ = [
    "VERSION",
    "AuthMethod",
    "AuthResult",
    "Command",
    "MethodSelected",
    "MethodsOffered",
    "Reply",
    "ReplyReceived",
    "Request",
    "Socks5ClientCodec",
    "Socks5ServerCodec",
    "UdpDatagram",
    "decode_udp",
    "encode_reply",
    "encode_udp",
]

VERSION = 0x05


class AuthMethod(IntEnum):
    """METHOD values, RFC 1928 §3."""

    NO_AUTH = 0x00
    GSSAPI = 0x01
    USERNAME_PASSWORD = 0x02
    NO_ACCEPTABLE = 0xFF


class Command(IntEnum):
    """CMD values, RFC 1928 §4."""

    CONNECT = 0x01
    BIND = 0x02
    UDP_ASSOCIATE = 0x03


class Reply(IntEnum):
    """REP values, RFC 1928 §6."""

    SUCCEEDED = 0x00
    GENERAL_FAILURE = 0x01
    NOT_ALLOWED = 0x02
    NETWORK_UNREACHABLE = 0x03
    HOST_UNREACHABLE = 0x04
    CONNECTION_REFUSED = 0x05
    TTL_EXPIRED = 0x06
    COMMAND_NOT_SUPPORTED = 0x07
    ADDRESS_TYPE_NOT_SUPPORTED = 0x08


@dataclass(frozen=True, slots=True)
class MethodsOffered:
    """The client's greeting: the METHODS it can do, in its order (§3)."""

    methods: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Request:
    """A complete request (§4).  ``command`` is a known :class:`Command`."""

    command: Command
    address: Address


class _State(Enum):
    AWAIT_METHODS = auto()
    SELECTING = auto()  # greeting seen, select_method() not called yet
    AWAIT_USERPASS = auto()
    AUTHENTICATING = auto()  # RFC 1929 request seen, auth_result() pending
    AWAIT_REQUEST = auto()
    REQUESTED = auto()  # request seen, reply() pending
    DONE = auto()  # final reply written; bytes after it belong to the relay
    CLOSED = auto()


_AFTER_REQUEST = frozenset((_State.REQUESTED, _State.DONE, _State.CLOSED))


def encode_reply(code: int, bound: Address = UNSPECIFIED) -> bytes:
    """``VER REP RSV ATYP BND.ADDR BND.PORT`` (§6)."""
    return bytes((VERSION, code, 0)) + bound.encode()


class Socks5ServerCodec:
    """Server side of RFC 1928 (and RFC 1929 when selected).  No I/O.

    Feed bytes with :meth:`feed`, pull events with :meth:`next_event`, answer
    with :meth:`select_method`, :meth:`auth_result` and :meth:`reply`; each
    returns the bytes to write.  The version byte 5 must be the first byte fed.

    :param max_buffer: most unconsumed bytes held before the peer is refused.
    """

    def __init__(self, *, max_buffer: int = 1024) -> None:
        self._buf = ReceiveBuffer(max_buffer)
        self._state = _State.AWAIT_METHODS

    def feed(self, data: bytes) -> None:
        """Add received bytes.

        The ``max_buffer`` bound is enforced by :meth:`next_event`, on the
        message still incomplete: bytes a client pipelines after its request
        (optimistic data) stay buffered for :meth:`leftover`.
        """
        self._buf.feed(data, bounded=False)

    def next_event(self) -> MethodsOffered | UserPassRequest | Request | _NeedData:
        """The next complete message, or :data:`NEED_DATA`.

        After an error the codec is finished: it is in the state where
        :meth:`reply` may answer with the error's ``reply`` code (request
        phase), or closed when that code is ``None`` or no reply fits.

        :raises RemoteProtocolError: malformed input, or more than
            ``max_buffer`` bytes of an incomplete message; ``reply`` says what
            to answer (``None``: close without a reply).
        """
        state = self._state
        if state in _AFTER_REQUEST:
            return NEED_DATA
        # Before the request the client awaits no §6 reply: errors close.
        in_request = state is _State.AWAIT_REQUEST
        try:
            event: MethodsOffered | UserPassRequest | Request | _NeedData
            if state is _State.AWAIT_METHODS:
                event = self._methods()
            elif state is _State.AWAIT_USERPASS:
                event = self._userpass()
            elif state is _State.AWAIT_REQUEST:
                event = self._request()
            else:  # SELECTING, AUTHENTICATING: our answer is due first
                event = NEED_DATA
            if event is NEED_DATA:
                self._buf.enforce_bound(
                    reply=Reply.GENERAL_FAILURE if in_request else None
                )
        except RemoteProtocolError as e:
            answerable = in_request and e.reply is not None
            self._state = _State.REQUESTED if answerable else _State.CLOSED
            raise
        return event

    # The usual reads hold exactly one message each: these take it without
    # the buffer (the setup path's cost is in such layers).  Anything else --
    # a partial or pipelined message, bad bytes -- returns None and changes
    # nothing: feed() it, and next_event() answers as it always does.

    def whole_greeting(self, data: bytes) -> MethodsOffered | None:
        """``feed(data)`` then ``next_event()``, when ``data`` is exactly one
        well-formed greeting (§3) and nothing was fed before it."""
        if (
            self._state is _State.AWAIT_METHODS
            and len(data) > 2
            and data[0] == VERSION
            and len(data) == 2 + data[1]
            and not self._buf
        ):
            self._state = _State.SELECTING
            return MethodsOffered(tuple(data[2:]))
        return None

    def whole_request(self, data: bytes) -> Request | None:
        """``feed(data)`` then ``next_event()``, when ``data`` is exactly one
        well-formed request (§4) and nothing was fed before it."""
        if (
            self._state is not _State.AWAIT_REQUEST
            or len(data) < 7
            or data[0] != VERSION
            or data[2] != 0
            or not 1 <= data[1] <= 3
            or self._buf
        ):
            return None
        try:
            parsed = decode_address(data, 3)
        except RemoteProtocolError:
            return None
        if parsed is None or parsed[1] != len(data):
            return None
        self._state = _State.REQUESTED
        return Request(Command(data[1]), parsed[0])

    def _userpass(self) -> UserPassRequest | _NeedData:
        data = self._buf.view()
        try:
            parsed = userpass.parse_request(data)
        finally:
            data.release()
        if parsed is None:
            return NEED_DATA
        req, used = parsed
        self._buf.consume(used)
        self._state = _State.AUTHENTICATING
        return req

    def _methods(self) -> MethodsOffered | _NeedData:
        data = self._buf.view()
        try:
            if len(data) < 2:
                if data and data[0] != VERSION:
                    raise RemoteProtocolError(
                        f"unknown SOCKS version {data[0]}", reply=None
                    )
                return NEED_DATA
            if data[0] != VERSION:
                raise RemoteProtocolError(
                    f"unknown SOCKS version {data[0]}", reply=None
                )
            n = data[1]
            if n == 0:
                raise RemoteProtocolError(
                    "client offered no authentication methods", reply=None
                )
            if len(data) < 2 + n:
                return NEED_DATA
            methods = tuple(data[2 : 2 + n])
        finally:
            data.release()
        self._buf.consume(2 + n)
        self._state = _State.SELECTING
        return MethodsOffered(methods)

    def _request(self) -> Request | _NeedData:
        data = self._buf.view()
        try:
            if len(data) < 4:
                if data and data[0] != VERSION:
                    raise RemoteProtocolError(
                        f"unknown SOCKS version {data[0]} in request", reply=None
                    )
                return NEED_DATA
            if data[0] != VERSION:
                raise RemoteProtocolError(
                    f"unknown SOCKS version {data[0]} in request", reply=None
                )
            try:
                parsed = decode_address(data, 3)
            except RemoteProtocolError:
                self._state = _State.REQUESTED  # the error reply is still owed
                raise
            if parsed is None:
                return NEED_DATA
            address, end = parsed
            cmd = data[1]
        finally:
            data.release()
        self._buf.consume(end)
        try:
            command = Command(cmd)
        except ValueError:
            raise RemoteProtocolError(
                f"unknown socks_v5 command: {cmd}", reply=Reply.COMMAND_NOT_SUPPORTED
            ) from None
        self._state = _State.REQUESTED
        return Request(command, address)

    def select_method(self, method: int) -> bytes:
        """Answer the greeting with ``method`` (§3); 0xFF ends the exchange."""
        if self._state is not _State.SELECTING:
            raise LocalProtocolError(f"select_method() in state {self._state.name}")
        if method == AuthMethod.NO_ACCEPTABLE:
            self._state = _State.CLOSED
        elif method == AuthMethod.USERNAME_PASSWORD:
            self._state = _State.AWAIT_USERPASS
        elif method == AuthMethod.NO_AUTH:
            self._state = _State.AWAIT_REQUEST
        else:
            raise LocalProtocolError(f"method {method:#x} is not implemented")
        return bytes((VERSION, method))

    def auth_result(self, ok: bool) -> bytes:
        """Answer the RFC 1929 request; after a failure the codec is closed."""
        if self._state is not _State.AUTHENTICATING:
            raise LocalProtocolError(f"auth_result() in state {self._state.name}")
        self._state = _State.AWAIT_REQUEST if ok else _State.CLOSED
        return userpass.encode_response(ok)

    def reply(
        self, code: int, bound: Address = UNSPECIFIED, *, final: bool = True
    ) -> bytes:
        """The §6 reply.  ``final=False`` for BIND's first reply (a second follows)."""
        if self._state is not _State.REQUESTED:
            raise LocalProtocolError(f"reply() in state {self._state.name}")
        if code != Reply.SUCCEEDED:
            self._state = _State.CLOSED
        elif final:
            self._state = _State.DONE
        return encode_reply(code, bound)

    def leftover(self) -> bytes:
        """Bytes received after the request: the first bytes for the relay."""
        return self._buf.take_all()


# --- client side -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MethodSelected:
    """The server's §3 answer."""

    method: int


@dataclass(frozen=True, slots=True)
class AuthResult:
    """The server's RFC 1929 answer."""

    ok: bool


@dataclass(frozen=True, slots=True)
class ReplyReceived:
    """A §6 reply: ``code`` and BND.ADDR/BND.PORT."""

    code: int
    bound: Address


class _CState(Enum):
    AWAIT_METHOD = auto()
    AWAIT_AUTH = auto()
    AWAIT_REPLY = auto()
    IDLE = auto()  # waiting for the caller to send the next message


class Socks5ClientCodec:
    """Client side of RFC 1928/1929.  No I/O.

    Write :meth:`greeting`, read a :class:`MethodSelected`; if it selected
    0x02 write :meth:`userpass` and read an :class:`AuthResult`; write
    :meth:`request` and read a :class:`ReplyReceived` (two for BIND: call
    :meth:`expect_reply` before reading the second).
    """

    def __init__(self, *, max_buffer: int = 1024) -> None:
        self._buf = ReceiveBuffer(max_buffer)
        self._state = _CState.IDLE
        self._offered: tuple[int, ...] = ()

    def greeting(self, methods: tuple[int, ...]) -> bytes:
        """``VER NMETHODS METHODS`` (§3)."""
        if not 1 <= len(methods) <= 255:
            raise LocalProtocolError("offer 1-255 methods")
        self._offered = methods
        self._state = _CState.AWAIT_METHOD
        return bytes((VERSION, len(methods), *methods))

    def userpass(self, username: bytes, password: bytes) -> bytes:
        """The RFC 1929 request."""
        self._state = _CState.AWAIT_AUTH
        return userpass.encode_request(username, password)

    def request(self, command: int, address: Address) -> bytes:
        """``VER CMD RSV ATYP DST.ADDR DST.PORT`` (§4)."""
        self._state = _CState.AWAIT_REPLY
        return bytes((VERSION, command, 0)) + address.encode()

    def expect_reply(self) -> None:
        """Await one more reply (BIND's second one)."""
        self._state = _CState.AWAIT_REPLY

    def feed(self, data: bytes) -> None:
        """Add received bytes (tunnelled bytes may follow a reply at once)."""
        self._buf.feed(data, bounded=False)

    def next_event(self) -> MethodSelected | AuthResult | ReplyReceived | _NeedData:
        """The next complete server message, or :data:`NEED_DATA`.

        :raises RemoteProtocolError: a malformed or unexpected answer, or
            more than ``max_buffer`` bytes of an incomplete one.
        """
        if self._state is _CState.IDLE:
            return NEED_DATA
        event = self._parse()
        if event is NEED_DATA:
            self._buf.enforce_bound()
        return event

    def _parse(self) -> MethodSelected | AuthResult | ReplyReceived | _NeedData:
        state = self._state
        event: MethodSelected | AuthResult | ReplyReceived
        data = self._buf.view()
        try:
            if state is _CState.AWAIT_METHOD:
                if len(data) < 2:
                    return NEED_DATA
                if data[0] != VERSION:
                    raise RemoteProtocolError(f"server answered version {data[0]}")
                method = data[1]
                if method != AuthMethod.NO_ACCEPTABLE and method not in self._offered:
                    raise RemoteProtocolError(
                        f"server selected method {method:#x} that we did not offer"
                    )
                used, event = 2, MethodSelected(method)
            elif state is _CState.AWAIT_AUTH:
                parsed = userpass.parse_response(data)
                if parsed is None:
                    return NEED_DATA
                ok, used = parsed
                event = AuthResult(ok)
            elif state is _CState.AWAIT_REPLY:
                if len(data) < 4:
                    return NEED_DATA
                if data[0] != VERSION:
                    raise RemoteProtocolError(f"server replied with version {data[0]}")
                addr = decode_address(data, 3)
                if addr is None:
                    return NEED_DATA
                bound, used = addr
                event = ReplyReceived(data[1], bound)
            else:
                return NEED_DATA
        finally:
            data.release()
        self._buf.consume(used)
        self._state = _CState.IDLE
        return event

    def leftover(self) -> bytes:
        """Bytes after the last reply: the start of the tunnelled stream."""
        return self._buf.take_all()
