"""Fetch a page through a chain of proxies with twisted.web's Agent.

Usage::

    python examples/fetch_through_chain.py URL PROXY [PROXY ...]
    python examples/fetch_through_chain.py http://example.com/ \\
        socks5://user:pass@10.0.0.1:1080 http://10.0.0.2:3128

Each PROXY is a URL: socks5://, socks5h://, socks4://, socks4a://, http://
or https:// (TLS to the proxy).  The first proxy is reached directly, each
next one through the ones before it, and the page's host through all of
them.  The body goes to standard output; a failure is reported in one line
naming the hop that failed, with exit status 1.
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.internet.task import react
from twisted.web.client import Agent, readBody

from dantex.client import ProxyAgentEndpointFactory, ProxyError


async def main(reactor: Any, url: str, *proxies: str) -> None:
    agent = Agent.usingEndpointFactory(
        reactor, ProxyAgentEndpointFactory(reactor, proxies)
    )
    try:
        response = await agent.request(b"GET", url.encode("ascii"))
        body = await readBody(response)
    except ProxyError as e:  # what the proxy said, and which hop said it
        sys.stderr.write(f"{e}\n")
        raise SystemExit(1) from None
    sys.stderr.write(f"{response.code} {response.phrase.decode('latin-1')}\n")
    sys.stdout.buffer.write(body)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.stderr.write(__doc__ or "")
        raise SystemExit(2)
    react(lambda reactor: main(reactor, *sys.argv[1:]))
