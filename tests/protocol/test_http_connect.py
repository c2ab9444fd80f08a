"""HTTP CONNECT, server side: RFC 9110 §9.3.6 in RFC 9112 message syntax.

Requests are written from RFC 9112 §3 (``method SP request-target SP
HTTP-version CRLF``, authority-form target for CONNECT) and §5 (field lines);
credentials from RFC 7617 §2's own example (Aladdin / open sesame).
"""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dantex.protocol import NEED_DATA, Address, AddressType, LocalProtocolError
from dantex.protocol.errors import RemoteProtocolError
from dantex.protocol.http_connect import (
    HttpConnectRequest,
    HttpConnectServerCodec,
    HttpRequestError,
    encode_connect_request,
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
from tests.protocol.test_address import ipv4, ipv6, ports

V4, V6, NAME = AddressType.IPV4, AddressType.IPV6, AddressType.DOMAIN
ALADDIN = b"Proxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n"


def connect(target: bytes, *fields: bytes, version: bytes = b"HTTP/1.1") -> bytes:
    """A CONNECT request head with CRLF line ends."""
    lines = [b"CONNECT " + target + b" " + version, *fields]
    return b"".join(line + b"\r\n" for line in lines) + b"\r\n"


REQUESTS: list[tuple[bytes, HttpConnectRequest]] = [
    (  # RFC 9110 §9.3.6's example
        b"CONNECT server.example.com:80 HTTP/1.1\r\nHost: server.example.com\r\n\r\n",
        HttpConnectRequest(
            Address(NAME, "server.example.com", 80), (("Host", "server.example.com"),)
        ),
    ),
    (
        connect(b"192.0.2.1:443", b"Host: 192.0.2.1:443"),
        HttpConnectRequest(Address(V4, "192.0.2.1", 443), (("Host", "192.0.2.1:443"),)),
    ),
    (  # no Host: tolerated (Dante's own client omits it)
        connect(b"[2001:db8::1]:443"),
        HttpConnectRequest(Address(V6, "2001:db8::1", 443), ()),
    ),
    (
        connect(b"[::ffff:192.0.2.1]:22"),
        HttpConnectRequest(Address(V4, "192.0.2.1", 22), ()),
    ),
    (
        connect(b"example.com:0443", version=b"HTTP/1.0"),
        HttpConnectRequest(Address(NAME, "example.com", 443), ()),
    ),
    (  # RFC 9112 §2.2: bare LF ends a line; empty lines before the request
        b"\r\n\nCONNECT example.com:443 HTTP/1.1\nHost: example.com:443\n\n",
        HttpConnectRequest(
            Address(NAME, "example.com", 443), (("Host", "example.com:443"),)
        ),
    ),
    (  # OWS around a value is not part of it; names keep their case
        connect(b"example.com:443", b"user-agent:  curl/8.0 \t", b"X-Empty:"),
        HttpConnectRequest(
            Address(NAME, "example.com", 443),
            (("user-agent", "curl/8.0"), ("X-Empty", "")),
        ),
    ),
    (
        connect(b"example.com:443", b"Host: example.com:443", ALADDIN[:-2]),
        HttpConnectRequest(
            Address(NAME, "example.com", 443),
            (("Host", "example.com:443"),),
            (b"Aladdin", b"open sesame"),
        ),
    ),
    (  # scheme and field name are case-insensitive; the password may hold ':'
        connect(b"example.com:443", b"proxy-authorization: basic dXNlcjpwYTpzcw=="),
        HttpConnectRequest(Address(NAME, "example.com", 443), (), (b"user", b"pa:ss")),
    ),
    (  # an empty user-id and password are still Basic credentials
        connect(b"example.com:443", b"Proxy-Authorization: Basic Og=="),
        HttpConnectRequest(Address(NAME, "example.com", 443), (), (b"", b"")),
    ),
    (  # other schemes are dropped, never passed on as a field
        connect(b"example.com:443", b"Proxy-Authorization: Bearer abc.def"),
        HttpConnectRequest(Address(NAME, "example.com", 443), ()),
    ),
    (  # obs-text in a value survives as ISO-8859-1
        connect(b"example.com:443", b"X-Name: caf\xe9"),
        HttpConnectRequest(Address(NAME, "example.com", 443), (("X-Name", "café"),)),
    ),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("wire", "request_"), REQUESTS)
def test_request(wire: bytes, request_: HttpConnectRequest, mode: Mode) -> None:
    """A CONNECT head gives its request; bytes after it are leftover()."""
    codec = HttpConnectServerCodec()
    assert feed(codec, wire, mode) == [request_]
    assert codec.leftover() == expected_leftover(mode)


ERRORS: list[tuple[bytes, int]] = [
    (b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n", 405),
    (b"connect example.com:443 HTTP/1.1\r\n\r\n", 405),  # methods are case-sensitive
    (b"POST example.com:443 HTTP/1.1\r\n\r\n", 405),
    (connect(b"example.com:443", version=b"HTTP/2.0"), 505),
    (connect(b"example.com:443", version=b"HTTP/0.9"), 505),
    (connect(b"example.com"), 400),  # the port is required
    (connect(b"example.com:"), 400),
    (connect(b"example.com:65536"), 400),
    (connect(b"example.com:123456"), 400),
    (connect(b"example.com:-1"), 400),
    (connect(b":443"), 400),
    (connect(b"2001:db8::1:443"), 400),  # IPv6 must be bracketed
    (connect(b"[example.com]:443"), 400),
    (connect(b"[fe80::1%25eth0]:443"), 400),
    (connect(b"http://example.com:443/"), 400),
    (connect(b"user@example.com:443"), 400),
    (connect(b"exa mple.com:443"), 400),
    (connect(b"n" * 256 + b":443"), 400),
    (connect(b"example.com:443", version=b"FOO/1.1"), 400),
    (b"CONNECT  example.com:443 HTTP/1.1\r\n\r\n", 400),
    (b"CONNECT example.com:443 HTTP/1.1 x\r\n\r\n", 400),
    (b"\x05\x01\x00\r\n\r\n", 400),
    (connect(b"example.com:443", b"Host : example.com"), 400),  # RFC 9112 §5.1
    (connect(b"example.com:443", b"Host: a", b" folded"), 400),  # obs-fold
    (connect(b"example.com:443", b"no colon here"), 400),
    (connect(b"example.com:443", b"X-A: a\x00b"), 400),
    (connect(b"example.com:443", b"X-A: a\rb"), 400),
    (connect(b"example.com:443", b"Proxy-Authorization: Basic !!!"), 400),
    (connect(b"example.com:443", b"Proxy-Authorization: Basic bm9jb2xvbg=="), 400),
    (connect(b"example.com:443", ALADDIN[:-2], ALADDIN[:-2]), 400),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("wire", "status"), ERRORS)
def test_request_errors(wire: bytes, status: int, mode: Mode) -> None:
    """Bad requests raise HttpRequestError with the status to answer, once."""
    codec = HttpConnectServerCodec()
    error = feed_error(codec, wire, mode, HttpRequestError)
    assert (error.status, error.reply) == (status, None)
    assert "QWxhZGRp" not in str(error)
    assert ("Allow", "CONNECT") in error.headers if status == 405 else not error.headers
    assert codec.encode_response(error.status, "No").startswith(b"HTTP/1.1 %d" % status)
    with pytest.raises(LocalProtocolError):
        codec.encode_response(400, "Bad Request")


@pytest.mark.parametrize("mode", SPLIT_MODES)
@pytest.mark.parametrize(
    ("wire", "status"),
    [
        (connect(b"example.com:443", b"X-Pad: " + b"p" * 100), 431),
        (b"CONNECT " + b"a" * 200, 414),
        (b"CONNECT a:1 HTTP/1.1\r\n" + b"X: y\r\n" * 20, 431),
    ],
)
def test_head_over_cap(wire: bytes, status: int, mode: Mode) -> None:
    """A head over max_head answers 431, or 414 while the request line goes on."""
    codec = HttpConnectServerCodec(max_head=64)
    assert feed_error(codec, wire, mode, HttpRequestError).status == status


@pytest.mark.parametrize("mode", MODES)
def test_empty_lines_before_request_do_not_count(mode: Mode) -> None:
    """Empty lines before the request line are dropped, not held against the cap."""
    codec = HttpConnectServerCodec(max_head=64)
    wire = b"\r\n" * 50 + b"\n" * 50 + connect(b"a:1")
    assert feed(codec, wire, mode) == [HttpConnectRequest(Address(NAME, "a", 1), ())]
    assert codec.leftover() == expected_leftover(mode)


def test_head_over_default_cap_bytewise() -> None:
    """16 KiB of header fed a byte at a time is refused, without quadratic cost."""
    codec = HttpConnectServerCodec()
    wire = connect(b"example.com:443", *[b"X-Pad: " + b"p" * 60] * 300)
    assert feed_error(codec, wire, "bytewise", HttpRequestError).status == 431


def test_credentials_not_in_repr() -> None:
    """Neither the Basic user-id nor the password appears in the event's repr()."""
    codec = HttpConnectServerCodec()
    codec.feed(connect(b"example.com:443", ALADDIN[:-2]))
    event = codec.next_event()
    assert isinstance(event, HttpConnectRequest)
    assert event.basic_auth == (b"Aladdin", b"open sesame")
    assert "sesame" not in repr(event)
    assert "QWxhZGRp" not in repr(event)


# --- responses -------------------------------------------------------------


def requested() -> HttpConnectServerCodec:
    """A server codec holding one CONNECT request."""
    codec = HttpConnectServerCodec()
    codec.feed(connect(b"example.com:443"))
    assert isinstance(codec.next_event(), HttpConnectRequest)
    return codec


@pytest.mark.parametrize(
    ("status", "reason", "headers", "wire"),
    [
        (
            200,
            "Connection established",
            (),
            b"HTTP/1.1 200 Connection established\r\n\r\n",
        ),
        (
            200,
            "",
            (("Proxy-Agent", "dantex"),),
            b"HTTP/1.1 200 \r\nProxy-Agent: dantex\r\n\r\n",
        ),
        (
            407,
            "Proxy Authentication Required",
            (("Proxy-Authenticate", 'Basic realm="dantex"'),),
            b"HTTP/1.1 407 Proxy Authentication Required\r\n"
            b'Proxy-Authenticate: Basic realm="dantex"\r\n'
            b"Content-Length: 0\r\n\r\n",
        ),
        (
            502,
            "Bad Gateway",
            (("Content-Length", "5"),),
            b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 5\r\n\r\n",
        ),
        (
            504,
            "Gateway Timeout",
            (("Connection", "close"),),
            b"HTTP/1.1 504 Gateway Timeout\r\nConnection: close\r\n"
            b"Content-Length: 0\r\n\r\n",
        ),
    ],
)
def test_encode_response(
    status: int, reason: str, headers: tuple[tuple[str, str], ...], wire: bytes
) -> None:
    """Status line, fields, Content-Length: 0 on non-2xx unless framed, empty line."""
    assert requested().encode_response(status, reason, headers) == wire


def test_tunnel_opens_after_2xx() -> None:
    """After a 2xx nothing more is parsed and no second answer is allowed."""
    codec = requested()
    codec.encode_response(200, "OK")
    codec.feed(connect(b"other.example:443"))
    assert codec.next_event() is NEED_DATA
    assert codec.leftover() == connect(b"other.example:443")
    with pytest.raises(LocalProtocolError):
        codec.encode_response(502, "Bad Gateway")


def test_retry_after_407_on_the_same_connection() -> None:
    """A non-2xx answer to a good request readies the codec for the next one."""
    codec = requested()
    codec.encode_response(407, "Proxy Authentication Required")
    assert feed(codec, connect(b"example.com:443", ALADDIN[:-2]), "bytewise") == [
        HttpConnectRequest(
            Address(NAME, "example.com", 443), (), (b"Aladdin", b"open sesame")
        )
    ]


def test_answer_before_any_request() -> None:
    """A non-2xx (e.g. 408 on timeout) may answer an unfinished request, closing."""
    codec = HttpConnectServerCodec()
    codec.feed(b"CONN")
    with pytest.raises(LocalProtocolError):
        codec.encode_response(200, "OK")
    assert codec.encode_response(408, "Request Timeout").startswith(b"HTTP/1.1 408 ")
    codec.feed(b"ECT example.com:443 HTTP/1.1\r\n\r\n")
    assert codec.next_event() is NEED_DATA


@pytest.mark.parametrize(
    ("status", "reason", "headers"),
    [
        (200, "OK", (("Content-Length", "0"),)),  # RFC 9110 §9.3.6: MUST NOT
        (200, "OK", (("Transfer-Encoding", "chunked"),)),
        (100, "Continue", ()),
        (600, "Nope", ()),
        (403, "Forbidden\r\nX-Injected: 1", ()),
        (403, "Forbidden", (("X-A", "a\r\nX-Injected: 1"),)),
        (403, "Forbidden", (("Bad Name", "x"),)),
        (403, "Forbidden", (("X-A", " padded"),)),
        (403, "Forbidden", (("X-A", "snow☃"),)),
    ],
)
def test_encode_response_rejects(
    status: int, reason: str, headers: tuple[tuple[str, str], ...]
) -> None:
    """Framing on a 2xx, non-final statuses and injected CR/LF are refused."""
    with pytest.raises(LocalProtocolError):
        requested().encode_response(status, reason, headers)


# --- properties ------------------------------------------------------------

hosts = st.text(
    st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789-._~"), min_size=1, max_size=60
)
targets = st.one_of(
    st.builds(lambda ip, p: Address(V4, str(ip), p), ipv4, ports),
    st.builds(lambda ip, p: Address(V6, str(ip), p), ipv6, ports),
    st.builds(lambda h, p: Address.from_host(h, p), hosts, ports),
)
credentials = st.none() | st.tuples(
    st.binary(max_size=40).filter(lambda u: b":" not in u), st.binary(max_size=40)
)


@BOUNDED
@given(targets, credentials)
def test_round_trip(address: Address, basic_auth: tuple[bytes, bytes] | None) -> None:
    """encode_connect_request then the server codec give the same target and auth."""
    codec = HttpConnectServerCodec()
    codec.feed(encode_connect_request(address, basic_auth=basic_auth))
    event = codec.next_event()
    assert isinstance(event, HttpConnectRequest)
    assert (event.address, event.basic_auth) == (address, basic_auth)


@BOUNDED
@given(
    st.lists(
        st.sampled_from(
            [b"CONNECT ", b"a:1", b" HTTP/1.1", b"\r\n", b"\n", b"X: y", b"\r"]
        )
        | st.binary(max_size=8),
        max_size=30,
    )
)
def test_arbitrary_bytes(pieces: list[bytes]) -> None:
    """Any input yields events or NEED_DATA, or raises RemoteProtocolError only."""
    codec = HttpConnectServerCodec(max_head=128)
    with contextlib.suppress(RemoteProtocolError):
        for piece in pieces:
            codec.feed(piece)
            while codec.next_event() is not NEED_DATA:
                codec.encode_response(407, "Again")
