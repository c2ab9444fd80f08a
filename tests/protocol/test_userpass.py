"""RFC 1929 username/password sub-negotiation.

Request ``VER=1 ULEN UNAME PLEN PASSWD``, response ``VER=1 STATUS`` (0 is
success, any other value failure); vectors written from the RFC's layout.
"""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dantex.protocol import LocalProtocolError, RemoteProtocolError, userpass
from dantex.protocol.userpass import UserPassRequest
from tests.protocol._feed import BOUNDED, MODES, TRAILER, Mode, prefixes_then_whole

REQUESTS: list[tuple[bytes, UserPassRequest]] = [
    (b"\x01\x05alice\x06s3cret", UserPassRequest(b"alice", b"s3cret")),
    (b"\x01\x03bob\x00", UserPassRequest(b"bob", b"")),
    (b"\x01\x01\xff\x02\x00\x01", UserPassRequest(b"\xff", b"\x00\x01")),
    (
        b"\x01\xff" + b"u" * 255 + b"\xff" + b"p" * 255,
        UserPassRequest(b"u" * 255, b"p" * 255),
    ),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("wire", "request_"), REQUESTS)
def test_parse_request(wire: bytes, request_: UserPassRequest, mode: Mode) -> None:
    """parse_request returns the request and its length; prefixes are incomplete."""
    assert prefixes_then_whole(userpass.parse_request, wire, mode) == (
        request_,
        len(wire),
    )


@pytest.mark.parametrize(("wire", "request_"), REQUESTS)
def test_encode_request(wire: bytes, request_: UserPassRequest) -> None:
    """encode_request writes VER=1, ULEN, UNAME, PLEN, PASSWD."""
    assert userpass.encode_request(request_.username, request_.password) == wire


@pytest.mark.parametrize(
    "wire",
    [
        b"\x05",  # a SOCKS5 request where the sub-negotiation was due
        b"\x00\x01a\x00",
        b"\x02\x01a\x00",
        b"\x01\x00\x00",  # empty user name
        b"\x01\x00\x04pass",
    ],
)
def test_parse_request_errors(wire: bytes) -> None:
    """A version other than 1 or an empty name is refused, closing with no reply."""
    with pytest.raises(RemoteProtocolError) as info:
        userpass.parse_request(wire + TRAILER)
    assert info.value.reply is None


@pytest.mark.parametrize(
    ("username", "password"),
    [(b"", b"x"), (b"u" * 256, b"x"), (b"u", b"p" * 256)],
)
def test_encode_request_rejects(username: bytes, password: bytes) -> None:
    """encode_request refuses an empty or over-255-byte name, or a long password."""
    with pytest.raises(LocalProtocolError) as info:
        userpass.encode_request(username, password)
    assert b"p" * 10 not in str(info.value).encode()


@pytest.mark.parametrize(("ok", "wire"), [(True, b"\x01\x00"), (False, b"\x01\x01")])
def test_encode_response(ok: bool, wire: bytes) -> None:
    """encode_response: 01 00 on success, 01 01 on failure."""
    assert userpass.encode_response(ok) == wire


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("wire", "ok"),
    [(b"\x01\x00", True), (b"\x01\x01", False), (b"\x01\xff", False)],
)
def test_parse_response(wire: bytes, ok: bool, mode: Mode) -> None:
    """STATUS 0 is success and any other value failure; two bytes are used."""
    assert prefixes_then_whole(userpass.parse_response, wire, mode) == (ok, 2)


@pytest.mark.parametrize("wire", [b"\x05\x00", b"\x00\x00", b"\x02\x00"])
def test_parse_response_bad_version(wire: bytes) -> None:
    """A response whose VER is not 1 is a protocol error."""
    with pytest.raises(RemoteProtocolError):
        userpass.parse_response(wire)


def test_password_not_in_repr() -> None:
    """The password never appears in a UserPassRequest's repr()."""
    text = repr(UserPassRequest(b"alice", b"hunter2"))
    assert "alice" in text
    assert "hunter2" not in text


@BOUNDED
@given(st.binary(min_size=1, max_size=255), st.binary(max_size=255))
def test_round_trip(username: bytes, password: bytes) -> None:
    """parse_request(encode_request(u, p)) gives back u and p."""
    wire = userpass.encode_request(username, password)
    assert userpass.parse_request(wire + TRAILER) == (
        UserPassRequest(username, password),
        len(wire),
    )


@BOUNDED
@given(st.binary(max_size=600))
def test_arbitrary_bytes(data: bytes) -> None:
    """Any input parses, is incomplete, or raises RemoteProtocolError only."""
    with contextlib.suppress(RemoteProtocolError):
        userpass.parse_request(data)
