"""Map the failures of an outbound connect to RFC 1928 §6 reply codes.

Follows danted 1.4's errno map: refused/reset 0x05, network unreachable 0x03,
host unreachable or unresolvable 0x04, timed out 0x06 (both the kernel's
ETIMEDOUT and our own ``timeout.connect``), anything else 0x01.  SOCKS 4
clients get 91 for every failure.
"""

from __future__ import annotations

import errno
import os
import socket

from twisted.internet import defer
from twisted.internet import error as terror

from dantex.protocol.socks5 import Reply

__all__ = ["ConnectFailed", "describe_failure"]

_ERRNO_REPLY = {
    errno.ECONNREFUSED: Reply.CONNECTION_REFUSED,
    errno.ECONNRESET: Reply.CONNECTION_REFUSED,
    errno.ENETUNREACH: Reply.NETWORK_UNREACHABLE,
    errno.ENETDOWN: Reply.NETWORK_UNREACHABLE,
    errno.EHOSTUNREACH: Reply.HOST_UNREACHABLE,
    errno.EHOSTDOWN: Reply.HOST_UNREACHABLE,
    errno.ETIMEDOUT: Reply.TTL_EXPIRED,
    errno.EAFNOSUPPORT: Reply.ADDRESS_TYPE_NOT_SUPPORTED,
    errno.EADDRNOTAVAIL: Reply.ADDRESS_TYPE_NOT_SUPPORTED,
}


class ConnectFailed(Exception):
    """An outbound connect failed; carries the reply to send and why."""

    def __init__(self, reply: int, reason: str) -> None:
        super().__init__(reason)
        self.reply = reply
        self.reason = reason


def describe_failure(exc: BaseException) -> ConnectFailed:
    """Turn a connect or resolution exception into a :class:`ConnectFailed`."""
    if isinstance(exc, ConnectFailed):
        return exc
    if isinstance(exc, socket.gaierror):
        return ConnectFailed(
            Reply.HOST_UNREACHABLE, f"could not resolve: {exc.strerror}"
        )
    if isinstance(exc, defer.TimeoutError | terror.TimeoutError | TimeoutError):
        return ConnectFailed(Reply.TTL_EXPIRED, "connect timed out")
    if isinstance(exc, OSError) and exc.errno is not None:
        reply = _ERRNO_REPLY.get(exc.errno, Reply.GENERAL_FAILURE)
        return ConnectFailed(reply, os.strerror(exc.errno))
    return ConnectFailed(Reply.GENERAL_FAILURE, str(exc) or type(exc).__name__)
