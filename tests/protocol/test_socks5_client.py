"""Client side of RFC 1928/1929, and the §7 UDP request header.

Byte strings are written from the RFC: the server's ``VER METHOD`` choice,
RFC 1929's ``VER STATUS``, the §6 reply, and ``RSV FRAG ATYP DST.ADDR
DST.PORT DATA`` for UDP.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dantex.protocol import (
    NEED_DATA,
    Address,
    AddressType,
    LocalProtocolError,
    RemoteProtocolError,
)
from dantex.protocol.socks5 import (
    AuthMethod,
    AuthResult,
    Command,
    MethodSelected,
    Reply,
    ReplyReceived,
    Request,
    Socks5ClientCodec,
    Socks5ServerCodec,
    UdpDatagram,
    decode_udp,
    encode_reply,
    encode_udp,
)
from tests.protocol._feed import (
    BOUNDED,
    MODES,
    SPLIT_MODES,
    TRAILER,
    Mode,
    expected_leftover,
    feed,
    feed_error,
)
from tests.protocol.test_address import addresses

V4, V6, NAME = AddressType.IPV4, AddressType.IPV6, AddressType.DOMAIN
SERVER = Address(V4, "192.0.2.1", 1080)


def greeted(methods: tuple[int, ...] = (0x00, 0x02)) -> Socks5ClientCodec:
    """A client codec that has sent its greeting."""
    codec = Socks5ClientCodec()
    codec.greeting(methods)
    return codec


def awaiting_reply(command: Command = Command.CONNECT) -> Socks5ClientCodec:
    """A client codec past method selection that has sent a request."""
    codec = greeted((0x00,))
    codec.feed(b"\x05\x00")
    assert codec.next_event() == MethodSelected(0)
    codec.request(command, Address(NAME, "example.com", 443))
    return codec


@pytest.mark.parametrize(
    ("methods", "wire"),
    [
        ((0x00,), b"\x05\x01\x00"),
        ((0x00, 0x02), b"\x05\x02\x00\x02"),
        ((0x02, 0x00, 0x80), b"\x05\x03\x02\x00\x80"),
    ],
)
def test_greeting(methods: tuple[int, ...], wire: bytes) -> None:
    """greeting() writes VER NMETHODS METHODS in the given order."""
    assert Socks5ClientCodec().greeting(methods) == wire


@pytest.mark.parametrize("methods", [(), tuple(range(256))])
def test_greeting_needs_1_to_255_methods(methods: tuple[int, ...]) -> None:
    """NMETHODS must be 1-255: other counts are our own mistake."""
    with pytest.raises(LocalProtocolError):
        Socks5ClientCodec().greeting(methods)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("wire", "method"),
    [(b"\x05\x00", 0x00), (b"\x05\x02", 0x02), (b"\x05\xff", 0xFF)],
)
def test_method_selected(wire: bytes, method: int, mode: Mode) -> None:
    """The server's VER METHOD gives MethodSelected; X'FF' is always accepted."""
    codec = greeted()
    assert feed(codec, wire, mode) == [MethodSelected(method)]
    assert codec.leftover() == expected_leftover(mode)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("wire", [b"\x04\x00", b"\x01\x00", b"\x05\x01", b"\x05\x80"])
def test_method_selected_errors(wire: bytes, mode: Mode) -> None:
    """A wrong VER, or a method we did not offer, is a protocol error."""
    feed_error(greeted(), wire, mode, RemoteProtocolError)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("wire", "ok"), [(b"\x01\x00", True), (b"\x01\x01", False), (b"\x01\x02", False)]
)
def test_userpass(wire: bytes, ok: bool, mode: Mode) -> None:
    """userpass() writes the RFC 1929 request; STATUS 0 alone means success."""
    codec = greeted()
    codec.feed(b"\x05\x02")
    codec.next_event()
    assert codec.userpass(b"alice", b"s3cret") == b"\x01\x05alice\x06s3cret"
    assert feed(codec, wire, mode) == [AuthResult(ok)]
    assert codec.leftover() == expected_leftover(mode)


@pytest.mark.parametrize("mode", MODES)
def test_userpass_bad_version(mode: Mode) -> None:
    """An RFC 1929 answer whose VER is not 1 is a protocol error."""
    codec = greeted()
    codec.feed(b"\x05\x02")
    codec.next_event()
    codec.userpass(b"alice", b"s3cret")
    feed_error(codec, b"\x05\x00", mode, RemoteProtocolError)


