"""RFC 1929: username/password sub-negotiation for SOCKS5 (method 0x02).

Request ``VER=1 ULEN UNAME PLEN PASSWD``; response ``VER=1 STATUS`` where 0
is success and anything else failure (the server then closes).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dantex.protocol.errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "STATUS_FAILURE",
    "STATUS_SUCCESS",
    "UserPassRequest",
    "encode_request",
    "encode_response",
    "parse_request",
    "parse_response",
]

VERSION = 0x01
STATUS_SUCCESS = 0x00
STATUS_FAILURE = 0x01


@dataclass(frozen=True, slots=True)
class UserPassRequest:
    """What the client sent; the password never appears in ``repr()``."""

    username: bytes
    password: bytes = field(repr=False)


def parse_request(data: bytes | memoryview) -> tuple[UserPassRequest, int] | None:
    """Parse one RFC 1929 request at the start of ``data``.

    :returns: the request and the number of bytes it used, or ``None`` if
        ``data`` is still incomplete.
    :raises RemoteProtocolError: wrong sub-negotiation version or an empty
        user name, with ``reply=None``: no RFC 1928 §6 reply fits in the middle
        of the sub-negotiation, so the server closes (as after ``01 01``).
    """
    if not data:
        return None
    if data[0] != VERSION:
        raise RemoteProtocolError(
            f"username/password sub-negotiation version {data[0]} is not 1",
            reply=None,
        )
    if len(data) < 2:
        return None
    ulen = data[1]
    if len(data) < 2 + ulen + 1:
        return None
    plen = data[2 + ulen]
    end = 3 + ulen + plen
    if len(data) < end:
        return None
    if ulen == 0:
        raise RemoteProtocolError(
            "empty user name in username/password request", reply=None
        )
    return (
        UserPassRequest(bytes(data[2 : 2 + ulen]), bytes(data[3 + ulen : end])),
        end,
    )


def encode_request(username: bytes, password: bytes) -> bytes:
    """Client side: the RFC 1929 request.

    :raises LocalProtocolError: a field is empty (user name) or over 255 bytes.
    """
    if not 1 <= len(username) <= 255 or len(password) > 255:
        raise LocalProtocolError(
            "RFC 1929 user name must be 1-255 bytes, password 0-255"
        )
    return (
        bytes((VERSION, len(username))) + username + bytes((len(password),)) + password
    )


def encode_response(ok: bool) -> bytes:
    """Server side: ``01 00`` on success, ``01 01`` on failure."""
    return bytes((VERSION, STATUS_SUCCESS if ok else STATUS_FAILURE))


def parse_response(data: bytes | memoryview) -> tuple[bool, int] | None:
    """Client side: parse ``VER STATUS``; ``(ok, 2)`` or ``None`` if incomplete.

    :raises RemoteProtocolError: a version byte other than 1.
    """
    if len(data) < 2:
        return None
    if data[0] != VERSION:
        raise RemoteProtocolError(
            f"username/password response version {data[0]} is not 1"
        )
    return data[1] == STATUS_SUCCESS, 2
