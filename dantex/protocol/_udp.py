"""RFC 1928 §7: the header of UDP datagrams relayed through a SOCKS5 server.

Re-exported by :mod:`dantex.protocol.socks5`, which is where callers import it.
"""

from __future__ import annotations

from dataclasses import dataclass

from dantex.protocol.address import Address, decode_address
from dantex.protocol.errors import RemoteProtocolError

__all__ = ["UdpDatagram", "decode_udp", "encode_udp"]


@dataclass(frozen=True, slots=True)
class UdpDatagram:
    """A §7 UDP request header and its payload."""

    frag: int
    address: Address
    data: bytes


def encode_udp(address: Address, data: bytes, frag: int = 0) -> bytes:
    """``RSV(2) FRAG ATYP DST.ADDR DST.PORT DATA`` (§7)."""
    return b"\x00\x00" + bytes((frag,)) + address.encode() + data


def decode_udp(datagram: bytes) -> UdpDatagram:
    """Parse a §7 datagram.

    :raises RemoteProtocolError: truncated header, non-zero RSV or bad ATYP.
    """
    if len(datagram) < 4:
        raise RemoteProtocolError("truncated SOCKS UDP header")
    if datagram[0] or datagram[1]:
        raise RemoteProtocolError("non-zero RSV in SOCKS UDP header")
    parsed = decode_address(datagram, 3)
    if parsed is None:
        raise RemoteProtocolError("truncated address in SOCKS UDP header")
    address, end = parsed
    return UdpDatagram(datagram[2], address, datagram[end:])
