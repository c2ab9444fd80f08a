"""HTTP CONNECT tunnels: RFC 9110 §9.3.6 in HTTP/1.1 message syntax (RFC 9112).

Client side: :func:`encode_connect_request` and :class:`HttpConnectClientCodec`
(reads the proxy's response head).  Server side: :class:`HttpConnectServerCodec`
(reads a CONNECT request head, writes the response).  After a 2xx response
both directions are a plain byte tunnel; :meth:`leftover` hands over what
followed the head.

Not implemented: methods other than CONNECT (a forward proxy's absolute-form
GET), request or response bodies (the bytes after a non-2xx head are the
caller's), trailers, HTTP/2 and HTTP/3 extended CONNECT, authentication
schemes other than Basic (RFC 7617).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum, auto

from dantex.protocol._buffer import NEED_DATA, ReceiveBuffer, _NeedData
from dantex.protocol._http import (
    Fields,
    HeadSyntaxError,
    HeadTooLargeError,
    encode_fields,
    is_token,
    parse_fields,
    split_head,
    take_head,
)
from dantex.protocol.address import Address, AddressType
from dantex.protocol.errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "MAX_HEAD",
    "HttpConnectClientCodec",
    "HttpConnectRequest",
    "HttpConnectServerCodec",
    "HttpRequestError",
    "HttpResponse",
    "encode_connect_request",
]

#: Default bound on a message head (start line and header section), bytes.
MAX_HEAD = 16 * 1024

#: RFC 9112 §4; the SP before an empty reason-phrase may be missing.
_STATUS_LINE = re.compile(rb"HTTP/(\d)\.\d ([1-9]\d\d)(?: ([^\x00-\x08\n-\x1f\x7f]*))?")
_VERSION = re.compile(rb"HTTP/(\d)\.\d")
#: RFC 3986 unreserved: the only reg-name characters we send or accept
#: (no pct-encoding, no sub-delims: neither names a DNS host).
_REG_NAME = frozenset(
    b"-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)


def _authority(address: Address) -> bytes:
    """``host:port`` for the request-target and Host (RFC 9112 §3.2.3)."""
    if address.type is AddressType.IPV6:
        return f"[{address.host}]:{address.port}".encode("ascii")
    host = address.host
    if address.type is AddressType.DOMAIN and not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise LocalProtocolError("host name cannot be IDNA-encoded") from None
    raw = host.encode("ascii")
    if not raw or not all(c in _REG_NAME for c in raw):
        raise LocalProtocolError(f"host name {host!r} cannot be sent in HTTP")
    return raw + b":" + str(address.port).encode("ascii")


def encode_connect_request(
    address: Address,
    *,
    headers: Sequence[tuple[str, str]] = (),
    basic_auth: tuple[bytes, bytes] | None = None,
) -> bytes:
    """A CONNECT request head: RFC 9110 §9.3.6, authority-form target.

    ``Host`` always repeats the target (RFC 9112 §3.2); ``basic_auth`` adds
    ``Proxy-Authorization: Basic`` (RFC 7617 §2, RFC 9110 §11.7.2).

    :param headers: more fields, sent after ``Host`` in this order.
    :raises LocalProtocolError: a host HTTP cannot carry, a ``Host`` field in
        ``headers``, ``Proxy-Authorization`` in ``headers`` as well as
        ``basic_auth``, a user-id containing ``:``, or a malformed field.
    """
    target = _authority(address)
    names = {name.lower() for name, _ in headers}
    if "host" in names:
        raise LocalProtocolError("Host is derived from the address; do not pass it")
    fields = encode_fields(headers)
    if basic_auth is not None:
        if "proxy-authorization" in names:
            raise LocalProtocolError("two Proxy-Authorization fields")
        user, password = basic_auth
        if b":" in user:
            raise LocalProtocolError("Basic user-id must not contain ':' (RFC 7617)")
        token = base64.b64encode(user + b":" + password)
        fields = b"Proxy-Authorization: Basic " + token + b"\r\n" + fields
    start = b"CONNECT %s HTTP/1.1\r\nHost: %s\r\n" % (target, target)
    return start + fields + b"\r\n"


# --- client side -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """A final response head.  Field names keep the proxy's case."""

    status: int
    reason: str
    headers: Fields