@pytest.mark.parametrize(
    ("command", "address", "wire"),
    [
        (
            Command.CONNECT,
            Address(V4, "192.0.2.1", 80),
            bytes.fromhex("05 01 00 01 c0000201 0050"),
        ),
        (
            Command.CONNECT,
            Address(NAME, "example.com", 443),
            b"\x05\x01\x00\x03\x0bexample.com\x01\xbb",
        ),
        (
            Command.BIND,
            Address(V6, "2001:db8::1", 21),
            bytes.fromhex("05 02 00 04 20010db8000000000000000000000001 0015"),
        ),
        (
            Command.UDP_ASSOCIATE,
            Address(V4, "0.0.0.0", 0),
            bytes.fromhex("05 03 00 01 00000000 0000"),
        ),
    ],
)
def test_request(command: Command, address: Address, wire: bytes) -> None:
    """request() writes VER CMD RSV ATYP DST.ADDR DST.PORT."""
    assert greeted().request(command, address) == wire


REPLIES: list[tuple[bytes, ReplyReceived]] = [
    (bytes.fromhex("05 00 00 01 c0000201 0438"), ReplyReceived(0, SERVER)),
    (
        bytes.fromhex("05 00 00 04 20010db8000000000000000000000002 0438"),
        ReplyReceived(0, Address(V6, "2001:db8::2", 1080)),
    ),
    (
        b"\x05\x00\x00\x03\x0dproxy.example\x04\x38",
        ReplyReceived(0, Address(NAME, "proxy.example", 1080)),
    ),
    (
        bytes.fromhex("05 05 00 01 00000000 0000"),
        ReplyReceived(Reply.CONNECTION_REFUSED, Address(V4, "0.0.0.0", 0)),
    ),
    (  # REP values beyond RFC 1928's table are passed on, not refused
        bytes.fromhex("05 09 00 01 00000000 0000"),
        ReplyReceived(0x09, Address(V4, "0.0.0.0", 0)),
    ),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("wire", "reply"), REPLIES)
def test_reply(wire: bytes, reply: ReplyReceived, mode: Mode) -> None:
    """A §6 reply gives ReplyReceived; bytes after it are the tunnel's."""
    codec = awaiting_reply()
    assert feed(codec, wire, mode) == [reply]
    assert codec.leftover() == expected_leftover(mode)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "wire",
    [
        bytes.fromhex("04 00 00 01 c0000201 0438"),
        bytes.fromhex("00 5a 00 01 c0000201 0438"),
        bytes.fromhex("05 00 00 07 c0000201 0438"),
        bytes.fromhex("05 00 00 03 00 0438"),
    ],
)
def test_reply_errors(wire: bytes, mode: Mode) -> None:
    """A reply with VER other than 5, an unknown ATYP or an empty name is refused."""
    feed_error(awaiting_reply(), wire, mode, RemoteProtocolError)


@pytest.mark.parametrize("mode", MODES)
def test_bind_two_replies(mode: Mode) -> None:
    """BIND: the second reply is read only after expect_reply()."""
    codec = awaiting_reply(Command.BIND)
    first = bytes.fromhex("05 00 00 01 c6336401 9c40")
    second = bytes.fromhex("05 00 00 01 cb007107 d431")
    assert feed(codec, first + second, mode) == [
        ReplyReceived(0, Address(V4, "198.51.100.1", 40000))
    ]
    codec.expect_reply()
    assert codec.next_event() == ReplyReceived(0, Address(V4, "203.0.113.7", 54321))
    assert codec.next_event() is NEED_DATA
    assert codec.leftover() == expected_leftover(mode)


def test_tunnel_data_with_the_reply() -> None:
    """Tunnel bytes arriving with the reply are not bounded by max_buffer."""
    codec = awaiting_reply()
    data = b"220 smtp.example ESMTP\r\n" * 100  # 2.4 KB, cap is 1 KiB
    codec.feed(bytes.fromhex("05 00 00 01 c0000201 0438") + data)
    assert codec.next_event() == ReplyReceived(0, SERVER)
    codec.feed(data)
    assert codec.leftover() == data + data


@pytest.mark.parametrize("mode", SPLIT_MODES)
def test_incomplete_reply_over_cap(mode: Mode) -> None:
    """More than max_buffer bytes of an unfinished reply are refused."""
    codec = Socks5ClientCodec(max_buffer=8)
    codec.greeting((0,))
    codec.feed(b"\x05\x00")
    codec.next_event()
    codec.request(Command.CONNECT, SERVER)
    feed_error(codec, b"\x05\x00\x00\x03\x20" + b"a" * 8, mode, RemoteProtocolError)


