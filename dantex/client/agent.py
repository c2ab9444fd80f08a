"""``IAgentEndpointFactory`` so that ``Agent.usingEndpointFactory`` (and treq)
fetch through a chain of proxies."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.internet.endpoints import wrapClientTLS
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.web.client import URI, BrowserLikePolicyForHTTPS
from twisted.web.iweb import IAgentEndpointFactory, IPolicyForHTTPS
from zope.interface import implementer

from dantex.client.chains import ProxyURL, chain, parse_proxy_url

__all__ = ["ProxyAgentEndpointFactory"]


@implementer(IAgentEndpointFactory)
class ProxyAgentEndpointFactory:
    """Endpoints through ``proxies`` for each request URI::

        agent = Agent.usingEndpointFactory(
            reactor, ProxyAgentEndpointFactory(reactor, ["socks5://h1", "http://h2:3128"])
        )

    ``https`` URIs get TLS to the origin on top of the tunnel, with
    ``tls_policy`` (default: ``BrowserLikePolicyForHTTPS``, the platform's trust).

    :param chain_options: passed on to :func:`dantex.client.chains.chain`
        (``resolve``, ``tls_trust_root`` for ``https`` proxies, timeouts).
    :raises ValueError: a bad proxy URL.
    """

    def __init__(
        self,
        reactor: Any,
        proxies: Sequence[str | ProxyURL],
        *,
        tls_policy: IPolicyForHTTPS | None = None,
        **chain_options: Any,
    ) -> None:
        self._reactor = reactor
        self._proxies = [
            p if isinstance(p, ProxyURL) else parse_proxy_url(p) for p in proxies
        ]
        self._policy = tls_policy or BrowserLikePolicyForHTTPS()
        self._options = chain_options

    def endpointForURI(self, uri: URI) -> IStreamClientEndpoint:
        """The chain to ``uri``'s host and port, with TLS for ``https``."""
        host = uri.host.decode("idna") if isinstance(uri.host, bytes) else uri.host
        endpoint = chain(self._reactor, self._proxies, host, uri.port, **self._options)
        if uri.scheme == b"https":
            creator = self._policy.creatorForNetloc(uri.host, uri.port)
            endpoint = wrapClientTLS(creator, endpoint)
        return endpoint
