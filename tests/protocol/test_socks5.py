"""Server side of RFC 1928: method selection (§3), request (§4), reply (§6).

Every byte string is written from the RFC's tables: greeting ``VER NMETHODS
METHODS``, selection ``VER METHOD``, request ``VER CMD RSV ATYP DST.ADDR
DST.PORT``, reply ``VER REP RSV ATYP BND.ADDR BND.PORT``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

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
    Command,
    MethodsOffered,
    Reply,
    Request,
    Socks5ServerCodec,
    encode_reply,
)
from dantex.protocol.userpass import UserPassRequest
from tests.protocol._feed import (
    BOUNDED,
    MODES,
    SPLIT_MODES,
    Mode,
    expected_leftover,
    feed,
    feed_error,
)
from tests.protocol.test_address import addresses

V4, V6, NAME = AddressType.IPV4, AddressType.IPV6, AddressType.DOMAIN
CONNECT_V4 = bytes.fromhex("05 01 00 01 c0000201 0050")
CONNECT_TO = Request(Command.CONNECT, Address(V4, "192.0.2.1", 80))


def negotiated(method: AuthMethod = AuthMethod.NO_AUTH) -> Socks5ServerCodec:
    """A server codec past method selection (and RFC 1929, if ``method`` is 2)."""
    codec = Socks5ServerCodec()
    codec.feed(bytes((5, 1, method)))
    assert codec.next_event() == MethodsOffered((method,))
    codec.select_method(method)
    if method == AuthMethod.USERNAME_PASSWORD:
        codec.feed(b"\x01\x01u\x01p")
        assert isinstance(codec.next_event(), UserPassRequest)
        codec.auth_result(True)
    return codec


def requested(wire: bytes = CONNECT_V4) -> Socks5ServerCodec:
    """A server codec that has returned the request in ``wire``."""
    codec = negotiated()
    codec.feed(wire)
    assert isinstance(codec.next_event(), Request)
    return codec


# --- §3 method selection ---------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("wire", "methods"),
    [
        (b"\x05\x01\x00", (0x00,)),
        (b"\x05\x02\x00\x02", (0x00, 0x02)),
        (b"\x05\x03\x02\x01\x00", (0x02, 0x01, 0x00)),  # client's order kept
        (b"\x05\x01\x80", (0x80,)),  # X'80'-X'FE': private methods
        (b"\x05\xff" + bytes(range(255)), tuple(range(255))),
    ],
)
def test_greeting(wire: bytes, methods: tuple[int, ...], mode: Mode) -> None:
    """A greeting gives MethodsOffered in the client's order; the rest waits."""
    codec = Socks5ServerCodec()
    assert feed(codec, wire, mode) == [MethodsOffered(methods)]
    assert codec.leftover() == expected_leftover(mode)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "wire",
    [b"\x04\x01\x00", b"\x00", b"\x06\x01\x00", b"GET / HTTP/1.1\r\n", b"\x05\x00"],
)
def test_greeting_errors(wire: bytes, mode: Mode) -> None:
    """A version other than 5, or no methods at all, closes without a reply."""
    codec = Socks5ServerCodec()
    assert feed_error(codec, wire, mode, RemoteProtocolError).reply is None
    with pytest.raises(LocalProtocolError):
        codec.select_method(AuthMethod.NO_AUTH)


@pytest.mark.parametrize(
    ("method", "wire"),
    [
        (AuthMethod.NO_AUTH, b"\x05\x00"),
        (AuthMethod.USERNAME_PASSWORD, b"\x05\x02"),
        (AuthMethod.NO_ACCEPTABLE, b"\x05\xff"),
    ],
)
def test_select_method(method: AuthMethod, wire: bytes) -> None:
    """select_method answers VER METHOD."""
    codec = Socks5ServerCodec()
    codec.feed(b"\x05\x01\x00")
    codec.next_event()
    assert codec.select_method(method) == wire


def test_no_acceptable_method_ends_the_exchange() -> None:
    """After X'FF' the codec reads nothing more and cannot reply."""
    codec = Socks5ServerCodec()
    codec.feed(b"\x05\x01\x02")
    codec.next_event()
    codec.select_method(AuthMethod.NO_ACCEPTABLE)
    codec.feed(CONNECT_V4)
    assert codec.next_event() is NEED_DATA
    with pytest.raises(LocalProtocolError):
        codec.reply(Reply.GENERAL_FAILURE)


