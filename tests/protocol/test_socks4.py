"""SOCKS 4 (Ying-Da Lee, "SOCKS: A protocol for TCP proxy across firewalls")
and its 4A extension ("SOCKS 4A: A Simple Extension to SOCKS 4 Protocol").

Request ``VN=4 CD DSTPORT DSTIP USERID NULL``; CD 1 CONNECT, 2 BIND.  Reply
``VN=0 CD DSTPORT DSTIP``; CD 90 granted, 91 rejected or failed, 92 no identd,
93 user-id mismatch.  4A: DSTIP ``0.0.0.x`` with x non-zero means the domain
name follows the USERID's NULL, itself NULL-terminated.
"""

from __future__ import annotations

import contextlib

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
from dantex.protocol.socks4 import (
    Socks4ClientCodec,
    Socks4Command,
    Socks4Reply,
    Socks4ReplyReceived,
    Socks4Request,
    Socks4ServerCodec,
    encode_reply,
    encode_request,
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
from tests.protocol.test_address import ipv4, names, ports

V4, V6, NAME = AddressType.IPV4, AddressType.IPV6, AddressType.DOMAIN
CONNECT, BIND = Socks4Command.CONNECT, Socks4Command.BIND


def v4(host: str, port: int) -> Address:
    """An IPv4 address."""
    return Address(V4, host, port)


def name(host: str, port: int) -> Address:
    """A domain name address."""
    return Address(NAME, host, port)


REQUESTS: list[tuple[bytes, Socks4Request]] = [
    (
        bytes.fromhex("04 01 0050 c0000201 00"),
        Socks4Request(CONNECT, v4("192.0.2.1", 80), b"", False),
    ),
    (
        bytes.fromhex("04 01 0050 c0000201") + b"fred\x00",
        Socks4Request(CONNECT, v4("192.0.2.1", 80), b"fred", False),
    ),
    (
        bytes.fromhex("04 02 0015 c0000201") + b"bob\x00",
        Socks4Request(BIND, v4("192.0.2.1", 21), b"bob", False),
    ),
    (
        bytes.fromhex("04 01 ffff c0000201") + b"u" * 255 + b"\x00",
        Socks4Request(CONNECT, v4("192.0.2.1", 65535), b"u" * 255, False),
    ),
    (  # 4A: DSTIP 0.0.0.1, the name after the USERID
        bytes.fromhex("04 01 0050 00000001") + b"fred\x00example.com\x00",
        Socks4Request(CONNECT, name("example.com", 80), b"fred", True),
    ),
    (  # 4A with an empty USERID and x = 255
        bytes.fromhex("04 02 01bb 000000ff 00") + b"example.com\x00",
        Socks4Request(BIND, name("example.com", 443), b"", True),
    ),
    (
        bytes.fromhex("04 01 0050 00000007 00") + b"n" * 255 + b"\x00",
        Socks4Request(CONNECT, name("n" * 255, 80), b"", True),
    ),
    (  # 0.0.0.0 is not the 4A form: a plain SOCKS 4 request
        bytes.fromhex("04 01 0050 00000000 00"),
        Socks4Request(CONNECT, v4("0.0.0.0", 80), b"", False),
    ),
    (  # only 0.0.0.x is 4A; 0.0.1.1 is an ordinary address
        bytes.fromhex("04 01 0050 00000101 00"),
        Socks4Request(CONNECT, v4("0.0.1.1", 80), b"", False),
    ),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("wire", "request_"), REQUESTS)
def test_request(wire: bytes, request_: Socks4Request, mode: Mode) -> None:
    """Each SOCKS 4/4A request gives its event; later bytes are leftover()."""
    codec = Socks4ServerCodec()
    assert feed(codec, wire, mode) == [request_]
    assert codec.leftover() == expected_leftover(mode)


@pytest.mark.parametrize("x", [1, 2, 127, 255])
def test_4a_range(x: int) -> None:
    """Every DSTIP 0.0.0.1 to 0.0.0.255 announces a 4A name."""
    codec = Socks4ServerCodec()
    codec.feed(bytes((4, 1, 0, 80, 0, 0, 0, x, 0)) + b"example.com\x00")
    assert codec.next_event() == Socks4Request(
        CONNECT, name("example.com", 80), b"", True
    )


def test_0_0_0_0_leaves_a_name_as_leftover() -> None:
    """With DSTIP 0.0.0.0 bytes after the USERID are not read as a 4A name."""
    codec = Socks4ServerCodec()
    codec.feed(bytes.fromhex("04 01 0050 00000000 00") + b"example.com\x00")
    assert codec.next_event() == Socks4Request(CONNECT, v4("0.0.0.0", 80), b"", False)
    assert codec.leftover() == b"example.com\x00"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("wire", "reply"),
    [
        (bytes.fromhex("05 01 00"), None),
        (bytes.fromhex("00 01 0050 c0000201 00"), None),
        (b"GET / HTTP/1.1\r\n", None),
        (bytes.fromhex("04 03 0050 c0000201 00"), 0x07),  # unknown CD
        (bytes.fromhex("04 00 0050 c0000201 00"), 0x07),
        (bytes.fromhex("04 5a 0050 c0000201 00"), 0x07),
        (bytes.fromhex("04 01 0050 00000001 00 00"), 0x04),  # empty 4A name
        (bytes.fromhex("04 01 0050 00000001 00 ff00"), 0x04),  # name not UTF-8
        (bytes.fromhex("04 01 0050 c0000201") + b"u" * 256, 0x01),
        (bytes.fromhex("04 01 0050 00000001 00") + b"n" * 256, 0x01),
    ],
)
def test_request_errors(wire: bytes, reply: int | None, mode: Mode) -> None:
    """Wrong VN closes; bad CD, bad 4A names, over-255-byte fields are refused."""
    codec = Socks4ServerCodec()
    assert feed_error(codec, wire, mode, RemoteProtocolError).reply == reply
    if reply is None:
        with pytest.raises(LocalProtocolError):
            codec.reply(Socks4Reply.REJECTED)
    else:  # the session answers 91 through the codec, once
        assert codec.reply(Socks4Reply.REJECTED) == bytes.fromhex("00 5b 0000 00000000")
        with pytest.raises(LocalProtocolError):
            codec.reply(Socks4Reply.REJECTED)


