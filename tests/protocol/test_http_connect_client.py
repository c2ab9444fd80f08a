"""HTTP CONNECT, client side: the request head and the proxy's response head.

Requests follow RFC 9110 §9.3.6 and RFC 9112 §3.2 (authority-form target,
``Host``); responses RFC 9112 §4 (``HTTP-version SP status-code SP
[reason-phrase]``) and §5; credentials RFC 7617 §2's example.
"""

from __future__ import annotations

import pytest

from dantex.protocol import NEED_DATA, Address, AddressType, LocalProtocolError
from dantex.protocol.errors import RemoteProtocolError
from dantex.protocol.http_connect import (
    HttpConnectClientCodec,
    HttpConnectRequest,
    HttpConnectServerCodec,
    HttpResponse,
    encode_connect_request,
)
from tests.protocol._feed import (
    MODES,
    SPLIT_MODES,
    TRAILER,
    Mode,
    expected_leftover,
    feed,
    feed_error,
)

V4, V6, NAME = AddressType.IPV4, AddressType.IPV6, AddressType.DOMAIN
EXAMPLE = Address(NAME, "example.com", 443)


@pytest.mark.parametrize(
    ("address", "kwargs", "wire"),
    [
        (
            EXAMPLE,
            {},
            b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
        ),
        (
            Address(V4, "192.0.2.1", 22),
            {},
            b"CONNECT 192.0.2.1:22 HTTP/1.1\r\nHost: 192.0.2.1:22\r\n\r\n",
        ),
        (
            Address(V6, "2001:db8::1", 443),
            {},
            b"CONNECT [2001:db8::1]:443 HTTP/1.1\r\nHost: [2001:db8::1]:443\r\n\r\n",
        ),
        (  # IDNA: the A-label form of the name goes on the wire
            Address(NAME, "bücher.example", 443),
            {},
            b"CONNECT xn--bcher-kva.example:443 HTTP/1.1\r\n"
            b"Host: xn--bcher-kva.example:443\r\n\r\n",
        ),
        (
            EXAMPLE,
            {"basic_auth": (b"Aladdin", b"open sesame")},
            b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n"
            b"Proxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n\r\n",
        ),
        (
            EXAMPLE,
            {
                "headers": [
                    ("User-Agent", "dantex"),
                    ("Proxy-Connection", "keep-alive"),
                ],
                "basic_auth": (b"u", b""),
            },
            b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n"
            b"Proxy-Authorization: Basic dTo=\r\n"
            b"User-Agent: dantex\r\nProxy-Connection: keep-alive\r\n\r\n",
        ),
        (  # a caller's own Proxy-Authorization (another scheme) is passed on
            EXAMPLE,
            {"headers": [("Proxy-Authorization", "Bearer abc")]},
            b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n"
            b"Proxy-Authorization: Bearer abc\r\n\r\n",
        ),
    ],
)
def test_encode_connect_request(
    address: Address, kwargs: dict[str, object], wire: bytes
) -> None:
    """CONNECT host:port HTTP/1.1, Host, optional Basic credentials, then fields."""
    assert encode_connect_request(address, **kwargs) == wire  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("address", "headers", "basic_auth"),
    [
        (EXAMPLE, [("Host", "elsewhere")], None),
        (EXAMPLE, [("host", "elsewhere")], None),
        (EXAMPLE, [("Proxy-Authorization", "Basic x")], (b"u", b"p")),
        (EXAMPLE, [], (b"us:er", b"secret-pw")),
        (EXAMPLE, [("X-A", "a\r\nX-Injected: 1")], None),
        (EXAMPLE, [("Bad Name", "x")], None),
        (EXAMPLE, [("", "x")], None),
        (Address(NAME, "exa mple.com", 443), [], None),
        (Address(NAME, "example.com/x", 443), [], None),
        (Address(NAME, "bü..example", 443), [], None),  # IDNA: empty label
    ],
)
def test_encode_connect_request_rejects(
    address: Address,
    headers: list[tuple[str, str]],
    basic_auth: tuple[bytes, bytes] | None,
) -> None:
    """Host overrides, duplicate credentials, injection and bad hosts are refused."""
    with pytest.raises(LocalProtocolError) as info:
        encode_connect_request(address, headers=headers, basic_auth=basic_auth)
    assert "secret-pw" not in str(info.value)


