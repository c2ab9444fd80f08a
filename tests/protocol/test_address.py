"""RFC 1928 §5 addresses: ATYP 1 (IPv4), 3 (domain), 4 (IPv6) and the port.

Vectors are written from the RFC text: ``ATYP`` then 4 octets, a length octet
and that many octets of name, or 16 octets; then the port in network order.
"""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dantex.protocol import (
    UNSPECIFIED,
    Address,
    AddressType,
    RemoteProtocolError,
    decode_address,
)
from tests.protocol._feed import BOUNDED, MODES, TRAILER, Mode, prefixes_then_whole

V4 = AddressType.IPV4
V6 = AddressType.IPV6
NAME = AddressType.DOMAIN

# (wire bytes, decoded address)
VECTORS: list[tuple[bytes, Address]] = [
    (bytes.fromhex("01 c0000201 0050"), Address(V4, "192.0.2.1", 80)),
    (bytes.fromhex("01 00000000 0000"), Address(V4, "0.0.0.0", 0)),
    (bytes.fromhex("01 ffffffff ffff"), Address(V4, "255.255.255.255", 65535)),
    (
        bytes.fromhex("04 20010db8000000000000000000000001 01bb"),
        Address(V6, "2001:db8::1", 443),
    ),
    (
        bytes.fromhex("04 00000000000000000000000000000001 0016"),
        Address(V6, "::1", 22),
    ),
    (b"\x03\x0bexample.com\x01\xbb", Address(NAME, "example.com", 443)),
    (b"\x03\x01a\x00\x01", Address(NAME, "a", 1)),
    # RFC 1928 says nothing of the name's charset; we read UTF-8.
    (b"\x03\x0ab\xc3\xbccher.de\x00\x50", Address(NAME, "bücher.de", 80)),
    # A name that looks like an IP literal stays a name: ATYP decides.
    (b"\x03\x07" + b"1.2.3.4" + b"\x00\x50", Address(NAME, "1.2.3.4", 80)),
    (b"\x03\xff" + b"n" * 255 + b"\x00\x50", Address(NAME, "n" * 255, 80)),
]

# ATYP 4 carrying ::ffff:a.b.c.d is the IPv4 address it maps (RFC 4291 §2.5.5.2).
MAPPED = bytes.fromhex("04 00000000000000000000ffffc0000201 0050")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("wire", "address"), VECTORS)
def test_decode(wire: bytes, address: Address, mode: Mode) -> None:
    """Each RFC 1928 §5 form decodes to its Address and the offset past the port."""
    got = prefixes_then_whole(decode_address, wire, mode)
    assert got == (address, len(wire))


@pytest.mark.parametrize("mode", MODES)
def test_decode_ipv4_mapped_ipv6_is_ipv4(mode: Mode) -> None:
    """An IPv4-mapped IPv6 address decodes as the IPv4 address it maps."""
    got = prefixes_then_whole(decode_address, MAPPED, mode)
    assert got == (Address(V4, "192.0.2.1", 80), len(MAPPED))


@pytest.mark.parametrize(("wire", "address"), VECTORS)
def test_decode_at_offset(wire: bytes, address: Address) -> None:
    """``offset`` starts decoding inside a larger message and shifts the end."""
    assert decode_address(b"\x05\x01\x00" + wire + TRAILER, 3) == (
        address,
        3 + len(wire),
    )


@pytest.mark.parametrize(("wire", "address"), VECTORS)
def test_encode(wire: bytes, address: Address) -> None:
    """Address.encode() writes ATYP, address and port as RFC 1928 §5 does."""
    assert address.encode() == wire


