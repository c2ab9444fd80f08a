"""SOCKS 4 (Ying-Da Lee, NEC) and its 4A extension: CONNECT and BIND.

Request ``VN=4 CD DSTPORT DSTIP USERID NUL``; SOCKS 4A: a DSTIP of
``0.0.0.x`` (x != 0) means a NUL-terminated host name follows the USERID.
Reply ``VN=0 CD DSTPORT DSTIP``; CD 90 granted, 91 rejected or failed,
92/93 ident problems.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from enum import Enum, IntEnum, auto

from dantex.protocol._buffer import NEED_DATA, ReceiveBuffer, _NeedData
from dantex.protocol.address import Address, AddressType
from dantex.protocol.errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "VERSION",
    "Socks4ClientCodec",
    "Socks4Command",
    "Socks4Reply",
    "Socks4ReplyReceived",
    "Socks4Request",
    "Socks4ServerCodec",
    "encode_reply",
    "encode_request",
]

VERSION = 0x04
#: Longest USERID or 4A host name accepted (bytes, without the NUL).
MAX_FIELD = 255

_HEAD = struct.Struct("!BBH4s")
_REPLY = struct.Struct("!BBH4s")

#: RFC 1928 reply codes used for errors (the session maps any failure to 91).
_GENERAL_FAILURE = 0x01
_COMMAND_NOT_SUPPORTED = 0x07
_HOST_UNREACHABLE = 0x04


class Socks4Command(IntEnum):
    """CD in a request."""

    CONNECT = 1
    BIND = 2


class Socks4Reply(IntEnum):
    """CD in a reply."""

    GRANTED = 90
    REJECTED = 91
    NO_IDENTD = 92
    IDENT_MISMATCH = 93


@dataclass(frozen=True, slots=True)
class Socks4Request:
    """A complete SOCKS 4 or 4A request.

    ``address`` is IPv4 for SOCKS 4 and a domain for 4A (``is_4a``).
    """

    command: Socks4Command
    address: Address
    userid: bytes
    is_4a: bool


class _State(Enum):
    AWAIT_REQUEST = auto()
    REQUESTED = auto()
    DONE = auto()
    CLOSED = auto()


def _cstring(data: memoryview, start: int, what: str) -> int | None:
    """Index of the NUL ending a string at ``start``, or None if not yet seen."""
    end = bytes(data[start : start + MAX_FIELD + 1]).find(b"\x00")
    if end < 0:
        if len(data) - start > MAX_FIELD:
            raise RemoteProtocolError(f"SOCKS4 {what} longer than {MAX_FIELD} bytes")
        return None
    return start + end


def encode_reply(code: int, bound: Address | None = None) -> bytes:
    """``VN=0 CD DSTPORT DSTIP``; a non-IPv4 ``bound`` is sent as 0.0.0.0:0."""
    if bound is None or bound.type is not AddressType.IPV4:
        return _REPLY.pack(0, code, 0, b"\x00\x00\x00\x00")
    return _REPLY.pack(0, code, bound.port, ipaddress.IPv4Address(bound.host).packed)


class Socks4ServerCodec:
    """Server side of SOCKS 4/4A.  No I/O.

    The version byte 4 must be the first byte fed.
    """

    def __init__(self, *, max_buffer: int = 1024) -> None:
        self._buf = ReceiveBuffer(max_buffer)
        self._state = _State.AWAIT_REQUEST

    def feed(self, data: bytes) -> None:
        """Add received bytes.

        The ``max_buffer`` bound is enforced by :meth:`next_event` on an
        incomplete request; bytes pipelined after it are kept for
        :meth:`leftover`.
        """
        self._buf.feed(data, bounded=False)

    def next_event(self) -> Socks4Request | _NeedData:
        """The request once complete, else :data:`NEED_DATA`.

        After an error carrying a reply code, :meth:`reply` may answer it;
        after a wrong version (``reply=None``) the codec is closed.

        :raises RemoteProtocolError: wrong version, unknown command, an
            over-long USERID or host name, or more than ``max_buffer`` bytes
            of an incomplete request.
        """
        if self._state is not _State.AWAIT_REQUEST:
            return NEED_DATA
        try:
            event = self._request()
            if event is NEED_DATA:
                self._buf.enforce_bound()
        except RemoteProtocolError as e:
            self._state = _State.CLOSED if e.reply is None else _State.REQUESTED
            raise
        return event

    def _request(self) -> Socks4Request | _NeedData:
        data = self._buf.view()
        try:
            if data and data[0] != VERSION:
                raise RemoteProtocolError(
                    f"unknown SOCKS version {data[0]}", reply=None
                )
            if len(data) < _HEAD.size:
                return NEED_DATA
            _vn, cd, port, ip = _HEAD.unpack_from(data)
            nul = _cstring(data, _HEAD.size, "USERID")
            if nul is None:
                return NEED_DATA
            userid = bytes(data[_HEAD.size : nul])
            end = nul + 1
            is_4a = ip[:3] == b"\x00\x00\x00" and ip[3] != 0
            if is_4a:
                self._state = _State.REQUESTED  # a bad host name is answered 91
                hnul = _cstring(data, end, "host name")
                if hnul is None:
                    self._state = _State.AWAIT_REQUEST
                    return NEED_DATA
                raw = bytes(data[end:hnul])
                end = hnul + 1
                if not raw:
                    raise RemoteProtocolError(
                        "SOCKS4A request with an empty host name",
                        reply=_HOST_UNREACHABLE,
                    )
                try:
                    host = raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise RemoteProtocolError(
                        "SOCKS4A host name is not valid UTF-8", reply=_HOST_UNREACHABLE
                    ) from None
                address = Address(AddressType.DOMAIN, host, port)
            else:
                address = Address(
                    AddressType.IPV4, str(ipaddress.IPv4Address(ip)), port
                )
        finally:
            data.release()
        self._buf.consume(end)
        try:
            command = Socks4Command(cd)
        except ValueError:
            raise RemoteProtocolError(
                f"unknown socks_v4 command: {cd}", reply=_COMMAND_NOT_SUPPORTED
            ) from None
        self._state = _State.REQUESTED
        return Socks4Request(command, address, userid, is_4a)

    def reply(
        self, code: int, bound: Address | None = None, *, final: bool = True
    ) -> bytes:
        """The reply; ``final=False`` for BIND's first reply."""
        if self._state is not _State.REQUESTED:
            raise LocalProtocolError(f"reply() in state {self._state.name}")
        if code != Socks4Reply.GRANTED:
            self._state = _State.CLOSED
        elif final:
            self._state = _State.DONE
        return encode_reply(code, bound)

    def leftover(self) -> bytes:
        """Bytes after the request: the first bytes for the relay."""
        return self._buf.take_all()


