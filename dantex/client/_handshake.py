"""Client handshakes as sans-IO state machines over the :mod:`dantex.protocol` codecs.

Each handshake writes its first message from :meth:`start`, then turns the
proxy's bytes into more bytes to write and :class:`Replied` steps, raising a
:class:`~dantex.client.errors.ProxyError` subclass for every failure.  No I/O
and no Twisted: :mod:`dantex.client._negotiate` runs them on a transport.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from dantex.client.errors import (
    HTTPProxyAuthenticationError,
    HTTPProxyRefusedError,
    NoAcceptableMethodError,
    ProxyAuthenticationError,
    ProxyProtocolError,
    Socks4RefusedError,
    Socks5RefusedError,
)
from dantex.protocol import NEED_DATA
from dantex.protocol.address import Address
from dantex.protocol.errors import LocalProtocolError, RemoteProtocolError
from dantex.protocol.http_connect import (
    HttpConnectClientCodec,
    HttpResponse,
    encode_connect_request,
)
from dantex.protocol.socks4 import Socks4ClientCodec, Socks4Reply, Socks4ReplyReceived
from dantex.protocol.socks4 import encode_request as encode_socks4_request
from dantex.protocol.socks5 import (
    AuthMethod,
    AuthResult,
    Command,
    MethodSelected,
    Reply,
    ReplyReceived,
    Socks5ClientCodec,
)

__all__ = [
    "Handshake",
    "HttpConnectHandshake",
    "Replied",
    "Socks4Handshake",
    "Socks5Handshake",
    "UserPass",
]


@dataclass(frozen=True, slots=True)
class UserPass:
    """A user name and password (RFC 1929 for SOCKS 5, Basic for HTTP).

    The password never appears in ``repr()``.
    """

    username: str
    password: str = field(repr=False)

    def encoded(self) -> tuple[bytes, bytes]:
        """Both as UTF-8 (strings decoded with ``surrogateescape``, such as a
        SOCKS client's own credentials passed on, give back their bytes)."""
        return (
            self.username.encode("utf-8", "surrogateescape"),
            self.password.encode("utf-8", "surrogateescape"),
        )


@dataclass(frozen=True, slots=True)
class Replied:
    """The proxy granted a request.

    :ivar bound: BND.ADDR/BND.PORT (SOCKS), ``None`` for HTTP.
    :ivar final: ``False`` for BIND's first reply (the bound address); the
        stream starts after the final one.
    :ivar response: the HTTP response head (HTTP CONNECT only).
    """

    bound: Address | None
    final: bool = True
    response: HttpResponse | None = None


class Handshake(Protocol):
    """What :mod:`dantex.client._negotiate` needs of a handshake."""

    proxy: str
    target: Address

    def start(self) -> bytes:
        """The first bytes to send."""

    def feed(self, data: bytes) -> tuple[bytes, list[Replied]]:
        """Bytes to send in answer, and the replies completed by ``data``."""

    def leftover(self) -> bytes:
        """Bytes received after the final reply."""


def _malformed(e: RemoteProtocolError, proxy: str, target: Address) -> Exception:
    return ProxyProtocolError(str(e), proxy=proxy, target=target)


class Socks5Handshake:
    """RFC 1928 §3-§6 with RFC 1929 when ``credentials`` are given.

    :param command: CONNECT, BIND (two replies) or UDP ASSOCIATE.
    :raises ValueError: credentials RFC 1929 cannot carry (1-255 bytes of
        user name, at most 255 of password).
    """

    def __init__(
        self,
        proxy: str,
        target: Address,
        *,
        command: Command = Command.CONNECT,
        credentials: UserPass | None = None,
    ) -> None:
        self.proxy = proxy
        self.target = target
        self._command = command
        self._credentials = credentials
        self._codec = Socks5ClientCodec()
        self._replies = 0
        if credentials is not None:
            user, password = credentials.encoded()
            if not 1 <= len(user) <= 255 or len(password) > 255:
                raise ValueError(
                    "RFC 1929 needs a 1-255 byte user name and a password "
                    "of at most 255 bytes"
                )

    def start(self) -> bytes:
        """``05 NMETHODS METHODS``: 00, and 02 when we have credentials."""
        methods: tuple[int, ...] = (AuthMethod.NO_AUTH,)
        if self._credentials is not None:
            methods = (AuthMethod.NO_AUTH, AuthMethod.USERNAME_PASSWORD)
        return self._codec.greeting(methods)

    def feed(self, data: bytes) -> tuple[bytes, list[Replied]]:
        """Answer method selection and authentication; collect replies."""
        out = bytearray()
        steps: list[Replied] = []
        codec = self._codec
        codec.feed(data)
        while True:
            try:
                event = codec.next_event()
            except RemoteProtocolError as e:
                raise _malformed(e, self.proxy, self.target) from None
            if event is NEED_DATA:
                return bytes(out), steps
            if isinstance(event, MethodSelected):
                out += self._selected(event.method)
            elif isinstance(event, AuthResult):
                if not event.ok:
                    raise ProxyAuthenticationError(
                        "the proxy rejected our user name and password (RFC 1929)",
                        proxy=self.proxy,
                    )
                out += codec.request(self._command, self.target)
            elif isinstance(event, ReplyReceived):
                steps.append(self._replied(event))
                if steps[-1].final:
                    return bytes(out), steps

    def _selected(self, method: int) -> bytes:
        if method == AuthMethod.NO_ACCEPTABLE:
            offered = "none" if self._credentials is None else "none, username"
            raise NoAcceptableMethodError(
                f"no acceptable authentication method (we offered {offered})",
                proxy=self.proxy,
            )
        if method == AuthMethod.USERNAME_PASSWORD:
            assert self._credentials is not None  # the codec checks we offered it
            return self._codec.userpass(*self._credentials.encoded())
        return self._codec.request(self._command, self.target)

    def _replied(self, event: ReplyReceived) -> Replied:
        if event.code != Reply.SUCCEEDED:
            raise Socks5RefusedError(event.code, proxy=self.proxy, target=self.target)
        self._replies += 1
        if self._command == Command.BIND and self._replies == 1:
            self._codec.expect_reply()
            return Replied(event.bound, final=False)
        return Replied(event.bound)

    def leftover(self) -> bytes:
        """Bytes after the final reply."""
        return self._codec.leftover()


class Socks4Handshake:
    """SOCKS 4, or 4A when ``target`` is a host name (Lee; 4A's 0.0.0.x rule).

    :param bind: send BIND (two replies) instead of CONNECT.
    :raises ValueError: an IPv6 target, or a USERID or name SOCKS 4 cannot carry.
    """

    def __init__(
        self, proxy: str, target: Address, *, userid: bytes = b"", bind: bool = False
    ) -> None:
        self.proxy = proxy
        self.target = target
        self._bind = bind
        self._codec = Socks4ClientCodec()
        self._replies = 0
        try:
            self._request = encode_socks4_request(2 if bind else 1, target, userid)
        except LocalProtocolError as e:
            raise ValueError(str(e)) from None

    def start(self) -> bytes:
        """``VN=4 CD DSTPORT DSTIP USERID NUL [HOST NUL]``."""
        return self._request

    def feed(self, data: bytes) -> tuple[bytes, list[Replied]]:
        """Collect the 8-byte replies."""
        codec = self._codec
        codec.feed(data)
        steps: list[Replied] = []
        while True:
            try:
                event = codec.next_event()
            except RemoteProtocolError as e:
                raise _malformed(e, self.proxy, self.target) from None
            if not isinstance(event, Socks4ReplyReceived):
                return b"", steps
            if event.code != Socks4Reply.GRANTED:
                raise Socks4RefusedError(
                    event.code, proxy=self.proxy, target=self.target
                )
            self._replies += 1
            if self._bind and self._replies == 1:
                codec.expect_reply()
                steps.append(Replied(event.bound, final=False))
                continue
            steps.append(Replied(event.bound))
            return b"", steps

    def leftover(self) -> bytes:
        """Bytes after the final reply."""
        return self._codec.leftover()


class HttpConnectHandshake:
    """RFC 9110 §9.3.6 CONNECT with ``Host:`` and optional Basic credentials.

    :param headers: more request fields (e.g. ``User-Agent``).
    :raises ValueError: a target or field HTTP cannot carry, or a user name
        containing ``:`` (RFC 7617).
    """

    def __init__(
        self,
        proxy: str,
        target: Address,
        *,
        credentials: UserPass | None = None,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        self.proxy = proxy
        self.target = target
        self._codec = HttpConnectClientCodec()
        auth = credentials.encoded() if credentials is not None else None
        try:
            self._request = encode_connect_request(
                target, headers=headers, basic_auth=auth
            )
        except LocalProtocolError as e:
            raise ValueError(str(e)) from None

    def start(self) -> bytes:
        """The CONNECT request head."""
        return self._request

    def feed(self, data: bytes) -> tuple[bytes, list[Replied]]:
        """Wait for the final response head; 2xx opens the tunnel."""
        self._codec.feed(data)
        try:
            event = self._codec.next_event()
        except RemoteProtocolError as e:
            raise _malformed(e, self.proxy, self.target) from None
        if event is NEED_DATA:
            return b"", []
        assert isinstance(event, HttpResponse)
        if 200 <= event.status < 300:
            return b"", [Replied(None, response=event)]
        if event.status in (401, 407):
            raise HTTPProxyAuthenticationError(
                event, proxy=self.proxy, target=self.target
            )
        raise HTTPProxyRefusedError(event, proxy=self.proxy, target=self.target)

    def leftover(self) -> bytes:
        """Bytes after the 2xx head: the tunnel's first bytes."""
        return self._codec.leftover()
