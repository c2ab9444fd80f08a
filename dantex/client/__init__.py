"""dantex's client connector: Twisted endpoints through SOCKS 4/4A/5 and HTTP CONNECT.

- :mod:`dantex.client.endpoints`: ``Socks5ClientEndpoint``,
  ``Socks4ClientEndpoint``, ``HTTPConnectEndpoint``; they nest into chains.
- :mod:`dantex.client.chains`: a chain from proxy URLs.
- :mod:`dantex.client.agent`: ``IAgentEndpointFactory`` for ``Agent``/treq.
- :mod:`dantex.client.udp` and :mod:`dantex.client.bind`: UDP ASSOCIATE and BIND.
- :mod:`dantex.client.socksconf`: Dante's ``socks.conf`` routes and
  ``SOCKS_*`` environment variables, with route failover.
- :mod:`dantex.client.parsers`: ``clientFromString`` prefixes.
- :mod:`dantex.client.errors`: the typed failures.

Names are imported lazily (PEP 562), so that the twisted plugin can import
:mod:`dantex.client.parsers` at scan time without loading the rest.

Not implemented: GSS-API (RFC 1961), HTTP authentication schemes other than
Basic, Dante's bind extension, UPnP routes.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dantex.client._handshake import UserPass
    from dantex.client._negotiate import Tunnel
    from dantex.client.agent import ProxyAgentEndpointFactory
    from dantex.client.bind import PendingBind, bind
    from dantex.client.chains import ProxyURL, chain, parse_proxy_url
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
        NoRouteError,
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
    from dantex.client.handover import detach_socket
    from dantex.client.socksconf import (
        ClientConfig,
        ClientRouter,
        load_client_config,
    )
    from dantex.client.udp import UdpAssociation, udp_associate

_WHERE = {
    "UserPass": "_handshake",
    "Tunnel": "_negotiate",
    "ProxyAgentEndpointFactory": "agent",
    "PendingBind": "bind",
    "bind": "bind",
    "ProxyURL": "chains",
    "chain": "chains",
    "parse_proxy_url": "chains",
    "HTTPConnectEndpoint": "endpoints",
    "Socks4ClientEndpoint": "endpoints",
    "Socks5ClientEndpoint": "endpoints",
    "describe_endpoint": "endpoints",
    "HTTPProxyAuthenticationError": "errors",
    "HTTPProxyRefusedError": "errors",
    "NoAcceptableMethodError": "errors",
    "NoRouteError": "errors",
    "ProxyAuthenticationError": "errors",
    "ProxyClosedError": "errors",
    "ProxyConnectError": "errors",
    "ProxyError": "errors",
    "ProxyProtocolError": "errors",
    "ProxyRefusedError": "errors",
    "ProxyTimeoutError": "errors",
    "Socks4RefusedError": "errors",
    "Socks5RefusedError": "errors",
    "detach_socket": "handover",
    "ClientConfig": "socksconf",
    "ClientRouter": "socksconf",
    "load_client_config": "socksconf",
    "UdpAssociation": "udp",
    "udp_associate": "udp",
}

__all__ = [
    "ClientConfig",
    "ClientRouter",
    "HTTPConnectEndpoint",
    "HTTPProxyAuthenticationError",
    "HTTPProxyRefusedError",
    "NoAcceptableMethodError",
    "NoRouteError",
    "PendingBind",
    "ProxyAgentEndpointFactory",
    "ProxyAuthenticationError",
    "ProxyClosedError",
    "ProxyConnectError",
    "ProxyError",
    "ProxyProtocolError",
    "ProxyRefusedError",
    "ProxyTimeoutError",
    "ProxyURL",
    "Socks4ClientEndpoint",
    "Socks4RefusedError",
    "Socks5ClientEndpoint",
    "Socks5RefusedError",
    "Tunnel",
    "UdpAssociation",
    "UserPass",
    "bind",
    "chain",
    "describe_endpoint",
    "detach_socket",
    "load_client_config",
    "parse_proxy_url",
    "udp_associate",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'dantex.client' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"dantex.client.{module}"), name)
    globals()[name] = value
    return value