# --- RFC 1929 inside the codec ---------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_userpass_exchange(mode: Mode) -> None:
    """After method 2 the codec reads an RFC 1929 request, then the §4 request."""
    codec = Socks5ServerCodec()
    codec.feed(b"\x05\x01\x02")
    codec.next_event()
    codec.select_method(AuthMethod.USERNAME_PASSWORD)
    wire = b"\x01\x05alice\x06s3cret"
    assert feed(codec, wire, mode) == [UserPassRequest(b"alice", b"s3cret")]
    assert codec.leftover() == expected_leftover(mode)
    assert codec.auth_result(True) == b"\x01\x00"
    assert feed(codec, CONNECT_V4, "whole") == [CONNECT_TO]


def test_userpass_failure_closes() -> None:
    """auth_result(False) answers 01 01 and the codec reads no request."""
    codec = Socks5ServerCodec()
    codec.feed(b"\x05\x01\x02")
    codec.next_event()
    codec.select_method(AuthMethod.USERNAME_PASSWORD)
    codec.feed(b"\x01\x01u\x01p")
    codec.next_event()
    assert codec.auth_result(False) == b"\x01\x01"
    codec.feed(CONNECT_V4)
    assert codec.next_event() is NEED_DATA
    with pytest.raises(LocalProtocolError):
        codec.reply(Reply.GENERAL_FAILURE)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("wire", [b"\x05\x01\x00\x01", b"\x01\x00\x00"])
def test_userpass_errors(wire: bytes, mode: Mode) -> None:
    """A bad sub-negotiation closes with no reply, and the codec stays usable."""
    codec = Socks5ServerCodec()
    codec.feed(b"\x05\x01\x02")
    codec.next_event()
    codec.select_method(AuthMethod.USERNAME_PASSWORD)
    assert feed_error(codec, wire, mode, RemoteProtocolError).reply is None
    codec.feed(b"more")  # regression: the buffer was left exported (BufferError)
    assert codec.next_event() is NEED_DATA


# --- §4 requests -----------------------------------------------------------

REQUESTS: list[tuple[bytes, Request]] = [
    (CONNECT_V4, CONNECT_TO),
    (
        b"\x05\x01\x00\x03\x0bexample.com\x01\xbb",
        Request(Command.CONNECT, Address(NAME, "example.com", 443)),
    ),
    (
        bytes.fromhex("05 02 00 04 20010db8000000000000000000000001 0015"),
        Request(Command.BIND, Address(V6, "2001:db8::1", 21)),
    ),
    (
        bytes.fromhex("05 03 00 01 00000000 0000"),
        Request(Command.UDP_ASSOCIATE, Address(V4, "0.0.0.0", 0)),
    ),
    (  # IPv4-mapped IPv6 is the IPv4 address
        bytes.fromhex("05 01 00 04 00000000000000000000ffffc0000201 0050"),
        CONNECT_TO,
    ),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("wire", "request_"), REQUESTS)
def test_request(wire: bytes, request_: Request, mode: Mode) -> None:
    """Each command and ATYP gives its Request; later bytes are leftover()."""
    codec = negotiated()
    assert feed(codec, wire, mode) == [request_]
    assert codec.leftover() == expected_leftover(mode)


@pytest.mark.parametrize("mode", MODES)
def test_request_after_userpass(mode: Mode) -> None:
    """The request is read the same way after RFC 1929 succeeded."""
    codec = negotiated(AuthMethod.USERNAME_PASSWORD)
    assert feed(codec, CONNECT_V4, mode) == [CONNECT_TO]
    assert codec.leftover() == expected_leftover(mode)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("wire", "reply"),
    [
        (bytes.fromhex("05 04 00 01 c0000201 0050"), Reply.COMMAND_NOT_SUPPORTED),
        (bytes.fromhex("05 00 00 01 c0000201 0050"), Reply.COMMAND_NOT_SUPPORTED),
        (bytes.fromhex("05 ff 00 01 c0000201 0050"), Reply.COMMAND_NOT_SUPPORTED),
        (bytes.fromhex("05 01 00 02 c0000201 0050"), Reply.ADDRESS_TYPE_NOT_SUPPORTED),
        (bytes.fromhex("05 01 00 00 c0000201 0050"), Reply.ADDRESS_TYPE_NOT_SUPPORTED),
        (bytes.fromhex("05 01 00 03 00 0050"), Reply.HOST_UNREACHABLE),
        (bytes.fromhex("05 01 00 03 02 c328 0050"), Reply.HOST_UNREACHABLE),
    ],
)
def test_request_errors_with_reply(wire: bytes, reply: Reply, mode: Mode) -> None:
    """Unknown CMD answers 0x07, unknown ATYP 0x08, a bad name 0x04, via reply()."""
    codec = negotiated()
    assert feed_error(codec, wire, mode, RemoteProtocolError).reply == reply
    assert codec.reply(reply) == bytes((5, reply, 0, 1, 0, 0, 0, 0, 0, 0))
    with pytest.raises(LocalProtocolError):
        codec.reply(reply)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("wire", [bytes.fromhex("04 01 00 01 c0000201 0050"), b"\x01"])