@pytest.mark.parametrize("mode", SPLIT_MODES)
def test_incomplete_request_over_cap(mode: Mode) -> None:
    """More than max_buffer bytes of an unfinished request are refused."""
    codec = Socks4ServerCodec(max_buffer=12)
    wire = bytes.fromhex("04 01 0050 c0000201") + b"userid"  # 14 bytes, no NULL
    assert feed_error(codec, wire, mode, RemoteProtocolError).reply == 0x01


def test_optimistic_data_beyond_cap_is_kept() -> None:
    """Bytes pipelined after a complete request are not bounded by max_buffer."""
    codec = Socks4ServerCodec()
    data = b"\x16\x03\x01" + bytes(range(256)) * 8  # a 2 KB "TLS hello"
    codec.feed(bytes.fromhex("04 01 01bb c0000201 00") + data)
    assert isinstance(codec.next_event(), Socks4Request)
    codec.feed(data)
    assert codec.leftover() == data + data


REPLIES: list[tuple[int, Address | None, bytes]] = [
    (Socks4Reply.GRANTED, v4("192.0.2.1", 1080), bytes.fromhex("00 5a 0438 c0000201")),
    (Socks4Reply.GRANTED, None, bytes.fromhex("00 5a 0000 00000000")),
    (Socks4Reply.REJECTED, None, bytes.fromhex("00 5b 0000 00000000")),
    (Socks4Reply.NO_IDENTD, None, bytes.fromhex("00 5c 0000 00000000")),
    (Socks4Reply.IDENT_MISMATCH, None, bytes.fromhex("00 5d 0000 00000000")),
    # SOCKS 4 cannot carry an IPv6 or name: 0.0.0.0:0 ("use the server's IP")
    (
        Socks4Reply.GRANTED,
        Address(V6, "2001:db8::1", 1080),
        bytes.fromhex("00 5a 0000 00000000"),
    ),
    (
        Socks4Reply.GRANTED,
        name("proxy.example", 1080),
        bytes.fromhex("00 5a 0000 00000000"),
    ),
]


@pytest.mark.parametrize(("code", "bound", "wire"), REPLIES)
def test_reply(code: int, bound: Address | None, wire: bytes) -> None:
    """reply() writes VN=0 CD DSTPORT DSTIP."""
    assert encode_reply(code, bound) == wire
    codec = Socks4ServerCodec()
    codec.feed(bytes.fromhex("04 01 0050 c0000201 00"))
    codec.next_event()
    assert codec.reply(code, bound) == wire


def test_bind_two_replies() -> None:
    """BIND: a non-final first reply (bound socket), then the final one."""
    codec = Socks4ServerCodec()
    codec.feed(bytes.fromhex("04 02 0015 c0000201 00"))
    codec.next_event()
    first = codec.reply(Socks4Reply.GRANTED, v4("198.51.100.1", 40000), final=False)
    assert first == bytes.fromhex("00 5a 9c40 c6336401")
    assert codec.reply(Socks4Reply.GRANTED, v4("192.0.2.1", 20)) == bytes.fromhex(
        "00 5a 0014 c0000201"
    )
    with pytest.raises(LocalProtocolError):
        codec.reply(Socks4Reply.GRANTED)


def test_reply_before_request() -> None:
    """reply() before a complete request is our own mistake."""
    codec = Socks4ServerCodec()
    codec.feed(b"\x04\x01")
    assert codec.next_event() is NEED_DATA
    with pytest.raises(LocalProtocolError):
        codec.reply(Socks4Reply.REJECTED)


# --- client side -----------------------------------------------------------


