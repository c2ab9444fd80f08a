"""``clientFromString`` prefixes ``socks5:``, ``socks4:`` and ``httpconnect:``.

Examples::

    socks5:example.com:443:proxy=tcp\\:10.0.0.1\\:1080:user=u:password=p
    socks4:10.1.2.3:80:proxy=tcp\\:10.0.0.1\\:1080:userid=bob:resolve=local
    httpconnect:example.com:443:proxy=tls\\:h2\\:443:user=u:password=p

``proxy=`` is itself an endpoint description (its colons escaped), so it
may be TCP, TLS or another proxy.  Keywords: ``host``/``port`` (instead of
the positional ones), ``proxy`` (required), ``user``/``password`` (SOCKS 5
and HTTP), ``userid`` (SOCKS 4), ``resolve=remote|local``, ``timeout``
(seconds to reach the proxy) and ``negotiate_timeout``.  Unknown keywords
raise ``TypeError``, as ``clientFromString("tls:...")`` does.  Chains of
more hops are clearer in Python (:func:`dantex.client.chains.chain`).

This module is imported by the twisted plugin at scan time, so it imports
only interfaces; the endpoints are imported when a string is parsed.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import (
    IStreamClientEndpoint,
    IStreamClientEndpointStringParserWithReactor,
)
from twisted.plugin import IPlugin
from zope.interface import implementer

__all__ = ["HTTPConnectParser", "Socks4Parser", "Socks5Parser"]

_COMMON = frozenset(
    ("host", "port", "proxy", "resolve", "timeout", "negotiate_timeout")
)


@implementer(IPlugin, IStreamClientEndpointStringParserWithReactor)
class _ProxyParser:
    prefix = ""
    keywords: frozenset[str] = _COMMON

    def parseStreamClient(
        self, reactor: Any, *raw_args: object, **raw_kwargs: object
    ) -> IStreamClientEndpoint:
        """Build the endpoint; ``TypeError`` for unknown or missing arguments."""
        args = [str(a) for a in raw_args]
        kwargs = {k: str(v) for k, v in raw_kwargs.items()}
        unknown = set(kwargs) - self.keywords
        if unknown:
            raise TypeError(
                f"{self.prefix}: unknown keyword(s) {', '.join(sorted(unknown))}"
            )
        if len(args) > 2:
            raise TypeError(f"{self.prefix}: expected host and port, got {len(args)}")
        host = kwargs.pop("host", None) or (args[0] if args else None)
        port_text = kwargs.pop("port", None) or (args[1] if len(args) > 1 else None)
        if not host or not port_text:
            raise TypeError(f"{self.prefix}: a target host and port are required")
        if "proxy" not in kwargs:
            raise TypeError(f"{self.prefix}: proxy= is required")
        from twisted.internet.endpoints import clientFromString

        proxy = clientFromString(reactor, kwargs.pop("proxy"))
        options: dict[str, Any] = {"reactor": reactor}
        if "resolve" in kwargs:
            options["resolve"] = kwargs.pop("resolve")
        for name, key in (
            ("timeout", "connect_timeout"),
            ("negotiate_timeout", "negotiate_timeout"),
        ):
            if name in kwargs:
                options[key] = float(kwargs.pop(name))
        return self._build(proxy, host, int(port_text), kwargs, options)

    #: the endpoint class in :mod:`dantex.client.endpoints`
    endpoint = ""

    def _build(
        self,
        proxy: IStreamClientEndpoint,
        host: str,
        port: int,
        extra: dict[str, str],
        options: dict[str, Any],
    ) -> IStreamClientEndpoint:
        from dantex.client import endpoints

        cls = getattr(endpoints, self.endpoint)
        if "userid" in self.keywords:
            fourth = extra.get("userid", "")  # SOCKS 4's USERID
        else:
            fourth = _userpass(extra)
        built: IStreamClientEndpoint = cls(proxy, host, port, fourth, **options)
        return built


def _userpass(extra: dict[str, str]) -> Any:
    from dantex.client._handshake import UserPass

    if "user" in extra:
        return UserPass(extra["user"], extra.get("password", ""))
    if "password" in extra:
        raise TypeError("password= needs user=")
    return None


class Socks5Parser(_ProxyParser):
    """``socks5:`` -> :class:`dantex.client.endpoints.Socks5ClientEndpoint`."""

    prefix = "socks5"
    endpoint = "Socks5ClientEndpoint"
    keywords = _COMMON | {"user", "password"}


class Socks4Parser(_ProxyParser):
    """``socks4:`` -> :class:`dantex.client.endpoints.Socks4ClientEndpoint`."""

    prefix = "socks4"
    endpoint = "Socks4ClientEndpoint"
    keywords = _COMMON | {"userid"}


class HTTPConnectParser(_ProxyParser):
    """``httpconnect:`` -> :class:`dantex.client.endpoints.HTTPConnectEndpoint`."""

    prefix = "httpconnect"
    endpoint = "HTTPConnectEndpoint"
    keywords = _COMMON | {"user", "password"}
