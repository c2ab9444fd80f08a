"""Identification Protocol, RFC 1413: the querying side.

dantex asks the identd on a SOCKS client's host who owns the client's
connection.  RFC 1413 names the two ports from the queried host's point of
view: ``<port-on-server>`` is the port on the host running identd (the SOCKS
client's source port, i.e. our peer's port) and ``<port-on-client>`` the port
on the querying host (our own port, which the SOCKS client connected to).

Not implemented: the answering (identd) side; several queries on one
connection.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dantex.protocol._buffer import NEED_DATA, ReceiveBuffer, _NeedData
from dantex.protocol.errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "IDENT_PORT",
    "MAX_LINE",
    "IdentClientCodec",
    "IdentError",
    "IdentResponse",
    "IdentUserId",
    "encode_query",
    "parse_response",
]

#: RFC 1413 §2: identd listens on TCP port 113.
IDENT_PORT = 113
#: RFC 1413 "Notes on Syntax" 2: a client may give up after 1000 characters
#: without an end of line.
MAX_LINE = 1000

_PORT = re.compile(rb"[ \t]*([0-9]{1,5})[ \t]*")
_WS = b" \t"


@dataclass(frozen=True, slots=True)
class IdentUserId:
    """A ``USERID`` answer: operating system, character set and user id.

    ``charset`` is ``None`` when the answer named none (RFC 1413: US-ASCII).
    """

    opsys: str
    charset: str | None
    user_id: str


@dataclass(frozen=True, slots=True)
class IdentError:
    """An ``ERROR`` answer: ``INVALID-PORT``, ``NO-USER``, ``HIDDEN-USER``,
    ``UNKNOWN-ERROR`` or an ``X``-prefixed private code."""

    error: str


@dataclass(frozen=True, slots=True)
class IdentResponse:
    """One reply line: the port pair it echoes and the answer."""

    server_port: int
    client_port: int
    result: IdentUserId | IdentError


def _check_port(port: int) -> None:
    if not 1 <= port <= 0xFFFF:
        raise LocalProtocolError(f"port {port} is not 1-65535")


def encode_query(server_port: int, client_port: int) -> bytes:
    """The query ``<port-on-server> , <port-on-client>`` CRLF (RFC 1413 §4).

    :param server_port: the port on the queried host (the SOCKS client's own
        port, our peer's port).
    :param client_port: the port on our side of that connection.
    :raises LocalProtocolError: a port outside 1-65535.
    """
    _check_port(server_port)
    _check_port(client_port)
    return b"%d, %d\r\n" % (server_port, client_port)


def _parse_port(raw: bytes) -> int:
    match = _PORT.fullmatch(raw)
    if match is None or not 1 <= int(match[1]) <= 0xFFFF:
        raise RemoteProtocolError("ident reply with a malformed port pair")
    return int(match[1])


def _token(raw: bytes, what: str) -> str:
    """A token (RFC 1413 formal syntax), with white space around it dropped."""
    raw = raw.strip(_WS)
    if not raw or not raw.isascii() or any(c in _WS for c in raw):
        raise RemoteProtocolError(f"ident reply with a malformed {what}")
    return raw.decode("ascii")


def parse_response(line: bytes) -> IdentResponse:
    """Parse one reply line (RFC 1413 §4-§5), with or without its CRLF.

    White space around tokens is ignored, as RFC 1413's "Notes on Syntax"
    ask (oidentd sends none, other servers pad with spaces).  The RFC makes
    everything after the opsys field's colon the user id; we also strip
    spaces and tabs around it, since the RFC's own examples put a space
    there.  The user id is decoded as UTF-8, or ISO-8859-1 when not UTF-8.

    :raises RemoteProtocolError: not a well-formed USERID or ERROR reply.
    """
    if line.endswith(b"\n"):
        line = line[:-2] if line.endswith(b"\r\n") else line[:-1]
    if any(c in line for c in b"\x00\r\n"):
        raise RemoteProtocolError("ident reply with NUL, CR or LF inside")
    ports, colon, rest = line.partition(b":")
    first, comma, second = ports.partition(b",")
    if not colon or not comma:
        raise RemoteProtocolError("ident reply without a port pair")
    server_port, client_port = _parse_port(first), _parse_port(second)
    kind, colon, info = rest.partition(b":")
    kind_name = _token(kind, "reply type").upper()
    result: IdentUserId | IdentError
    if kind_name == "ERROR" and colon:
        result = IdentError(_token(info, "error type"))
    elif kind_name == "USERID" and colon:
        opsys_field, colon, raw_user = info.partition(b":")
        opsys, comma, charset = opsys_field.partition(b",")
        raw_user = raw_user.strip(_WS)
        if not colon or not raw_user:
            raise RemoteProtocolError("ident USERID reply without a user id")
        try:
            user_id = raw_user.decode("utf-8")
        except UnicodeDecodeError:
            user_id = raw_user.decode("latin-1")
        result = IdentUserId(
            _token(opsys, "opsys"),
            _token(charset, "charset") if comma else None,
            user_id,
        )
    else:
        raise RemoteProtocolError("ident reply is neither USERID nor ERROR")
    return IdentResponse(server_port, client_port, result)


class IdentClientCodec:
    """One RFC 1413 query and its reply line.  No I/O.

    Write :meth:`query`, feed what identd sends, and read one
    :class:`IdentResponse`.  A reply for another port pair is refused.

    :param server_port: the port on the queried host (see :func:`encode_query`).
    :param client_port: the port on our side.
    :param max_line: longest reply line accepted, without its end of line.
    """

    def __init__(
        self, server_port: int, client_port: int, *, max_line: int = MAX_LINE
    ) -> None:
        _check_port(server_port)
        _check_port(client_port)
        self._ports = (server_port, client_port)
        self._buf = ReceiveBuffer(max_line)
        self._max = max_line
        self._done = False

    def query(self) -> bytes:
        """The query line to send."""
        return encode_query(*self._ports)

    def feed(self, data: bytes) -> None:
        """Add received bytes."""
        self._buf.feed(data, bounded=False)

    def next_event(self) -> IdentResponse | _NeedData:
        """The reply once its line is complete, else :data:`NEED_DATA`.

        A connection closed before the end of line means ``UNKNOWN-ERROR``
        (RFC 1413 §5); that is the caller's to map.

        :raises RemoteProtocolError: a malformed reply, one for another port
            pair, or more than ``max_line`` bytes without an end of line.
        """
        if self._done:
            return NEED_DATA
        view = self._buf.view()
        try:
            head = bytes(view[: self._max + 2])  # a full line and its CRLF
        finally:
            view.release()
        end = head.find(b"\n")
        if end < 0 and len(head) <= self._max + 1:
            return NEED_DATA
        if end < 0 or len(head[:end].removesuffix(b"\r")) > self._max:
            raise RemoteProtocolError(f"ident reply longer than {self._max} bytes")
        response = parse_response(self._buf.consume(end + 1))
        if (response.server_port, response.client_port) != self._ports:
            raise RemoteProtocolError("ident reply is for another port pair")
        self._done = True
        return response

    def leftover(self) -> bytes:
        """Bytes after the reply line (identd should send none)."""
        return self._buf.take_all()