def test_request_bad_version(wire: bytes, mode: Mode) -> None:
    """A request whose VER is not 5 closes without a reply."""
    codec = negotiated()
    assert feed_error(codec, wire, mode, RemoteProtocolError).reply is None
    with pytest.raises(LocalProtocolError):
        codec.reply(Reply.GENERAL_FAILURE)


# --- §6 replies ------------------------------------------------------------


@pytest.mark.parametrize(
    ("bound", "wire"),
    [
        (Address(V4, "192.0.2.1", 1080), bytes.fromhex("05 00 00 01 c0000201 0438")),
        (
            Address(V6, "2001:db8::2", 1080),
            bytes.fromhex("05 00 00 04 20010db8000000000000000000000002 0438"),
        ),
        (
            Address(NAME, "proxy.example", 1080),
            b"\x05\x00\x00\x03\x0dproxy.example\x04\x38",
        ),
    ],
)
def test_reply_encodes_bound_address(bound: Address, wire: bytes) -> None:
    """reply() writes VER REP RSV ATYP BND.ADDR BND.PORT for each ATYP."""
    assert requested().reply(Reply.SUCCEEDED, bound) == wire
    assert encode_reply(Reply.SUCCEEDED, bound) == wire


@pytest.mark.parametrize("code", list(Reply))
def test_reply_codes(code: Reply) -> None:
    """Every §6 REP value is written as is, with 0.0.0.0:0 when no address."""
    wire = bytes((5, code, 0, 1, 0, 0, 0, 0, 0, 0))
    assert encode_reply(code) == wire
    assert requested().reply(code) == wire


def test_bind_two_replies() -> None:
    """BIND: a non-final first reply, then the final one; no third."""
    codec = requested(bytes.fromhex("05 02 00 01 c0000201 0015"))
    first = codec.reply(
        Reply.SUCCEEDED, Address(V4, "198.51.100.1", 40000), final=False
    )
    assert first == bytes.fromhex("05 00 00 01 c6336401 9c40")
    assert codec.next_event() is NEED_DATA
    second = codec.reply(Reply.SUCCEEDED, Address(V4, "192.0.2.1", 20))
    assert second == bytes.fromhex("05 00 00 01 c0000201 0014")
    with pytest.raises(LocalProtocolError):
        codec.reply(Reply.SUCCEEDED)


def test_bind_second_reply_failure() -> None:
    """BIND's second reply may report failure; the codec is then closed."""
    codec = requested(bytes.fromhex("05 02 00 01 c0000201 0015"))
    codec.reply(Reply.SUCCEEDED, Address(V4, "198.51.100.1", 40000), final=False)
    assert codec.reply(Reply.TTL_EXPIRED) == bytes.fromhex("05 06 00 01 00000000 0000")
    with pytest.raises(LocalProtocolError):
        codec.reply(Reply.SUCCEEDED)


# --- misuse of state -------------------------------------------------------


def _greeted(methods: bytes = b"\x00\x02") -> Socks5ServerCodec:
    codec = Socks5ServerCodec()
    codec.feed(bytes((5, len(methods))) + methods)
    codec.next_event()
    return codec


def _replied(code: Reply) -> Socks5ServerCodec:
    codec = requested()
    codec.reply(code)
    return codec


