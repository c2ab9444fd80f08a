"""Addresses as SOCKS carries them: RFC 1928 §5 (ATYP IPv4, domain, IPv6).

:class:`Address` is the one value type used across dantex for "a host and a
port": the codecs produce it, rules match it, logs print it.
"""

from __future__ import annotations

import ipaddress
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
            ip = ipaddress.ip_address(host)
        except ValueError:
            if not host or len(host.encode("utf-8", "surrogateescape")) > 255:
                raise ValueError(f"bad host name {host!r}") from None
            return cls(AddressType.DOMAIN, host, port)
        if ip.version == 4:
            return cls(AddressType.IPV4, str(ip), port)
        v6 = ip
        assert isinstance(v6, ipaddress.IPv6Address)
        if v6.ipv4_mapped is not None:
            # RFC 4291 §2.5.5.2: treat ::ffff:a.b.c.d as the IPv4 address it is.
            return cls(AddressType.IPV4, str(v6.ipv4_mapped), port)
        return cls(AddressType.IPV6, str(v6), port)

    @property
    def is_ip(self) -> bool:
        """True for IPv4 and IPv6 literals, False for domain names."""
        return self.type is not AddressType.DOMAIN

    def packed_host(self) -> bytes:
        """The address part of RFC 1928 §5 without ATYP and port."""
        if self.type is AddressType.IPV4:
            return ipaddress.IPv4Address(self.host).packed
        if self.type is AddressType.IPV6:
            return ipaddress.IPv6Address(self.host).packed
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
        host = str(ipaddress.IPv4Address(bytes(data[offset + 1 : end])))
        kind = AddressType.IPV4
    elif atyp == AddressType.IPV6:
        end = offset + 1 + 16
        if len(data) < end + 2:
            return None
        v6 = ipaddress.IPv6Address(bytes(data[offset + 1 : end]))
        if v6.ipv4_mapped is not None:
            host, kind = str(v6.ipv4_mapped), AddressType.IPV4
        else:
            host, kind = str(v6), AddressType.IPV6
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
