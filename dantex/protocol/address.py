"""Addresses as SOCKS carries them: RFC 1928 §5 (ATYP IPv4, domain, IPv6).

:class:`Address` is the one value type used across dantex for "a host and a
port": the codecs produce it, rules match it, logs print it.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from dataclasses import dataclass
from enum import IntEnum

from dantex.protocol.errors import RemoteProtocolError

__all__ = [
    "UNSPECIFIED",
    "Address",
    "AddressType",
    "decode_address",
]

_PORT = struct.Struct("!H")
_AF_INET = socket.AF_INET
_AF_INET6 = socket.AF_INET6
_pton = socket.inet_pton
_ntop = socket.inet_ntop
#: RFC 4291 §2.5.5.2 IPv4-mapped prefix ::ffff:0:0/96
_MAPPED_PREFIX = b"\x00" * 10 + b"\xff\xff"
_ZERO12 = bytes(12)

#: RFC 1928 §6 reply codes used here (not imported from socks5 to keep the
#: dependency one-way).
_HOST_UNREACHABLE = 0x04
_ADDRESS_TYPE_NOT_SUPPORTED = 0x08


class AddressType(IntEnum):
    """ATYP values, RFC 1928 §4 and §5."""

    IPV4 = 0x01
    DOMAIN = 0x03
    IPV6 = 0x04


@dataclass(frozen=True, slots=True)
class Address:
    """A host (IP literal or domain name) and a port.

    ``host`` holds an IPv4 address in dotted-quad form, an IPv6 address in its
    compressed form (no brackets) or a domain name exactly as received.
    """

    type: AddressType
    host: str
    port: int

    @classmethod
    def from_host(cls, host: str, port: int) -> Address:
        """Classify ``host`` as IPv4, IPv6 (brackets allowed) or domain name.

        :raises ValueError: when ``port`` is outside 0-65535 or the name is
            longer than the 255 bytes RFC 1928 allows.
        """
        if not 0 <= port <= 0xFFFF:
            raise ValueError(f"port {port} out of range")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        try:
            return cls(AddressType.IPV4, _ntop(_AF_INET, _pton(_AF_INET, host)), port)
        except (OSError, ValueError):
            pass
        try:
            packed = _pton(_AF_INET6, host)
        except (OSError, ValueError):
            if not host or len(host.encode("utf-8", "surrogateescape")) > 255:
                raise ValueError(f"bad host name {host!r}") from None
            return cls(AddressType.DOMAIN, host, port)
        return _from_packed6(packed, port)

    @property
    def is_ip(self) -> bool:
        """True for IPv4 and IPv6 literals, False for domain names."""
        return self.type is not AddressType.DOMAIN

    def packed_host(self) -> bytes:
        """The address part of RFC 1928 §5 without ATYP and port."""
        if self.type is AddressType.IPV4:
            return _pton(_AF_INET, self.host)
        if self.type is AddressType.IPV6:
            return _pton(_AF_INET6, self.host)
        name = self.host.encode("utf-8", "surrogateescape")
        return bytes((len(name),)) + name

    def encode(self) -> bytes:
        """ATYP, address and port as RFC 1928 §4/§5/§6 put them on the wire."""
        return bytes((self.type,)) + self.packed_host() + _PORT.pack(self.port)

    def dante(self) -> str:
        """Dante's log form: ``host.port`` (``127.0.0.1.1080``, ``::1.80``)."""
        return f"{self.host}.{self.port}"

    def __str__(self) -> str:
        if self.type is AddressType.IPV6:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


def _from_packed6(packed: bytes, port: int) -> Address:
    """An IPv6 address from 16 bytes; IPv4-mapped ones become IPv4 (RFC 4291)."""
    head = packed[:12]
    if head == _MAPPED_PREFIX:
        return Address(AddressType.IPV4, _ntop(_AF_INET, packed[12:]), port)
    if head == _ZERO12:  # libc writes ::a.b.c.d here; RFC 5952 wants ::102:304
        return Address(AddressType.IPV6, str(ipaddress.IPv6Address(packed)), port)
    return Address(AddressType.IPV6, _ntop(_AF_INET6, packed), port)


#: Dante's "unknown address" in logs (``0.0.0.0.0``).
UNSPECIFIED = Address(AddressType.IPV4, "0.0.0.0", 0)


def decode_address(
    data: bytes | memoryview, offset: int = 0
) -> tuple[Address, int] | None:
    """Decode ATYP, address and port starting at ``offset``.

    RFC 1928 §5: the address length follows from ATYP (4 bytes, 16 bytes, or a
    length byte then that many bytes of name).

    :returns: the address and the offset just past the port, or ``None`` when
        ``data`` does not yet hold the whole address.
    :raises RemoteProtocolError: unknown ATYP (reply 0x08) or an empty or
        undecodable domain name (reply 0x04).
    """
    if len(data) <= offset:
        return None
    atyp = data[offset]
    if atyp == AddressType.IPV4:
        end = offset + 1 + 4
        if len(data) < end + 2:
            return None
        host = _ntop(_AF_INET, bytes(data[offset + 1 : end]))
        kind = AddressType.IPV4
    elif atyp == AddressType.IPV6:
        end = offset + 1 + 16
        if len(data) < end + 2:
            return None
        mapped = _from_packed6(bytes(data[offset + 1 : end]), 0)
        host, kind = mapped.host, mapped.type
    elif atyp == AddressType.DOMAIN:
        if len(data) < offset + 2:
            return None
        length = data[offset + 1]
        end = offset + 2 + length
        if len(data) < end + 2:
            return None
        if length == 0:
            raise RemoteProtocolError("empty domain name", reply=_HOST_UNREACHABLE)
        raw = bytes(data[offset + 2 : end])
        try:
            host = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise RemoteProtocolError(
                "domain name is not valid UTF-8", reply=_HOST_UNREACHABLE
            ) from None
        if "\x00" in host:
            raise RemoteProtocolError(
                "domain name contains NUL", reply=_HOST_UNREACHABLE
            )
        kind = AddressType.DOMAIN
    else:
        raise RemoteProtocolError(
            f"unknown address type {atyp}", reply=_ADDRESS_TYPE_NOT_SUPPORTED
        )
    (port,) = _PORT.unpack_from(data, end)
    return Address(kind, host, port), end + 2
