"""Identification Protocol, RFC 1413: the query and the reply line.

Vectors come from RFC 1413 §4 (``6191, 23``; ``6193, 23 : USERID : UNIX :
stjohns``; ``6195, 23 : ERROR : NO-USER``), its formal syntax (optional
``, <charset>``; ``X`` error tokens) and the exchange recorded against
oidentd 2.5 in the project's component notes (replies without spaces).
"""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dantex.protocol import NEED_DATA, LocalProtocolError, RemoteProtocolError
from dantex.protocol.ident import (
    IDENT_PORT,
    MAX_LINE,
    IdentClientCodec,
    IdentError,
    IdentResponse,
    IdentUserId,
    encode_query,
    parse_response,
)
from tests.protocol._feed import (
    BOUNDED,
    MODES,
    SPLIT_MODES,
    Mode,
    expected_leftover,
    feed,
    feed_error,
)


def test_well_known_port() -> None:
    """identd listens on TCP port 113 (RFC 1413 §2)."""
    assert IDENT_PORT == 113


@pytest.mark.parametrize(
    ("server_port", "client_port", "wire"),
    [
        # RFC 1413 §4: an inbound TELNET connection seen locally as 23, 6191
        # is asked about as 6191, 23: the queried host's port comes first.
        (6191, 23, b"6191, 23\r\n"),
        (56854, 21500, b"56854, 21500\r\n"),
        (1, 65535, b"1, 65535\r\n"),
    ],
)
def test_encode_query(server_port: int, client_port: int, wire: bytes) -> None:
    """The query is <port-on-server> , <port-on-client> CRLF."""
    assert encode_query(server_port, client_port) == wire
    assert IdentClientCodec(server_port, client_port).query() == wire


@pytest.mark.parametrize(("server_port", "client_port"), [(0, 23), (23, 0), (65536, 1)])
def test_encode_query_rejects_ports(server_port: int, client_port: int) -> None:
    """Ports outside 1-65535 are our own mistake."""
    with pytest.raises(LocalProtocolError):
        encode_query(server_port, client_port)
    with pytest.raises(LocalProtocolError):
        IdentClientCodec(server_port, client_port)


REPLIES: list[tuple[bytes, IdentResponse]] = [
    (
        b"6193, 23 : USERID : UNIX : stjohns\r\n",
        IdentResponse(6193, 23, IdentUserId("UNIX", None, "stjohns")),
    ),
    (
        b"6195, 23 : ERROR : NO-USER\r\n",
        IdentResponse(6195, 23, IdentError("NO-USER")),
    ),
    (  # oidentd: no white space at all
        b"56854,21500:USERID:UNIX:identuser\r\n",
        IdentResponse(56854, 21500, IdentUserId("UNIX", None, "identuser")),
    ),
    (
        b"56854,1:ERROR:NO-USER\r\n",
        IdentResponse(56854, 1, IdentError("NO-USER")),
    ),
    (
        b"\t 6193 ,\t23:USERID:OTHER , US-ASCII:4711 \r\n",
        IdentResponse(6193, 23, IdentUserId("OTHER", "US-ASCII", "4711")),
    ),
    (  # everything after the opsys colon is the user id, colons included
        b"6193, 23 : USERID : UNIX,UTF-8 : a:b c\r\n",
        IdentResponse(6193, 23, IdentUserId("UNIX", "UTF-8", "a:b c")),
    ),
    (
        b"6193,23:USERID:UNIX,UTF-8:j\xc3\xbcrgen\r\n",
        IdentResponse(6193, 23, IdentUserId("UNIX", "UTF-8", "jürgen")),
    ),
    (  # not UTF-8: read as ISO-8859-1, byte for byte
        b"6193,23:USERID:UNIX:j\xfcrgen\r\n",
        IdentResponse(6193, 23, IdentUserId("UNIX", None, "jürgen")),
    ),
    (
        b"6193,23:ERROR:INVALID-PORT\n",
        IdentResponse(6193, 23, IdentError("INVALID-PORT")),
    ),
    (
        b"6193,23:error:HIDDEN-USER\r\n",
        IdentResponse(6193, 23, IdentError("HIDDEN-USER")),
    ),
    (
        b"6193,23 : ERROR : UNKNOWN-ERROR\r\n",
        IdentResponse(6193, 23, IdentError("UNKNOWN-ERROR")),
    ),
    (
        b"6193,23:ERROR:X-RATE-LIMITED\r\n",
        IdentResponse(6193, 23, IdentError("X-RATE-LIMITED")),
    ),
    (
        b"6193,23:USERID:UNIX:" + b"u" * 512 + b"\r\n",
        IdentResponse(6193, 23, IdentUserId("UNIX", None, "u" * 512)),
    ),
]


@pytest.mark.parametrize(("wire", "response"), REPLIES)
def test_parse_response(wire: bytes, response: IdentResponse) -> None:
    """parse_response reads USERID and ERROR replies, with or without spaces."""
    assert parse_response(wire) == response
    assert parse_response(wire.rstrip(b"\r\n")) == response


