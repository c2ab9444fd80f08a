"""Dante's ``srchost:`` checks on a client's DNS names, after its client-rule.

* ``nodnsunknown``: a client address with no name (PTR) is refused;
* ``nodnsmismatch``: a client address whose name does not resolve back to
  it is refused (no name at all passes this test: that is what
  ``nodnsunknown`` is for).

Lookups go through the session's cached, non-blocking resolver; answers
already in its cache are used at once, without a Deferred.  A lookup that
fails counts as no answer.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred

from dantex.server.resolve import Resolver

__all__ = ["DNS_CHECKS", "check"]

#: the srchost options checked here (``checkreplyauth`` is about replies)
DNS_CHECKS = frozenset({"nodnsunknown", "nodnsmismatch"})

Verdict = str | None


def check(
    resolver: Resolver, ip: str, options: frozenset[str]
) -> Verdict | Deferred[Verdict]:
    """Why ``ip`` is refused under ``options`` (None: it passes), at once
    when the resolver's cache knows the answers, else as a Deferred."""
    names = resolver.cached("reverse", ip)
    if names is None:
        d = resolver.reverse(ip)
        return d.addCallback(lambda found: _named(resolver, ip, found, options))
    return _named(resolver, ip, names, options)


def _named(
    resolver: Resolver, ip: str, names: tuple[str, ...], options: frozenset[str]
) -> Verdict | Deferred[Verdict]:
    if not names:
        if "nodnsunknown" in options:
            return f"{ip} has no DNS name (nodnsunknown)"
        return None
    if "nodnsmismatch" not in options:
        return None
    name = names[0]
    addresses = resolver.cached("forward", name)
    if addresses is None:
        d = resolver.forward(name)
        return d.addCallback(lambda found: _mismatch(ip, name, found))
    return _mismatch(ip, name, addresses)


def _mismatch(ip: str, name: str, addresses: tuple[str, ...]) -> Verdict:
    if ip in addresses:
        return None
    found = ", ".join(addresses) if addresses else "nothing"
    return f"{ip} is named {name}, which resolves to {found} (nodnsmismatch)"
