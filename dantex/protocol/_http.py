"""HTTP/1.1 message-head syntax shared by the CONNECT codecs (RFC 9112 §2-§5).

Parsing helpers raise :class:`HeadSyntaxError`; each codec turns it into its own
error (a plain :class:`RemoteProtocolError` for a response, an error carrying
status 400 for a request).  Encoding helpers raise
:class:`LocalProtocolError`: bad fields there are our own mistake.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from dantex.protocol._buffer import ReceiveBuffer
from dantex.protocol.errors import LocalProtocolError

__all__ = [
    "Fields",
    "HeadSyntaxError",
    "HeadTooLargeError",
    "encode_fields",
    "is_token",
    "parse_fields",
    "split_head",
    "take_head",
]

#: A field section: (name, value) pairs in the order received.
Fields = tuple[tuple[str, str], ...]

#: RFC 9110 §5.6.2 tchar.
_TCHAR = frozenset(
    b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)
#: RFC 9112 §2.2: a recipient MAY take a bare LF as the end of a line.
_HEAD_END = re.compile(rb"\n\r?\n")
_LF = re.compile(rb"\n")
#: RFC 9110 §5.5: field-vchar, SP, HTAB and obs-text; no other controls.
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


class HeadSyntaxError(ValueError):
    """The message head breaks RFC 9112 syntax; the text is safe to log."""


class HeadTooLargeError(HeadSyntaxError):
    """The head is longer than the codec's bound.

    :param start_line_done: whether the start line was complete (a server
        answers 431 then, 414 for an endless request line).
    """

    def __init__(self, message: str, *, start_line_done: bool) -> None:
        super().__init__(message)
        self.start_line_done = start_line_done


def is_token(data: bytes) -> bool:
    """RFC 9110 §5.6.2 ``token``: one or more tchar."""
    return bool(data) and all(c in _TCHAR for c in data)


def take_head(buf: ReceiveBuffer, scanned: int, max_head: int) -> bytes | int:
    """Remove one message head (through its empty line) from ``buf``.

    :param scanned: how far a previous call already searched, so that a head
        fed a byte at a time is not searched from the start again.
    :returns: the head's bytes, or the new ``scanned`` offset while the empty
        line has not arrived.
    :raises HeadTooLargeError: the head is, or is growing, longer than ``max_head``.
    """
    view = buf.view()
    try:
        found = _HEAD_END.search(view, max(0, scanned - 2))
        end = found.end() if found else -1
        if end < 0 and len(view) <= max_head:
            return len(view)
        if end < 0 or end > max_head:
            raise HeadTooLargeError(
                f"message head longer than {max_head} bytes",
                start_line_done=_LF.search(view, 0, max_head) is not None,
            )
    finally:
        view.release()
    return buf.consume(end)


def split_head(head: bytes) -> list[bytes]:
    """The head's lines without their CRLF or LF, and without the empty line.

    :raises HeadSyntaxError: a CR anywhere but right before a LF (RFC 9112 §2.2).
    """
    lines = head.split(b"\n")[:-2]
    out = [line[:-1] if line.endswith(b"\r") else line for line in lines]
    if any(b"\r" in line for line in out):
        raise HeadSyntaxError("bare CR in message head")
    return out


def parse_fields(lines: Sequence[bytes], *, unfold: bool) -> Fields:
    """Parse ``field-name ":" OWS field-value OWS`` lines (RFC 9112 §5).

    Values are decoded as ISO-8859-1, so obs-text survives byte for byte.

    :param unfold: replace obs-fold by SP (RFC 9112 §5.2, what a user agent
        does with a response); otherwise obs-fold is refused (a server may
        reject it with 400).
    :raises HeadSyntaxError: no colon, a name that is not a token (including
        whitespace before the colon, RFC 9112 §5.1), or a control character
        in a value (RFC 9110 §5.5).
    """
    fields: list[tuple[str, str]] = []
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            if not unfold or not fields:
                raise HeadSyntaxError("obs-fold line folding in header section")
            name, value = fields[-1]
            folded = line.strip(b" \t").decode("latin-1")
            fields[-1] = (name, f"{value} {folded}" if value else folded)
            continue
        raw_name, colon, raw_value = line.partition(b":")
        if not colon or not is_token(raw_name):
            raise HeadSyntaxError("malformed header field line")
        raw_value = raw_value.strip(b" \t")
        if _BAD_VALUE.search(raw_value):
            raise HeadSyntaxError(f"control character in {raw_name.decode()} field")
        fields.append((raw_name.decode("ascii"), raw_value.decode("latin-1")))
    return tuple(fields)


def encode_fields(fields: Sequence[tuple[str, str]]) -> bytes:
    """``name: value\\r\\n`` for each field.

    :raises LocalProtocolError: a name that is not a token, or a value with
        controls (CR, LF, NUL: header injection), surrounding whitespace, or
        characters outside ISO-8859-1.
    """
    out = bytearray()
    for name, value in fields:
        try:
            raw_name, raw_value = name.encode("ascii"), value.encode("latin-1")
        except UnicodeEncodeError:
            raise LocalProtocolError(f"header {name!r}: not encodable") from None
        if not is_token(raw_name):
            raise LocalProtocolError(f"header name {name!r} is not a token")
        if _BAD_VALUE.search(raw_value) or raw_value != raw_value.strip(b" \t"):
            raise LocalProtocolError(f"header {name}: value not allowed on the wire")
        out += raw_name + b": " + raw_value + b"\r\n"
    return bytes(out)
