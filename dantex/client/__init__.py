"""dantex's client connector: Twisted endpoints through SOCKS 4/4A/5 and HTTP CONNECT.

Endpoints nest into chains (:mod:`dantex.client.endpoints`); failures are
typed (:mod:`dantex.client.errors`).
"""

from dantex.client._handshake import UserPass
from dantex.client._negotiate import Tunnel
from dantex.client.endpoints import (
    HTTPConnectEndpoint,
    Socks4ClientEndpoint,
    Socks5ClientEndpoint,
    describe_endpoint,
)
from dantex.client.errors import (
    HTTPProxyAuthenticationError,
    HTTPProxyRefusedError,
    NoAcceptableMethodError,
    ProxyAuthenticationError,
    ProxyClosedError,
    ProxyConnectError,
    ProxyError,
    ProxyProtocolError,
    ProxyRefusedError,
    ProxyTimeoutError,
    Socks4RefusedError,
    Socks5RefusedError,
)

__all__ = [
    "HTTPConnectEndpoint",
    "HTTPProxyAuthenticationError",
    "HTTPProxyRefusedError",
    "NoAcceptableMethodError",
    "ProxyAuthenticationError",
    "ProxyClosedError",
    "ProxyConnectError",
    "ProxyError",
    "ProxyProtocolError",
    "ProxyRefusedError",
    "ProxyTimeoutError",
    "Socks4ClientEndpoint",
    "Socks4RefusedError",
    "Socks5ClientEndpoint",
    "Socks5RefusedError",
    "Tunnel",
    "UserPass",
    "describe_endpoint",
]
