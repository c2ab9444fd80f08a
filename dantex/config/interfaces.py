"""Network interfaces and their addresses, read from the kernel.

Dante decides at parse time whether a word in an address position names an
interface; addresses of ``external:`` interfaces are looked up per request.
Uses ``getifaddrs(3)`` through ctypes (no third-party dependency).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import socket
from functools import cache

__all__ = ["interface_addresses", "interface_exists"]


def interface_exists(name: str) -> bool:
    """Whether the kernel has a network interface called ``name``."""
    try:
        socket.if_nametoindex(name)
    except (OSError, ValueError, UnicodeError):
        return False
    return True


class _Sockaddr(ctypes.Structure):
    _fields_ = [("sa_family", ctypes.c_ushort), ("sa_data", ctypes.c_byte * 14)]


class _SockaddrIn(ctypes.Structure):
    _fields_ = [
        ("sin_family", ctypes.c_ushort),
        ("sin_port", ctypes.c_uint16),
        ("sin_addr", ctypes.c_byte * 4),
    ]


class _SockaddrIn6(ctypes.Structure):
    _fields_ = [
        ("sin6_family", ctypes.c_ushort),
        ("sin6_port", ctypes.c_uint16),
        ("sin6_flowinfo", ctypes.c_uint32),
        ("sin6_addr", ctypes.c_byte * 16),
        ("sin6_scope_id", ctypes.c_uint32),
    ]


class _Ifaddrs(ctypes.Structure):
    pass


_Ifaddrs._fields_ = [
    ("ifa_next", ctypes.POINTER(_Ifaddrs)),
    ("ifa_name", ctypes.c_char_p),
    ("ifa_flags", ctypes.c_uint),
    ("ifa_addr", ctypes.POINTER(_Sockaddr)),
    ("ifa_netmask", ctypes.POINTER(_Sockaddr)),
]


@cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def interface_addresses(name: str) -> list[tuple[int, str]]:
    """``(family, address)`` for every IPv4/IPv6 address on interface ``name``.

    IPv6 link-local addresses carry their ``%scope``.  Empty when the
    interface does not exist or has no address.
    """
    libc = _libc()
    head = ctypes.POINTER(_Ifaddrs)()
    if libc.getifaddrs(ctypes.byref(head)) != 0:
        return []
    out: list[tuple[int, str]] = []
    try:
        node = head
        while node:
            ifa = node.contents
            if ifa.ifa_name.decode() == name and ifa.ifa_addr:
                family = ifa.ifa_addr.contents.sa_family
                if family == socket.AF_INET:
                    sin = ctypes.cast(
                        ifa.ifa_addr, ctypes.POINTER(_SockaddrIn)
                    ).contents
                    out.append((family, socket.inet_ntop(family, bytes(sin.sin_addr))))
                elif family == socket.AF_INET6:
                    sin6 = ctypes.cast(
                        ifa.ifa_addr, ctypes.POINTER(_SockaddrIn6)
                    ).contents
                    text = socket.inet_ntop(family, bytes(sin6.sin6_addr))
                    if text.startswith("fe80") and sin6.sin6_scope_id:
                        text = f"{text}%{name}"
                    out.append((family, text))
            node = ifa.ifa_next
    finally:
        libc.freeifaddrs(head)
    return out