RESPONSES: list[tuple[bytes, HttpResponse]] = [
    (
        b"HTTP/1.1 200 Connection established\r\n\r\n",
        HttpResponse(200, "Connection established", ()),
    ),
    (
        b"HTTP/1.0 200 OK\r\nProxy-Agent: tinyproxy/1.11.1\r\n\r\n",
        HttpResponse(200, "OK", (("Proxy-Agent", "tinyproxy/1.11.1"),)),
    ),
    (
        b"HTTP/1.1 407 Proxy Authentication Required\r\n"
        b'Proxy-Authenticate: Basic realm="squid"\r\nContent-Length: 0\r\n\r\n',
        HttpResponse(
            407,
            "Proxy Authentication Required",
            (("Proxy-Authenticate", 'Basic realm="squid"'), ("Content-Length", "0")),
        ),
    ),
    (b"HTTP/1.1 200\r\n\r\n", HttpResponse(200, "", ())),  # reason is optional
    (b"HTTP/1.1 200 \r\n\r\n", HttpResponse(200, "", ())),
    (b"HTTP/1.1 200 OK\n\n", HttpResponse(200, "OK", ())),  # bare LF
    (b"HTTP/1.1 200 \xe9t\xe9\r\n\r\n", HttpResponse(200, "été", ())),  # obs-text
    (  # RFC 9112 §5.2: a user agent replaces obs-fold by SP
        b"HTTP/1.1 403 Forbidden\r\nX-Note: first\r\n  second\r\n\tthird\r\n\r\n",
        HttpResponse(403, "Forbidden", (("X-Note", "first second third"),)),
    ),
    (  # RFC 9110 §15.2: interim 1xx responses are skipped
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n"
        b"HTTP/1.1 200 OK\r\n\r\n",
        HttpResponse(200, "OK", ()),
    ),
    (
        b"HTTP/1.1 599 Odd\r\n\r\n",
        HttpResponse(599, "Odd", ()),
    ),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("wire", "response"), RESPONSES)
def test_response(wire: bytes, response: HttpResponse, mode: Mode) -> None:
    """A response head gives HttpResponse; bytes after the empty line are leftover."""
    codec = HttpConnectClientCodec()
    assert feed(codec, wire, mode) == [response]
    assert codec.leftover() == expected_leftover(mode)


@pytest.mark.parametrize("mode", MODES)
def test_error_body_is_leftover(mode: Mode) -> None:
    """The body of a non-2xx answer is left to the caller, through leftover()."""
    codec = HttpConnectClientCodec()
    wire = b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 5\r\n\r\nerror"
    assert feed(codec, wire, mode) == [
        HttpResponse(502, "Bad Gateway", (("Content-Length", "5"),))
    ]
    assert codec.leftover() == b"error" + expected_leftover(mode)


def test_tunnel_bytes_after_200_are_not_parsed() -> None:
    """After the final response, bytes that look like HTTP are the tunnel's."""
    codec = HttpConnectClientCodec()
    codec.feed(b"HTTP/1.1 200 OK\r\n\r\nHTTP/1.1 200 OK\r\n\r\n")
    assert codec.next_event() == HttpResponse(200, "OK", ())
    assert codec.next_event() is NEED_DATA
    assert codec.leftover() == b"HTTP/1.1 200 OK\r\n\r\n"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "wire",
    [
        b"HTTP/2 200\r\n\r\n",
        b"HTTP/2.0 200 OK\r\n\r\n",
        b"SSH-2.0-OpenSSH_9.2\r\n\r\n",
        b"\x05\x00\r\n\r\n",
        b"\r\nHTTP/1.1 200 OK\r\n\r\n",
        b"HTTP/1.1 20 OK\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 099 Low\r\n\r\n",
        b"HTTP/1.1 200 O\x00K\r\n\r\n",
        b"HTTP/1.1 200 OK\rX\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-A : b\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n folded-first\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-A: a\x7fb\r\n\r\n",
    ],
)
def test_response_errors(wire: bytes, mode: Mode) -> None:
    """Other versions, bad status lines, 101 and bad field lines are refused."""
    feed_error(HttpConnectClientCodec(), wire, mode, RemoteProtocolError)


@pytest.mark.parametrize("mode", SPLIT_MODES)
@pytest.mark.parametrize(
    "wire",
    [
        b"HTTP/1.1 200 OK\r\n" + b"X-Pad: padding\r\n" * 4,
        b"HTTP/1.1 200 " + b"O" * 80,
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 12,
    ],
)
def test_head_over_cap(wire: bytes, mode: Mode) -> None:
    """A response head longer than max_head is refused."""
    feed_error(HttpConnectClientCodec(max_head=64), wire, mode, RemoteProtocolError)


def test_client_and_server_agree() -> None:
    """Our request drives our server codec; its answer drives our client codec."""
    server, client = HttpConnectServerCodec(), HttpConnectClientCodec()
    server.feed(encode_connect_request(EXAMPLE, basic_auth=(b"Aladdin", b"x")))
    request = server.next_event()
    assert isinstance(request, HttpConnectRequest)
    assert (request.address, request.basic_auth) == (EXAMPLE, (b"Aladdin", b"x"))
    client.feed(server.encode_response(200, "Connection established") + TRAILER)
    assert client.next_event() == HttpResponse(200, "Connection established", ())
    assert client.leftover() == TRAILER
