"""HTTP CONNECT on the SOCKS port (``extension: httpconnect``).

When the configuration enables the extension, a client whose first byte is
neither 4 nor 5 is read as HTTP/1.1 (RFC 9110 §9.3.6).  The request goes
through the same steps as a SOCKS v5 CONNECT: the client-rule has already
passed, the method is chosen from the same ``socksmethod:`` list (a
``Proxy-Authorization: Basic`` field stands for RFC 1929 credentials and is
checked by the same backend), the socks-rules decide with ``command:
connect`` and ``proxyprotocol`` ``http``, and the connect, routes and relay
are the SOCKS ones.  Only the answers differ:

* 200 ``Connection established`` when the target is connected;
* 407 with ``Proxy-Authenticate: Basic`` when our methods need a password
  the client did not send, when the password is refused, or when a rule
  blocks a client that sent none while a password method was on offer
  (``socksmethod: username none`` with a rule for ``user: alice``);
* 403 when a rule blocks otherwise;
* 502 when the target refused or is unreachable, 504 when connecting timed
  out; 400/405/505 for requests we cannot read.

Every non-2xx answer carries ``Connection: close`` and ends the connection
(no retry on the same connection).

Not implemented: methods other than CONNECT (no plain forward proxying),
authentication schemes other than Basic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dantex.auth._base import SocksCredentials, SocksUser, printable
from dantex.auth.methods import NO_AUTH, USERNAME_PASSWORD, choose_method
from dantex.protocol._buffer import _NeedData
from dantex.protocol.address import Address
from dantex.protocol.errors import LocalProtocolError, RemoteProtocolError
from dantex.protocol.http_connect import (
    HttpConnectRequest,
    HttpConnectServerCodec,
    HttpRequestError,
)
from dantex.protocol.socks5 import Reply
from dantex.server._state import State
from dantex.server.route import remember_credentials

if TYPE_CHECKING:
    from dantex.server.session import SocksSession

__all__ = [
    "EXTENSION",
    "HTTP_VERSION",
    "HttpTunnelCodec",
    "first_event_is_http",
    "http_requested",
    "status_for",
]

#: The ``extension:`` word that turns the HTTP listener on.
EXTENSION = "httpconnect"
#: ``SocksSession.version`` of an HTTP client (the letter a request starts with
#: is not fixed, so a value no SOCKS version uses).
HTTP_VERSION = 1
#: The realm in ``Proxy-Authenticate``.
REALM = "dantex"

_STATUS: dict[int, tuple[int, str]] = {
    Reply.SUCCEEDED: (200, "Connection established"),
    Reply.NOT_ALLOWED: (403, "Forbidden"),
    Reply.TTL_EXPIRED: (504, "Gateway Timeout"),
    Reply.ADDRESS_TYPE_NOT_SUPPORTED: (400, "Bad Request"),
    Reply.COMMAND_NOT_SUPPORTED: (405, "Method Not Allowed"),
}
_REASONS = {
    400: "Bad Request",
    403: "Forbidden",
    405: "Method Not Allowed",
    407: "Proxy Authentication Required",
    414: "URI Too Long",
    431: "Request Header Fields Too Large",
    502: "Bad Gateway",
    504: "Gateway Timeout",
    505: "HTTP Version Not Supported",
}


def status_for(code: int) -> tuple[int, str]:
    """The HTTP status for a SOCKS reply code: RFC 1928 §6 -> RFC 9110 §15.

    Refused, unreachable and general failures are 502 (the gateway could
    not reach the target), a timeout 504.
    """
    return _STATUS.get(code, (502, "Bad Gateway"))


class HttpTunnelCodec:
    """The HTTP codec behind the interface the session uses for SOCKS codecs
    (``feed``, ``next_event``, ``reply``, ``leftover``)."""

    def __init__(self) -> None:
        self.http = HttpConnectServerCodec()
        #: answer a rule's block with 407 instead of 403: the client sent no
        #: credentials and a password method was on offer
        self.challenge = False

    def feed(self, data: bytes) -> None:
        self.http.feed(data)

    def next_event(self) -> HttpConnectRequest | _NeedData:
        """The CONNECT request or NEED_DATA.

        :raises HttpRequestError: the request cannot be served (see the codec).
        """
        return self.http.next_event()

    def reply(self, code: int, bound: Address | None = None) -> bytes:
        """The response for SOCKS reply ``code``; non-2xx ones close."""
        status, reason = status_for(code)
        if status == 200:
            return self.http.encode_response(status, reason)
        if status == 403 and self.challenge:
            return self.response(407, _challenge())
        return self.response(status)

    def response(self, status: int, headers: tuple[tuple[str, str], ...] = ()) -> bytes:
        """A closing non-2xx response."""
        return self.http.encode_response(
            status, _REASONS.get(status, "Error"), (*headers, ("Connection", "close"))
        )

    def error_reply(self, e: RemoteProtocolError) -> bytes:
        """The answer to a request the codec refused (nothing once answered)."""
        try:
            if isinstance(e, HttpRequestError):
                return self.response(e.status, tuple(e.headers))
            return self.response(400)
        except LocalProtocolError:
            return b""

    def leftover(self) -> bytes:
        return self.http.leftover()


def _challenge() -> tuple[tuple[str, str], ...]:
    return (("Proxy-Authenticate", f'Basic realm="{REALM}"'),)


def http_requested(session: SocksSession, event: HttpConnectRequest) -> None:
    """Choose the method for ``event``, check its credentials, then hand the
    request to the session as a CONNECT."""
    codec = session.codec
    assert isinstance(codec, HttpTunnelCodec)
    ours = session.auth.socks_methods()
    offered = (NO_AUTH, USERNAME_PASSWORD) if event.basic_auth else (NO_AUTH,)
    choice = choose_method(ours, offered)
    target = event.address
    if choice is None:
        session.count_refusal("no-acceptable-method")
        session.command, session.target = "connect", target
        session._write(codec.response(407, _challenge()))
        session.finish(
            "HTTP client sent no credentials; authentication required "
            f"(socksmethod: {' '.join(ours) or 'none given'})",
            reason_side="client",
        )
        return
    name, wire = choice
    session.method = name
    if wire == NO_AUTH:
        # a rule may want a user: a block then asks for credentials
        codec.challenge = event.basic_auth is None and bool(
            choose_method(ours, (USERNAME_PASSWORD,))
        )
        if name == "none":
            session._requested("connect", target)
        else:  # rfc931, pam.address: the connection's addresses
            session.auth.address_check(
                name, lambda: _go_on(session, target, resume=True)
            )
        return
    assert event.basic_auth is not None
    user, password = event.basic_auth
    s = session
    creds = SocksCredentials(
        user, password, s.client.host, s.client.port, s.server.host, s.server.port
    )

    def ok(found: SocksUser) -> None:
        s.auth.adopt(name, found)
        routes = s.policy.routes
        if routes is not None and routes.forwards:
            remember_credentials(s, user, password)
        _go_on(s, target, resume=True)

    def failed(why: str) -> None:
        s._write(codec.response(407, _challenge()))
        s.finish(
            f'{name} authentication failed for user "{printable(user)}": {why}',
            reason_side="client",
            verdict="block",
            always=True,
        )

    s.auth.login(name, creds, ok, failed)


def _go_on(session: SocksSession, target: Address, *, resume: bool) -> None:
    if session.state is State.CLOSED:
        return
    session._requested("connect", target)
    if resume:
        session._resume()


def first_event_is_http(session: SocksSession) -> bool:
    """Whether this session's configuration accepts HTTP on the SOCKS port."""
    return EXTENSION in session.policy.config.extensions
