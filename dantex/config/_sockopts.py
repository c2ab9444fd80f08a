"""Socket options and per-side log levels (Dante §1.2, §1.3).

``internal|external . socket|ip|tcp|udp . <option>: <value>`` and
``internal|external . log . <level> . error|tcp.disabled|tcp.enabled: <list>``.
Option names are those of Debian's danted build; an unknown option can be
given by number (``external.ip.10: 0x12``).
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from dantex.config import _values as v
from dantex.config import keywords
from dantex.config.errors import ConfigError
from dantex.config.lexer import Token
from dantex.config.model import ErrorLogSpec, SocketOption

if TYPE_CHECKING:
    from dantex.config.parser import Parser

__all__ = ["OPTIONS", "STRUCTURED", "error_log_spec", "socket_option"]

#: Known option names per level.
OPTIONS = {
    "socket": frozenset(
        "so_broadcast so_debug so_dontroute so_keepalive so_linger so_oobinline "
        "so_priority so_rcvbuf so_rcvbufforce so_rcvlowat so_rcvtimeo so_sndbuf "
        "so_sndbufforce so_sndlowat so_sndtimeo so_timestamp".split()
    ),
    "tcp": frozenset(
        "tcp_cork tcp_keepcnt tcp_keepidle tcp_keepintvl tcp_linger2 tcp_maxseg "
        "tcp_md5sig tcp_nodelay tcp_syncnt tcp_window_clamp".split()
    ),
    "udp": frozenset({"udp_cork"}),
    "ip": frozenset(
        "ip_freebind ip_minttl ip_mtu_discover ip_tos ip_ttl ip_tos.dscp "
        "ip_tos.prec ip_tos.tos ip_portrange".split()
    ),
}
#: options whose value is a structure, not a number, and BSD's ip_portrange:
#: parsed, then refused as not supported yet
STRUCTURED = frozenset(
    {"so_linger", "so_rcvtimeo", "so_sndtimeo", "tcp_md5sig", "ip_portrange"}
)
_DSCP = {
    **{f"cs{i}": i * 8 for i in range(8)},
    **{f"af{c}{d}": 8 * c + 2 * d for c in range(1, 5) for d in range(1, 4)},
    "ef": 46,
}
_PREC = {
    "netcontrol": 7,
    "internetcontrol": 6,
    "critic_ecp": 5,
    "flashoverride": 4,
    "flash": 3,
    "immediate": 2,
    "priority": 1,
    "routine": 0,
}
_TOS = {"lowdelay": 0x10, "throughput": 0x08, "reliability": 0x04, "lowcost": 0x02}
_SYMBOLS = {"ip_tos.dscp": _DSCP, "ip_tos.prec": _PREC, "ip_tos.tos": _TOS}
_LEVELS = frozenset("emergency alert critical error warning notice info debug".split())
_TCP_OPTIONS = frozenset({"ecn", "sack", "timestamps", "wscale"})
_ERROR_EXTRA = frozenset({"no-route", "dns-any", "system-any"})
_EAI = frozenset(
    "eai_addrfamily eai_again eai_badflags eai_fail eai_family eai_memory "
    "eai_nodata eai_noname eai_service eai_socktype eai_system".split()
)
_ERRNOS = frozenset(name.lower() for name in errno.errorcode.values())


def socket_option(p: Parser, kw: Token) -> SocketOption:
    """Parse ``<side>.<level>.<option>: value``."""
    side, _, rest = kw.value.partition(".")
    level, _, name = rest.partition(".")
    if level not in OPTIONS or not name:
        p.unknown_keyword(kw, keywords.KNOWN_GLOBAL | keywords.KNOWN_RULE, "")
    known = OPTIONS[level]
    if name not in known and not name.isdigit():
        guess = keywords.suggest(name, known)
        p.ts.skip_line(kw.line)
        raise ConfigError(
            kw.span,
            f"unknown {level}-level socket option {name!r}",
            hint=f"did you mean '{guess}'?"
            if guess
            else "give an unknown option by number: "
            f"'{side}.{level}.<number>: <value>'",
        )
    words = p.line_list(kw, "value")
    symbols = _SYMBOLS.get(name)
    if symbols is not None and not v.is_number(words[0].value):
        value = 0
        for w in words:
            if w.value not in symbols:
                raise ConfigError(
                    w.span,
                    f"unknown {name} value {w.value!r}",
                    hint=" ".join(symbols),
                )
            value |= symbols[w.value]
        if name == "ip_tos.dscp":
            value <<= 2
        elif name == "ip_tos.prec":
            value <<= 5
    else:
        if len(words) != 1:
            raise ConfigError(words[1].span, f"{kw.value} takes one value")
        value = v.parse_int(words[0], kw.value, high=2**31 - 1)
    return SocketOption(side, level, name, value, kw.span)


def error_log_spec(p: Parser, kw: Token) -> ErrorLogSpec:
    """Parse ``<side>.log.<level>.error|tcp.disabled|tcp.enabled: <list>``."""
    parts = kw.value.split(".")
    side = parts[0]
    what = ".".join(parts[3:])
    if (
        len(parts) < 4
        or parts[1] != "log"
        or what not in ("error", "tcp.disabled", "tcp.enabled")
    ):
        p.unknown_keyword(kw, keywords.KNOWN_GLOBAL | keywords.KNOWN_RULE, "")
    level = parts[2]
    if level not in _LEVELS:
        p.ts.skip_line(kw.line)
        raise ConfigError(
            kw.span, f"unknown log level {level!r}", hint=" ".join(sorted(_LEVELS))
        )
    words = p.line_list(kw, "value")
    for w in words:
        ok = (
            w.value in _TCP_OPTIONS
            if what != "error"
            else w.value in _ERRNOS or w.value in _EAI or w.value in _ERROR_EXTRA
        )
        if not ok:
            hint = (
                " ".join(sorted(_TCP_OPTIONS))
                if what != "error"
                else "an errno name (econnrefused ...), eai_*, no-route, dns-any, "
                "system-any"
            )
            raise ConfigError(w.span, f"unknown {what} value {w.value!r}", hint=hint)
    return ErrorLogSpec(side, level, what, tuple(w.value for w in words), kw.span)