# --- client side -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Socks4ReplyReceived:
    """A reply: CD and the DSTIP/DSTPORT it carried."""

    code: int
    bound: Address


def encode_request(command: int, address: Address, userid: bytes = b"") -> bytes:
    """A SOCKS 4 request, or 4A when ``address`` is a domain name.

    :raises LocalProtocolError: IPv6 addresses (SOCKS 4 cannot carry them),
        a NUL in ``userid``, or over-long fields.
    """
    if b"\x00" in userid or len(userid) > MAX_FIELD:
        raise LocalProtocolError("SOCKS4 USERID must be at most 255 bytes without NUL")
    if address.type is AddressType.IPV4:
        ip = ipaddress.IPv4Address(address.host).packed
        return _HEAD.pack(VERSION, command, address.port, ip) + userid + b"\x00"
    if address.type is AddressType.DOMAIN:
        name = address.host.encode("utf-8")
        if b"\x00" in name or len(name) > MAX_FIELD:
            raise LocalProtocolError("SOCKS4A host name must be at most 255 bytes")
        head = _HEAD.pack(VERSION, command, address.port, b"\x00\x00\x00\x01")
        return head + userid + b"\x00" + name + b"\x00"
    raise LocalProtocolError("SOCKS4 cannot carry an IPv6 address")


class Socks4ClientCodec:
    """Client side of SOCKS 4/4A: parses the 8-byte replies.  No I/O."""

    def __init__(self) -> None:
        self._buf = ReceiveBuffer(64)
        self._awaiting = True

    def expect_reply(self) -> None:
        """Await one more reply (BIND's second one)."""
        self._awaiting = True

    def feed(self, data: bytes) -> None:
        """Add received bytes (tunnelled bytes may follow a reply at once)."""
        self._buf.feed(data, bounded=False)

    def next_event(self) -> Socks4ReplyReceived | _NeedData:
        """The next reply, or :data:`NEED_DATA`.

        :raises RemoteProtocolError: a reply whose VN is not 0.
        """
        if not self._awaiting or len(self._buf) < _REPLY.size:
            return NEED_DATA
        vn, cd, port, ip = _REPLY.unpack(self._buf.consume(_REPLY.size))
        if vn != 0:
            raise RemoteProtocolError(f"SOCKS4 reply with VN={vn} (expected 0)")
        self._awaiting = False
        bound = Address(AddressType.IPV4, str(ipaddress.IPv4Address(ip)), port)
        return Socks4ReplyReceived(cd, bound)

    def leftover(self) -> bytes:
        """Bytes after the last reply: the start of the tunnelled stream."""
        return self._buf.take_all()