def test_client_and_server_agree() -> None:
    """Our client's bytes drive our server to the same request, and back."""
    client, server = Socks5ClientCodec(), Socks5ServerCodec()
    server.feed(client.greeting((AuthMethod.USERNAME_PASSWORD,)))
    server.next_event()
    client.feed(server.select_method(AuthMethod.USERNAME_PASSWORD))
    assert client.next_event() == MethodSelected(2)
    server.feed(client.userpass(b"alice", b"s3cret"))
    server.next_event()
    client.feed(server.auth_result(True))
    assert client.next_event() == AuthResult(True)
    target = Address(NAME, "example.com", 443)
    server.feed(client.request(Command.CONNECT, target))
    assert server.next_event() == Request(Command.CONNECT, target)
    client.feed(server.reply(Reply.SUCCEEDED, SERVER))
    assert client.next_event() == ReplyReceived(0, SERVER)


# --- §7 UDP ----------------------------------------------------------------

DATAGRAMS: list[tuple[bytes, UdpDatagram]] = [
    (
        bytes.fromhex("0000 00 01 c0000201 0035") + b"query",
        UdpDatagram(0, Address(V4, "192.0.2.1", 53), b"query"),
    ),
    (
        bytes.fromhex("0000 00 04 20010db8000000000000000000000053 0035"),
        UdpDatagram(0, Address(V6, "2001:db8::53", 53), b""),
    ),
    (
        b"\x00\x00\x00\x03\x0bexample.com\x00\x7b" + b"\x1b" + b"\x00" * 47,
        UdpDatagram(0, Address(NAME, "example.com", 123), b"\x1b" + b"\x00" * 47),
    ),
    (  # FRAG 1: first fragment of a sequence
        bytes.fromhex("0000 01 01 c0000201 0035") + b"part",
        UdpDatagram(1, Address(V4, "192.0.2.1", 53), b"part"),
    ),
    (  # FRAG high bit: end of a fragment sequence
        bytes.fromhex("0000 82 01 c0000201 0035") + b"end",
        UdpDatagram(0x82, Address(V4, "192.0.2.1", 53), b"end"),
    ),
]


@pytest.mark.parametrize(("wire", "datagram"), DATAGRAMS)
def test_udp_decode(wire: bytes, datagram: UdpDatagram) -> None:
    """decode_udp splits RSV FRAG ATYP DST.ADDR DST.PORT from the payload."""
    assert decode_udp(wire) == datagram


@pytest.mark.parametrize(("wire", "datagram"), DATAGRAMS)
def test_udp_encode(wire: bytes, datagram: UdpDatagram) -> None:
    """encode_udp writes RSV=0, FRAG and the address before the payload."""
    assert encode_udp(datagram.address, datagram.data, datagram.frag) == wire


@pytest.mark.parametrize(
    ("wire", "reply"),
    [
        (b"", 0x01),
        (bytes.fromhex("0000 00"), 0x01),
        (bytes.fromhex("0001 00 01 c0000201 0035"), 0x01),  # RSV not zero
        (bytes.fromhex("0100 00 01 c0000201 0035"), 0x01),
        (bytes.fromhex("0000 00 01 c00002"), 0x01),  # address cut short
        (bytes.fromhex("0000 00 04 20010db8"), 0x01),
        (bytes.fromhex("0000 00 02 c0000201 0035"), 0x08),
        (bytes.fromhex("0000 00 03 00 0035"), 0x04),
    ],
)
def test_udp_errors(wire: bytes, reply: int) -> None:
    """Short datagrams, a non-zero RSV, bad ATYP or empty names are refused."""
    with pytest.raises(RemoteProtocolError) as info:
        decode_udp(wire)
    assert info.value.reply == reply


@BOUNDED
@given(addresses, st.binary(max_size=64), st.integers(0, 255))
def test_udp_round_trip(address: Address, data: bytes, frag: int) -> None:
    """decode_udp(encode_udp(a, d, f)) gives back a, d and f."""
    assert decode_udp(encode_udp(address, data, frag)) == UdpDatagram(
        frag, address, data
    )


@BOUNDED
@given(addresses)
def test_reply_round_trip(address: Address) -> None:
    """Any bound address our server writes, our client reads back."""
    client = awaiting_reply()
    client.feed(encode_reply(Reply.SUCCEEDED, address) + TRAILER)
    assert client.next_event() == ReplyReceived(0, address)
    assert client.leftover() == TRAILER
