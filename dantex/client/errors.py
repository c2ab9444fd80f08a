"""Failures of the client endpoints: one hierarchy, each carrying what the proxy said.

Every error names the hop that failed (``proxy``: a description such as
``socks5 127.0.0.1:1080``, never with credentials) and, where the proxy was
asked to reach something, the ``target``.  Passwords never appear in
messages or reprs.
"""

from __future__ import annotations

from dantex.protocol.address import Address
from dantex.protocol.http_connect import HttpResponse

__all__ = [
    "HTTPProxyAuthenticationError",
    "HTTPProxyRefusedError",
    "NoAcceptableMethodError",
    "NoRouteError",
    "ProxyAuthenticationError",
    "ProxyClosedError",
    "ProxyConnectError",
    "ProxyError",
    "ProxyProtocolError",
    "ProxyRefusedError",
    "ProxyTimeoutError",
    "Socks4RefusedError",
    "Socks5RefusedError",
]

#: RFC 1928 §6 reply texts (Dante's wording where it has one).
SOCKS5_REPLY_TEXT = {
    0x01: "general SOCKS server failure",
    0x02: "connection not allowed by ruleset",
    0x03: "network unreachable",
    0x04: "host unreachable",
    0x05: "connection refused",
    0x06: "TTL expired",
    0x07: "command not supported",
    0x08: "address type not supported",
}
#: SOCKS 4 (Lee) CD values in replies.
SOCKS4_REPLY_TEXT = {
    91: "request rejected or failed",
    92: "rejected: the server cannot reach the client's identd",
    93: "rejected: identd reports a different user",
}


class ProxyError(Exception):
    """Base class: a proxy hop could not give us the connection asked for.

    :param proxy: which hop failed, e.g. ``"socks5 127.0.0.1:1080"``.
    :param target: what the hop was asked to reach, when it was asked.
    """

    def __init__(
        self, message: str, *, proxy: str, target: Address | None = None
    ) -> None:
        where = f"{proxy}" + (f" -> {target}" if target is not None else "")
        super().__init__(f"{where}: {message}")
        self.message = message
        self.proxy = proxy
        self.target = target


class ProxyConnectError(ProxyError):
    """The proxy itself could not be reached (the inner endpoint failed).

    ``reason`` is the inner failure's exception (e.g. ``ConnectionRefusedError``).
    """

    def __init__(self, reason: BaseException, *, proxy: str) -> None:
        super().__init__(f"could not connect to the proxy: {reason}", proxy=proxy)
        self.reason = reason


class ProxyRefusedError(ProxyError):
    """The proxy answered the request with a failure code.

    :param reply: the SOCKS 5 REP, SOCKS 4 CD or HTTP status.
    """

    def __init__(
        self, message: str, *, reply: int, proxy: str, target: Address | None
    ) -> None:
        super().__init__(message, proxy=proxy, target=target)
        self.reply = reply


class Socks5RefusedError(ProxyRefusedError):
    """RFC 1928 §6 REP other than 0 (``reply`` holds it)."""

    def __init__(self, reply: int, *, proxy: str, target: Address | None) -> None:
        text = SOCKS5_REPLY_TEXT.get(reply, "unassigned reply code")
        super().__init__(
            f"SOCKS5 reply {reply:#04x} ({text})",
            reply=reply,
            proxy=proxy,
            target=target,
        )


class Socks4RefusedError(ProxyRefusedError):
    """SOCKS 4 CD other than 90 (``reply`` holds it: 91, 92 or 93)."""

    def __init__(self, reply: int, *, proxy: str, target: Address | None) -> None:
        text = SOCKS4_REPLY_TEXT.get(reply, "unknown reply code")
        super().__init__(
            f"SOCKS4 reply {reply} ({text})", reply=reply, proxy=proxy, target=target
        )


class HTTPProxyRefusedError(ProxyRefusedError):
    """A non-2xx answer to CONNECT: ``status`` (= ``reply``), ``reason`` and
    ``headers`` as the proxy sent them."""

    def __init__(
        self, response: HttpResponse, *, proxy: str, target: Address | None
    ) -> None:
        super().__init__(
            f"HTTP {response.status} {response.reason}".rstrip(),
            reply=response.status,
            proxy=proxy,
            target=target,
        )
        self.status = response.status
        self.reason = response.reason
        self.headers = response.headers


class ProxyAuthenticationError(ProxyError):
    """The proxy refused our credentials (RFC 1929 status, HTTP 407/401), or
    wants credentials we do not have."""


class HTTPProxyAuthenticationError(ProxyAuthenticationError, HTTPProxyRefusedError):
    """HTTP 407 (or tinyproxy's 401 to wrong credentials)."""

    def __init__(
        self, response: HttpResponse, *, proxy: str, target: Address | None
    ) -> None:
        HTTPProxyRefusedError.__init__(self, response, proxy=proxy, target=target)


class NoAcceptableMethodError(ProxyAuthenticationError):
    """RFC 1928 §3: the server selected 0xFF, none of the methods we offered."""


class ProxyProtocolError(ProxyError):
    """The proxy's answer was malformed or not what the protocol allows."""


class ProxyClosedError(ProxyError):
    """The proxy closed the connection before the negotiation finished."""


class ProxyTimeoutError(ProxyError):
    """A timeout fired: ``phase`` is ``"connect"`` (reaching the proxy),
    ``"negotiate"`` (its answer) or ``"accept"`` (BIND's incoming
    connection); ``seconds`` is the limit."""

    def __init__(
        self,
        phase: str,
        seconds: float,
        *,
        proxy: str,
        target: Address | None = None,
    ) -> None:
        super().__init__(
            f"{phase} timed out after {seconds:g} s", proxy=proxy, target=target
        )
        self.phase = phase
        self.seconds = seconds


class NoRouteError(ProxyError):
    """No usable route (``socks.conf``) leads to the target: none matches,
    or every matching one failed and is skipped for now."""
