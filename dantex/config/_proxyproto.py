"""``internal.proxyprotocol`` (dantex): the PROXY protocol on the listeners.

Two global settings, a dantex extension (Dante has none; its client-rule
keyword ``proxyprotocol:`` names SOCKS versions and is unrelated)::

    internal.proxyprotocol: v1 v2
    internal.proxyprotocol.from: 127.0.0.1/32 10.0.0.0/8

The first says which header versions the ``internal:`` listeners accept, the
second which peers may send one (a load balancer's addresses; several lines
add up).  Both or neither must be given: no peer is trusted by default.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from dantex.config.errors import ConfigError
from dantex.config.lexer import Token

if TYPE_CHECKING:
    from dantex.config.parser import Parser

__all__ = ["VERSIONS", "check_proxyprotocol", "s_proxyprotocol", "s_proxyprotocol_from"]

#: The header versions one may list.
VERSIONS = frozenset({"v1", "v2"})


def s_proxyprotocol(p: Parser, kw: Token) -> None:
    """``internal.proxyprotocol: v1 v2``."""
    if "internal_proxyprotocol" in p.settings:
        p.warn(kw, f"'{kw.value}:' given twice; the last one counts")
    p.settings["internal_proxyprotocol"] = p.word_set(kw, VERSIONS, "PROXY version")
    p.settings["_proxyprotocol_span"] = kw.span


def s_proxyprotocol_from(p: Parser, kw: Token) -> None:
    """``internal.proxyprotocol.from: <network> ...`` (IP literal or CIDR)."""
    have: tuple[str, ...] = p.settings.get("internal_proxyprotocol_from", ())
    out = list(have)
    for w in p.line_list(kw, "address"):
        try:
            net = ipaddress.ip_network(w.value, strict=True)
        except ValueError as e:
            raise ConfigError(
                w.span,
                f"bad {kw.value} address {w.value!r}: {e}",
                hint="an IP address or network, e.g. 127.0.0.1/32 or 10.0.0.0/8",
            ) from None
        if str(net) not in out:
            out.append(str(net))
    p.settings["internal_proxyprotocol_from"] = tuple(out)
    p.settings.setdefault("_proxyprotocol_from_span", kw.span)


def check_proxyprotocol(p: Parser) -> None:
    """Both settings or neither (called once the whole file is read)."""
    span = p.settings.pop("_proxyprotocol_span", None)
    from_span = p.settings.pop("_proxyprotocol_from_span", None)
    if span is not None and from_span is None:
        p.errors.append(
            ConfigError(
                span,
                "internal.proxyprotocol without internal.proxyprotocol.from: "
                "no peer may send a PROXY header",
                hint="add e.g. 'internal.proxyprotocol.from: 127.0.0.1/32' "
                "(the load balancer's addresses)",
            )
        )
    elif from_span is not None and span is None:
        p.errors.append(
            ConfigError(
                from_span,
                "internal.proxyprotocol.from without internal.proxyprotocol",
                hint="add 'internal.proxyprotocol: v2' (or v1, or both)",
            )
        )