class HttpConnectClientCodec:
    """Reads the proxy's answer to a CONNECT request.  No I/O.

    Interim 1xx responses are skipped (RFC 9110 §15.2); the first final one
    is the event.  A 2xx opens the tunnel; after any other status the bytes
    in :meth:`leftover` start its body, which is the caller's to read.

    :param max_head: bound on each response head.
    """

    def __init__(self, *, max_head: int = MAX_HEAD) -> None:
        self._buf = ReceiveBuffer(max_head)
        self._max = max_head
        self._scanned = 0
        self._done = False

    def feed(self, data: bytes) -> None:
        """Add received bytes."""
        self._buf.feed(data, bounded=False)

    def next_event(self) -> HttpResponse | _NeedData:
        """The final response, once its head is complete, else NEED_DATA.

        :raises RemoteProtocolError: malformed head, a version other than
            HTTP/1.x, a 101, or a head longer than ``max_head``.
        """
        while not self._done:
            try:
                head = take_head(self._buf, self._scanned, self._max)
                if isinstance(head, int):
                    self._scanned = head
                    return NEED_DATA
                self._scanned = 0
                response = self._parse(head)
            except HeadSyntaxError as e:
                raise RemoteProtocolError(
                    f"bad response from HTTP proxy: {e}"
                ) from None
            if response.status >= 200:
                self._done = True
                return response
        return NEED_DATA

    @staticmethod
    def _parse(head: bytes) -> HttpResponse:
        lines = split_head(head)
        match = _STATUS_LINE.fullmatch(lines[0])
        if match is None:
            raise HeadSyntaxError("malformed status line")
        if match[1] != b"1":
            raise HeadSyntaxError(f"HTTP/{match[1].decode()}.x response to HTTP/1.1")
        status = int(match[2])
        if status == 101:
            raise HeadSyntaxError("101 Switching Protocols in answer to CONNECT")
        fields = parse_fields(lines[1:], unfold=True)
        return HttpResponse(status, (match[3] or b"").decode("latin-1"), fields)

    def leftover(self) -> bytes:
        """Bytes after the response head: the tunnel's, or a non-2xx body."""
        return self._buf.take_all()


# --- server side -----------------------------------------------------------


class HttpRequestError(RemoteProtocolError):
    """A request the server must refuse with HTTP ``status``.

    ``reply`` is ``None`` (no SOCKS reply fits); answer with
    ``codec.encode_response(e.status, ..., e.headers)``.

    :param status: 400, 405 (with ``Allow: CONNECT`` in ``headers``), 414,
        431 or 505.
    """

    def __init__(self, message: str, status: int, headers: Fields = ()) -> None:
        super().__init__(message, reply=None)
        self.status = status
        self.headers = headers


@dataclass(frozen=True, slots=True)
class HttpConnectRequest:
    """A CONNECT request.

    ``headers`` holds every field except ``Proxy-Authorization``; Basic
    credentials from it are in ``basic_auth`` (user-id, password), which
    ``repr()`` never shows.  Other schemes are dropped.
    """

    address: Address
    headers: Fields
    basic_auth: tuple[bytes, bytes] | None = field(default=None, repr=False)


class _State(Enum):
    AWAIT_REQUEST = auto()
    REQUESTED = auto()
    ERROR = auto()  # next_event() raised: one non-2xx answer, then closed
    DONE = auto()  # 2xx sent: the tunnel is open
    CLOSED = auto()


def _parse_target(target: bytes) -> Address:
    """RFC 9110 §9.3.6 authority-form ``uri-host:port``, port required."""
    host, colon, port = target.rpartition(b":")
    if not colon or not 1 <= len(port) <= 5 or not port.isdigit():
        raise HeadSyntaxError("CONNECT target must be host:port")
    if host.startswith(b"[") and host.endswith(b"]"):
        try:
            ipaddress.IPv6Address(host[1:-1].decode("ascii"))
        except ValueError:
            raise HeadSyntaxError("bad IPv6 literal in CONNECT target") from None
        if b"%" in host:  # RFC 6874 zone identifiers: not for a proxy
            raise HeadSyntaxError("zone identifier in CONNECT target")
    elif not host or not all(c in _REG_NAME for c in host):
        raise HeadSyntaxError("bad host in CONNECT target")
    try:
        return Address.from_host(host.decode("ascii"), int(port))
    except ValueError:
        raise HeadSyntaxError("bad host or port in CONNECT target") from None


def _basic_credentials(value: str) -> tuple[bytes, bytes] | None:
    """Decode ``Basic <token68>`` (RFC 7617 §2); None for other schemes."""
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(" "), validate=True)
    except (binascii.Error, ValueError):
        raise HeadSyntaxError("malformed Basic credentials") from None
    user, colon, password = decoded.partition(b":")
    if not colon:
        raise HeadSyntaxError("malformed Basic credentials")
    return user, password