@pytest.mark.parametrize(("wire", "request_"), REQUESTS[:7])
def test_encode_request(wire: bytes, request_: Socks4Request) -> None:
    """encode_request writes SOCKS 4 for IPv4 and 4A (DSTIP 0.0.0.1) for names."""
    got = encode_request(request_.command, request_.address, request_.userid)
    if request_.is_4a:  # we always announce 4A with 0.0.0.1
        wire = wire[:4] + b"\x00\x00\x00\x01" + wire[8:]
    assert got == wire


@pytest.mark.parametrize(
    ("address", "userid"),
    [
        (Address(V6, "2001:db8::1", 80), b""),
        (v4("192.0.2.1", 80), b"a\x00b"),
        (v4("192.0.2.1", 80), b"u" * 256),
        (name("n" * 256, 80), b""),
        (name("a\x00b", 80), b""),
    ],
)
def test_encode_request_rejects(address: Address, userid: bytes) -> None:
    """IPv6, a NUL in a field, or a field over 255 bytes cannot be sent."""
    with pytest.raises(LocalProtocolError):
        encode_request(CONNECT, address, userid)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("wire", "event"),
    [
        (
            bytes.fromhex("00 5a 0438 c0000201"),
            Socks4ReplyReceived(90, v4("192.0.2.1", 1080)),
        ),
        (
            bytes.fromhex("00 5b 0000 00000000"),
            Socks4ReplyReceived(91, v4("0.0.0.0", 0)),
        ),
        (
            bytes.fromhex("00 5c 0000 00000000"),
            Socks4ReplyReceived(92, v4("0.0.0.0", 0)),
        ),
        (
            bytes.fromhex("00 5d 0000 00000000"),
            Socks4ReplyReceived(93, v4("0.0.0.0", 0)),
        ),
    ],
)
def test_client_reply(wire: bytes, event: Socks4ReplyReceived, mode: Mode) -> None:
    """An 8-byte reply gives its CD and DSTIP:DSTPORT; the rest is the tunnel's."""
    codec = Socks4ClientCodec()
    assert feed(codec, wire, mode) == [event]
    assert codec.leftover() == expected_leftover(mode)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "wire", [bytes.fromhex("04 5a 0438 c0000201"), b"\x05\x00" * 4]
)
def test_client_reply_bad_vn(wire: bytes, mode: Mode) -> None:
    """A reply whose VN is not 0 is a protocol error."""
    feed_error(Socks4ClientCodec(), wire, mode, RemoteProtocolError)


@pytest.mark.parametrize("mode", MODES)
def test_client_bind_two_replies(mode: Mode) -> None:
    """BIND: the second reply is read only after expect_reply()."""
    codec = Socks4ClientCodec()
    first = bytes.fromhex("00 5a 9c40 c6336401")
    second = bytes.fromhex("00 5a d431 cb007107")
    assert feed(codec, first + second, mode) == [
        Socks4ReplyReceived(90, v4("198.51.100.1", 40000))
    ]
    codec.expect_reply()
    assert codec.next_event() == Socks4ReplyReceived(90, v4("203.0.113.7", 54321))
    assert codec.leftover() == expected_leftover(mode)


def test_client_tunnel_data_with_the_reply() -> None:
    """Tunnel bytes arriving with the reply are kept, however many."""
    codec = Socks4ClientCodec()
    data = b"SSH-2.0-OpenSSH_9.2\r\n" * 10
    codec.feed(bytes.fromhex("00 5a 0000 00000000") + data)
    assert codec.next_event() == Socks4ReplyReceived(90, v4("0.0.0.0", 0))
    assert codec.leftover() == data


# --- properties ------------------------------------------------------------

userids = st.binary(max_size=255).filter(lambda b: b"\x00" not in b)
socks4_names = names.filter(lambda s: "\x00" not in s)


@BOUNDED
@given(
    st.sampled_from(Socks4Command),
    st.one_of(
        st.builds(lambda ip, p: v4(str(ip), p), ipv4, ports).filter(
            lambda a: not a.host.startswith("0.0.0.") or a.host == "0.0.0.0"
        ),
        st.builds(name, socks4_names, ports),
    ),
    userids,
)
def test_request_round_trip(
    command: Socks4Command, address: Address, userid: bytes
) -> None:
    """encode_request then the server codec give back the same request."""
    codec = Socks4ServerCodec()
    codec.feed(encode_request(command, address, userid) + TRAILER)
    assert codec.next_event() == Socks4Request(
        command, address, userid, address.type is NAME
    )
    assert codec.leftover() == TRAILER


@BOUNDED
@given(st.binary(max_size=600))
def test_arbitrary_bytes(data: bytes) -> None:
    """Any input yields a request or NEED_DATA, or raises RemoteProtocolError only."""
    codec = Socks4ServerCodec(max_buffer=300)
    with contextlib.suppress(RemoteProtocolError):
        for i in range(0, len(data), 5):
            codec.feed(data[i : i + 5])
            while codec.next_event() is not NEED_DATA:
                codec.reply(Socks4Reply.GRANTED)
