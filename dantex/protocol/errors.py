"""Errors raised by the sans-IO codecs in :mod:`dantex.protocol`.

A peer that sends something we cannot accept gets :class:`RemoteProtocolError`,
carrying the SOCKS5 reply code the server should answer with (``None`` when
the right answer is to close without a reply, e.g. an unknown version byte).
Misuse of a codec by our own code raises :class:`LocalProtocolError`.
"""

from __future__ import annotations

__all__ = ["LocalProtocolError", "ProtocolError", "RemoteProtocolError"]

#: RFC 1928 §6 "general SOCKS server failure"; spelled out here so that this
#: module does not import :mod:`dantex.protocol.socks5`.
_GENERAL_FAILURE = 0x01


class ProtocolError(Exception):
    """Base class of every codec error."""


class RemoteProtocolError(ProtocolError):
    """The peer broke the protocol.

    :param message: what was wrong, safe to log (never contains a password).
    :param reply: the RFC 1928 §6 reply code to answer with, or ``None`` to
        close without a reply.
    """

    def __init__(self, message: str, reply: int | None = _GENERAL_FAILURE) -> None:
        super().__init__(message)
        self.reply = reply


class LocalProtocolError(ProtocolError):
    """Our own code used a codec in a way its state does not allow."""