MISUSE: list[tuple[str, Callable[[], object]]] = [
    ("select before greeting", lambda: Socks5ServerCodec().select_method(0)),
    ("select GSS-API", lambda: _greeted(b"\x01").select_method(AuthMethod.GSSAPI)),
    ("select private method", lambda: _greeted(b"\x80").select_method(0x80)),
    ("select twice", lambda: negotiated().select_method(0)),
    ("auth_result before greeting", lambda: Socks5ServerCodec().auth_result(True)),
    ("auth_result without 1929", lambda: negotiated().auth_result(True)),
    (
        "auth_result twice",
        lambda: negotiated(AuthMethod.USERNAME_PASSWORD).auth_result(True),
    ),
    ("reply before greeting", lambda: Socks5ServerCodec().reply(0)),
    ("reply while selecting", lambda: _greeted().reply(0)),
    ("reply before request", lambda: negotiated().reply(0)),
    ("reply after final", lambda: _replied(Reply.SUCCEEDED).reply(0)),
    ("reply after failure", lambda: _replied(Reply.NOT_ALLOWED).reply(1)),
]


@pytest.mark.parametrize("misuse", [m for _, m in MISUSE], ids=[i for i, _ in MISUSE])
def test_misuse_raises_local_error(misuse: Callable[[], object]) -> None:
    """Calling an answer method in the wrong state raises LocalProtocolError."""
    with pytest.raises(LocalProtocolError):
        misuse()


# --- buffering and leftover ------------------------------------------------


def test_pipelined_greeting_and_request() -> None:
    """Greeting and request in one read: the request waits for select_method()."""
    codec = Socks5ServerCodec()
    codec.feed(b"\x05\x01\x00" + CONNECT_V4 + b"GET /")
    assert codec.next_event() == MethodsOffered((0,))
    assert codec.next_event() is NEED_DATA
    codec.select_method(AuthMethod.NO_AUTH)
    assert codec.next_event() == CONNECT_TO
    assert codec.leftover() == b"GET /"


def test_optimistic_data_beyond_cap_is_kept() -> None:
    """Bytes pipelined after a complete request are not bounded by max_buffer."""
    codec = negotiated()
    data = bytes(range(256)) * 16  # 4 KiB of early tunnel data, cap is 1 KiB
    codec.feed(CONNECT_V4 + data)
    assert codec.next_event() == CONNECT_TO
    codec.feed(data)  # a further read while the session connects
    assert codec.leftover() == data + data


@pytest.mark.parametrize("mode", SPLIT_MODES)
def test_incomplete_request_over_cap(mode: Mode) -> None:
    """More than max_buffer bytes of an unfinished request answer 0x01."""
    codec = Socks5ServerCodec(max_buffer=16)
    codec.feed(b"\x05\x01\x00")
    codec.next_event()
    codec.select_method(AuthMethod.NO_AUTH)
    wire = b"\x05\x01\x00\x03\xff" + b"a" * 12  # 17 bytes, name not finished
    error = feed_error(codec, wire, mode, RemoteProtocolError)
    assert error.reply == Reply.GENERAL_FAILURE
    assert codec.reply(Reply.GENERAL_FAILURE)[:2] == b"\x05\x01"


@pytest.mark.parametrize("mode", SPLIT_MODES)
def test_incomplete_greeting_over_cap(mode: Mode) -> None:
    """An unfinished greeting over max_buffer closes without a reply."""
    codec = Socks5ServerCodec(max_buffer=4)
    error = feed_error(codec, b"\x05\x05\x00\x01\x02", mode, RemoteProtocolError)
    assert error.reply is None


def test_junk_while_selecting_over_cap() -> None:
    """Unread bytes beyond max_buffer while our answer is due close the session."""
    codec = Socks5ServerCodec()
    codec.feed(b"\x05\x01\x00")
    codec.next_event()
    codec.feed(b"x" * 1025)
    with pytest.raises(RemoteProtocolError) as info:
        codec.next_event()
    assert info.value.reply is None


# --- properties ------------------------------------------------------------


@BOUNDED
@given(st.sampled_from(Command), addresses)
def test_request_round_trip(command: Command, address: Address) -> None:
    """Bytes built from RFC 1928 §4 for any command and address decode back."""
    codec = negotiated()
    codec.feed(bytes((5, command, 0)) + address.encode())
    assert codec.next_event() == Request(command, address)