@pytest.mark.parametrize(
    "wire",
    [
        b"",
        b"6193, 23\r\n",
        b"6193 23 : USERID : UNIX : x\r\n",
        b"6193, : USERID : UNIX : x\r\n",
        b"6193, 0 : USERID : UNIX : x\r\n",
        b"65536, 23 : USERID : UNIX : x\r\n",
        b"123456, 23 : USERID : UNIX : x\r\n",
        b"+6193, 23 : USERID : UNIX : x\r\n",
        b"6_193, 23 : USERID : UNIX : x\r\n",
        b"6193, 23 : USERID : UNIX\r\n",
        b"6193, 23 : USERID : UNIX :   \r\n",
        b"6193, 23 : USERID :  : x\r\n",
        b"6193, 23 : USERID : UNIX, : x\r\n",
        b"6193, 23 : USERID : UN IX : x\r\n",
        b"6193, 23 : ERROR\r\n",
        b"6193, 23 : ERROR :\r\n",
        b"6193, 23 : ERROR : NO USER\r\n",
        b"6193, 23 : OK : x\r\n",
        b"6193, 23 : USERID : UNIX : a\x00b\r\n",
        b"6193, 23 : USERID : UNIX : a\rb\r\n",
    ],
)
def test_parse_response_errors(wire: bytes) -> None:
    """Missing or malformed ports, types, tokens or user ids are refused."""
    with pytest.raises(RemoteProtocolError):
        parse_response(wire)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("wire", "response"), REPLIES)
def test_codec(wire: bytes, response: IdentResponse, mode: Mode) -> None:
    """The codec reads one reply line; bytes after it are leftover()."""
    codec = IdentClientCodec(response.server_port, response.client_port)
    assert feed(codec, wire, mode) == [response]
    assert codec.leftover() == expected_leftover(mode)


@pytest.mark.parametrize("mode", MODES)
def test_codec_refuses_other_port_pair(mode: Mode) -> None:
    """A reply for a port pair we did not ask about is refused."""
    codec = IdentClientCodec(56854, 21500)
    feed_error(codec, b"21500,56854:USERID:UNIX:root\r\n", mode, RemoteProtocolError)


def test_codec_reads_one_reply() -> None:
    """After the reply, further lines are left alone."""
    codec = IdentClientCodec(6193, 23)
    codec.feed(b"6193,23:ERROR:NO-USER\r\n6193,23:USERID:UNIX:root\r\n")
    assert codec.next_event() == IdentResponse(6193, 23, IdentError("NO-USER"))
    assert codec.next_event() is NEED_DATA
    assert codec.leftover() == b"6193,23:USERID:UNIX:root\r\n"


@pytest.mark.parametrize("mode", MODES)
def test_longest_line(mode: Mode) -> None:
    """A reply of exactly max_line bytes before CRLF is accepted."""
    head = b"6193,23:USERID:UNIX:"
    wire = head + b"u" * (MAX_LINE - len(head)) + b"\r\n"
    codec = IdentClientCodec(6193, 23)
    assert feed(codec, wire, mode) == [
        IdentResponse(6193, 23, IdentUserId("UNIX", None, "u" * (MAX_LINE - len(head))))
    ]


@pytest.mark.parametrize("mode", SPLIT_MODES)
@pytest.mark.parametrize(
    "wire",
    [
        b"6193,23:USERID:UNIX:" + b"u" * MAX_LINE,
        b"6193,23:USERID:UNIX:" + b"u" * (MAX_LINE - 19) + b"\r\n",
        b"6193,23:USERID:UNIX:" + b"u" * (MAX_LINE - 19) + b"\n",
    ],
)
def test_line_over_cap(wire: bytes, mode: Mode) -> None:
    """More than 1000 bytes without an end of line are refused (RFC 1413)."""
    feed_error(IdentClientCodec(6193, 23), wire, mode, RemoteProtocolError)


@BOUNDED
@given(
    st.integers(1, 65535),
    st.integers(1, 65535),
    st.text(st.characters(codec="ascii", categories=["L", "N", "P"]), min_size=1),
)
def test_round_trip_spaced(server_port: int, client_port: int, user: str) -> None:
    """Any port pair and user id come back, whatever the padding around tokens."""
    line = f" {server_port} ,{client_port} : USERID :UNIX , US-ASCII: {user}\r\n"
    assert parse_response(line.encode()) == IdentResponse(
        server_port, client_port, IdentUserId("UNIX", "US-ASCII", user.strip())
    )


@BOUNDED
@given(st.binary(max_size=1100))
def test_arbitrary_bytes(data: bytes) -> None:
    """Any input yields a reply or NEED_DATA, or raises RemoteProtocolError only."""
    codec = IdentClientCodec(6193, 23)
    with contextlib.suppress(RemoteProtocolError):
        for i in range(0, len(data), 50):
            codec.feed(data[i : i + 50])
            codec.next_event()