class HttpConnectServerCodec:
    """Server side of HTTP CONNECT (RFC 9110 §9.3.6).  No I/O.

    A non-2xx answer to a well-formed request leaves the connection usable
    for another request (RFC 9112 §9.3: e.g. a retry after 407); callers
    that close instead send ``Connection: close``.

    :param max_head: bound on the request head.
    """

    def __init__(self, *, max_head: int = MAX_HEAD) -> None:
        self._buf = ReceiveBuffer(max_head)
        self._max = max_head
        self._scanned = 0
        self._state = _State.AWAIT_REQUEST

    def feed(self, data: bytes) -> None:
        """Add received bytes."""
        self._buf.feed(data, bounded=False)

    def next_event(self) -> HttpConnectRequest | _NeedData:
        """The request once its head is complete, else :data:`NEED_DATA`.

        Empty lines before the request line are skipped (RFC 9112 §2.2).

        :raises HttpRequestError: the status to answer with: 400 malformed,
            405 not CONNECT, 414/431 head over ``max_head``, 505 not HTTP/1.x.
        """
        if self._state is not _State.AWAIT_REQUEST:
            return NEED_DATA
        self._skip_empty_lines()
        try:
            head = take_head(self._buf, self._scanned, self._max)
            if isinstance(head, int):
                self._scanned = head
                return NEED_DATA
            self._scanned = 0
            request = self._parse(split_head(head))
        except HeadTooLargeError as e:
            self._state = _State.ERROR
            status = 431 if e.start_line_done else 414
            raise HttpRequestError(str(e), status) from None
        except HeadSyntaxError as e:
            self._state = _State.ERROR
            raise HttpRequestError(str(e), 400) from None
        except HttpRequestError:
            self._state = _State.ERROR
            raise
        self._state = _State.REQUESTED
        return request

    def _skip_empty_lines(self) -> None:
        while True:
            view = self._buf.view()
            lead = bytes(view[:2])
            view.release()
            if lead[:1] == b"\n":
                self._buf.consume(1)
            elif lead == b"\r\n":
                self._buf.consume(2)
            else:
                return
            self._scanned = 0

    @staticmethod
    def _parse(lines: list[bytes]) -> HttpConnectRequest:
        parts = lines[0].split(b" ")
        if len(parts) != 3 or not is_token(parts[0]):
            raise HeadSyntaxError("malformed request line")
        method, target, version = parts
        match = _VERSION.fullmatch(version)
        if match is None:
            raise HeadSyntaxError("malformed HTTP version")
        if match[1] != b"1":
            raise HttpRequestError(f"unsupported {version.decode()}", 505)
        if method != b"CONNECT":
            raise HttpRequestError(
                f"method {method.decode()} not supported", 405, (("Allow", "CONNECT"),)
            )
        address = _parse_target(target)
        fields = parse_fields(lines[1:], unfold=False)
        auth = [v for n, v in fields if n.lower() == "proxy-authorization"]
        if len(auth) > 1:
            raise HeadSyntaxError("more than one Proxy-Authorization field")
        credentials = _basic_credentials(auth[0]) if auth else None
        rest = tuple((n, v) for n, v in fields if n.lower() != "proxy-authorization")
        return HttpConnectRequest(address, rest, credentials)

    def encode_response(
        self, status: int, reason: str, headers: Sequence[tuple[str, str]] = ()
    ) -> bytes:
        """``HTTP/1.1 status reason``, the fields and the empty line.

        2xx opens the tunnel and may carry neither Content-Length nor
        Transfer-Encoding (RFC 9110 §9.3.6).  Other statuses get
        ``Content-Length: 0`` unless ``headers`` frame a body; they may also
        answer a failed or unfinished request, which closes the codec.

        :raises LocalProtocolError: no request to answer (2xx), already
            answered, a status outside 200-599, or bad reason or fields.
        """
        state, ok = self._state, 200 <= status < 300
        if not 200 <= status <= 599:
            raise LocalProtocolError(f"status {status} is not a final status")
        if state in (_State.DONE, _State.CLOSED) or (
            ok and state is not _State.REQUESTED
        ):
            raise LocalProtocolError(f"encode_response({status}) in {state.name}")
        raw_reason = reason.encode("latin-1", "replace")
        if re.search(rb"[\x00-\x08\x0a-\x1f\x7f]", raw_reason):
            raise LocalProtocolError("control character in reason phrase")
        names = {name.lower() for name, _ in headers}
        framed = bool(names & {"content-length", "transfer-encoding"})
        if ok and framed:
            raise LocalProtocolError("a 2xx answer to CONNECT has no content")
        fields = encode_fields(headers)
        if not ok and not framed:
            fields += b"Content-Length: 0\r\n"
        if ok:
            self._state = _State.DONE
        elif state is _State.REQUESTED:
            self._state = _State.AWAIT_REQUEST
        else:
            self._state = _State.CLOSED
        line = b"HTTP/1.1 %d %s\r\n" % (status, raw_reason)
        return line + fields + b"\r\n"

    def leftover(self) -> bytes:
        """Bytes after the request head: the first bytes for the tunnel."""
        return self._buf.take_all()