@pytest.mark.parametrize(
    ("wire", "reply"),
    [
        (bytes.fromhex("00 c0000201 0050"), 0x08),
        (bytes.fromhex("02 c0000201 0050"), 0x08),
        (bytes.fromhex("05 c0000201 0050"), 0x08),
        (bytes.fromhex("ff"), 0x08),
        (bytes.fromhex("03 00 0050"), 0x04),  # empty name
        (bytes.fromhex("03 01 ff 0050"), 0x04),  # not UTF-8
        (bytes.fromhex("03 03 610062 0050"), 0x04),  # NUL inside the name
    ],
)
def test_decode_errors(wire: bytes, reply: int) -> None:
    """Unknown ATYP answers 0x08; an empty or undecodable name answers 0x04."""
    with pytest.raises(RemoteProtocolError) as info:
        decode_address(wire + TRAILER)
    assert info.value.reply == reply


@pytest.mark.parametrize(
    ("host", "port", "address"),
    [
        ("192.0.2.1", 80, Address(V4, "192.0.2.1", 80)),
        ("2001:DB8:0:0::1", 443, Address(V6, "2001:db8::1", 443)),
        ("[::1]", 22, Address(V6, "::1", 22)),
        ("::ffff:192.0.2.1", 80, Address(V4, "192.0.2.1", 80)),
        ("[::ffff:c000:201]", 80, Address(V4, "192.0.2.1", 80)),
        ("example.com", 0, Address(NAME, "example.com", 0)),
        ("n" * 255, 65535, Address(NAME, "n" * 255, 65535)),
    ],
)
def test_from_host(host: str, port: int, address: Address) -> None:
    """from_host classifies literals (brackets allowed, v4-mapped to v4) and names."""
    assert Address.from_host(host, port) == address


@pytest.mark.parametrize(
    ("host", "port"),
    [("", 80), ("n" * 256, 80), ("é" * 128, 80), ("example.com", -1), ("a", 65536)],
)
def test_from_host_rejects(host: str, port: int) -> None:
    """from_host refuses empty or over-255-byte names and ports outside 0-65535."""
    with pytest.raises(ValueError):
        Address.from_host(host, port)


@pytest.mark.parametrize(
    ("address", "text", "dante", "is_ip"),
    [
        (Address(V4, "192.0.2.1", 80), "192.0.2.1:80", "192.0.2.1.80", True),
        (Address(V6, "2001:db8::1", 443), "[2001:db8::1]:443", "2001:db8::1.443", True),
        (Address(NAME, "example.com", 21), "example.com:21", "example.com.21", False),
    ],
)
def test_text_forms(address: Address, text: str, dante: str, is_ip: bool) -> None:
    """str() brackets IPv6; dante() is Dante's host.port log form; is_ip."""
    assert str(address) == text
    assert address.dante() == dante
    assert address.is_ip is is_ip


def test_unspecified() -> None:
    """UNSPECIFIED is 0.0.0.0 port 0, Dante's "0.0.0.0.0"."""
    assert UNSPECIFIED.encode() == bytes.fromhex("01 00000000 0000")
    assert UNSPECIFIED.dante() == "0.0.0.0.0"


# --- properties ------------------------------------------------------------

ports = st.integers(min_value=0, max_value=0xFFFF)
names = st.text(
    st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=80
).filter(lambda s: len(s.encode()) <= 255)
ipv4 = st.builds(ipaddress.IPv4Address, st.integers(0, 2**32 - 1))
ipv6 = st.builds(ipaddress.IPv6Address, st.integers(0, 2**128 - 1)).filter(
    lambda a: a.ipv4_mapped is None
)
addresses = st.one_of(
    st.builds(lambda ip, p: Address(V4, str(ip), p), ipv4, ports),
    st.builds(lambda ip, p: Address(V6, str(ip), p), ipv6, ports),
    st.builds(lambda name, p: Address(NAME, name, p), names, ports),
)


@BOUNDED
@given(addresses)
def test_round_trip(address: Address) -> None:
    """decode_address(encode(a)) gives back a, and the exact length."""
    wire = address.encode()
    assert decode_address(wire + TRAILER) == (address, len(wire))


@BOUNDED
@given(st.one_of(ipv4, ipv6), ports)
def test_from_host_round_trip(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int
) -> None:
    """from_host on an IP literal's text is stable through encode/decode."""
    address = Address.from_host(str(ip), port)
    assert decode_address(address.encode()) == (address, len(address.encode()))