@BOUNDED
@given(st.binary(max_size=300), st.sampled_from([0x00, 0x02, 0xFF]))
def test_arbitrary_bytes(data: bytes, method: int) -> None:
    """Any input yields events or NEED_DATA, or raises RemoteProtocolError only."""
    codec = Socks5ServerCodec(max_buffer=128)
    with contextlib.suppress(RemoteProtocolError):
        for i in range(0, len(data), 7):
            codec.feed(data[i : i + 7])
            while (event := codec.next_event()) is not NEED_DATA:
                if isinstance(event, MethodsOffered):
                    codec.select_method(method)
                elif isinstance(event, UserPassRequest):
                    codec.auth_result(bool(method))
                else:
                    codec.reply(Reply.SUCCEEDED)


# --- whole messages (the setup path's shortcut) ------------------------------


def _general(codec: Socks5ServerCodec, data: bytes) -> object:
    """What feed() + next_event() make of ``data``: an event, NEED_DATA or the
    error's reply."""
    codec.feed(data)
    try:
        return codec.next_event()
    except RemoteProtocolError as e:
        return ("error", e.reply)


@pytest.mark.parametrize(
    "wire",
    [
        b"\x05\x01\x00",  # one method: NO AUTHENTICATION REQUIRED
        b"\x05\x02\x00\x02",  # and USERNAME/PASSWORD
        b"\x05\x01",  # METHODS missing
        b"\x05\x00",  # NMETHODS = 0
        b"\x05\x01\x00\x05\x01",  # a request pipelined after it
        b"\x04\x01\x00\x50",  # SOCKS 4
    ],
)
def test_whole_greeting_is_the_general_path_or_none(wire: bytes) -> None:
    """Exactly one greeting: the same event and state as feed + next_event;
    anything else: None and nothing consumed."""
    fast, slow = Socks5ServerCodec(), Socks5ServerCodec()
    event = fast.whole_greeting(wire)
    if event is None:
        assert wire not in (b"\x05\x01\x00", b"\x05\x02\x00\x02")
        assert _general(fast, wire) == _general(slow, wire)
        return
    assert event == _general(slow, wire)
    assert fast.select_method(0) == slow.select_method(0) == b"\x05\x00"


@pytest.mark.parametrize(
    ("wire", "taken"),
    [
        (b"\x05\x01\x00\x01\x7f\x00\x00\x01\x1f\x90", True),  # CONNECT 127.0.0.1:8080
        (b"\x05\x01\x00\x04" + bytes(15) + b"\x01\x00\x50", True),  # CONNECT [::1]:80
        (b"\x05\x01\x00\x03\x0bexample.com\x01\xbb", True),  # example.com:443
        (b"\x05\x02\x00\x01\x00\x00\x00\x00\x00\x00", True),  # BIND 0.0.0.0:0
        (b"\x05\x03\x00\x01\x00\x00\x00\x00\x00\x00", True),  # UDP ASSOCIATE
        (b"\x05\x01\x00\x01\x7f\x00\x00\x01\x1f", False),  # port cut short
        (b"\x05\x01\x00\x01\x7f\x00\x00\x01\x1f\x90GET", False),  # early data
        (b"\x05\x09\x00\x01\x7f\x00\x00\x01\x1f\x90", False),  # unknown CMD
        (b"\x05\x01\x00\x07\x7f\x00\x00\x01\x1f\x90", False),  # unknown ATYP
        (b"\x05\x01\x00\x03\x00\x00\x50", False),  # empty domain name
    ],
)
def test_whole_request_is_the_general_path_or_none(wire: bytes, taken: bool) -> None:
    """Exactly one request: the same event, leftover and reply as feed +
    next_event; anything else: None, and the general path still answers."""
    fast, slow = negotiated(), negotiated()
    event = fast.whole_request(wire)
    expected = _general(slow, wire)
    assert (event is not None) is taken
    if event is None:
        assert _general(fast, wire) == expected
        return
    assert event == expected
    assert fast.leftover() == slow.leftover() == b""
    assert fast.reply(Reply.SUCCEEDED) == slow.reply(Reply.SUCCEEDED)


@BOUNDED
@given(st.binary(max_size=40))
def test_whole_messages_never_differ_from_the_general_path(data: bytes) -> None:
    """For any bytes the shortcuts either decline or agree with feed +
    next_event."""
    fast, slow = Socks5ServerCodec(), Socks5ServerCodec()
    greeting = fast.whole_greeting(data)
    assert greeting is None or greeting == _general(slow, data)
    fast, slow = negotiated(), negotiated()
    request = fast.whole_request(data)
    assert request is None or request == _general(slow, data)
