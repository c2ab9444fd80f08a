"""Global server settings of sockd.conf (Dante §1.2, §1.3), one handler each.

A handler takes the :class:`~dantex.config.parser.Parser` and the keyword
token, reads the value tokens on the keyword's line, checks them and stores
the result in ``parser.settings`` (a :class:`~dantex.config.model.Config`
field) or in the parser's lists.
"""

from __future__ import annotations

import ipaddress
import pwd
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

from dantex.config import _values as v
from dantex.config import keywords
from dantex.config._auth import (
    LDAP_HONOURED,
    check_ldap,
    s_auth_failures,
    s_passwordfile,
    s_rfc931,
)
from dantex.config._proxyproto import s_proxyprotocol, s_proxyprotocol_from
from dantex.config._sockopts import STRUCTURED, error_log_spec, socket_option
from dantex.config.errors import ConfigError
from dantex.config.interfaces import interface_addresses, interface_exists
from dantex.config.lexer import Token
from dantex.config.model import (
    DEFAULT_PORT,
    ExternalAddress,
    InternalAddress,
    LogTarget,
)
from dantex.config.support import is_supported

if TYPE_CHECKING:
    from dantex.config.parser import Parser

__all__ = ["TIMEOUT_FIELDS", "setting"]

Handler = Callable[["Parser", Token], None]

TIMEOUT_FIELDS = {
    "timeout.negotiate": "negotiate",
    "timeout.connect": "connect",
    "connecttimeout": "connect",
    "timeout.io": "io",
    "iotimeout": "io",
    "timeout.io.tcp": "io_tcp",
    "timeout.io.udp": "io_udp",
    "timeout.tcp_fin_wait": "tcp_fin_wait",
}
_SYSLOG_FACILITIES = frozenset(
    "auth authpriv cron daemon kern lpr mail news syslog user uucp "
    "local0 local1 local2 local3 local4 local5 local6 local7".split()
)
_CPU_POLICIES = frozenset("other fifo rr idle batch".split())


def setting(p: Parser, kw: Token) -> None:
    """Dispatch one global setting."""
    name = kw.value
    handler = _SETTINGS.get(name) or _family(name)
    if handler is None:
        p.unknown_keyword(kw, keywords.KNOWN_GLOBAL, "as a server setting")
        return
    new = keywords.DEPRECATED.get(name)
    if new is not None:
        p.deprecated(kw, new)
    handler(p, kw)


def _family(name: str) -> Handler | None:
    head = name.split(".", 1)[0]
    if head in ("internal", "external") and ".log." in name:
        return _s_log_level
    if head in ("internal", "external") and name.count(".") >= 2:
        return _s_sockopt
    if head == "cpu":
        return _s_cpu
    if head in ("ldap", "gssapi", "pac"):
        return _s_module
    if name.startswith("socket.") and name.endswith((".tcp", ".udp")):
        return _s_old_sockbuf
    return None


# -- addresses -------------------------------------------------------------------


def _families(p: Parser, key: str) -> frozenset[str]:
    return frozenset(p.settings.get(key, frozenset({"ipv4", "ipv6"})))


def expand_host(
    p: Parser, tok: Token, what: str, families: frozenset[str]
) -> list[str]:
    """IP literal, interface (its addresses now) or host name (resolved now)."""
    text = tok.value
    try:
        return [str(ipaddress.ip_address(text))]
    except ValueError:
        pass
    want = {socket.AF_INET if f == "ipv4" else socket.AF_INET6 for f in families}
    if interface_exists(text):
        addrs = [
            a for fam, a in interface_addresses(text) if "%" not in a and fam in want
        ]
        if not addrs:
            raise ConfigError(tok.span, f"interface {text!r} has no usable address")
        return addrs
    if not v.is_hostname(text):
        raise ConfigError(tok.span, f"bad {what} address {text!r}")
    try:
        infos = socket.getaddrinfo(text, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as e:
        raise ConfigError(tok.span, f"cannot resolve {text!r}: {e}") from None
    return sorted({str(i[4][0]) for i in infos if i[0] in want})


def _s_internal(p: Parser, kw: Token) -> None:
    tok = p.ts.expect_value(kw, "address or interface")
    port_spec = v.parse_optional_port(p.ts, tok)
    if port_spec is not None and port_spec.op != "eq":
        raise ConfigError(tok.span, "internal: takes 'port = N'")
    port = port_spec.low if port_spec is not None else DEFAULT_PORT
    for host in expand_host(p, tok, "internal", _families(p, "internal_protocols")):
        p.internals.append(InternalAddress(host, port, tok.span))


def _s_external(p: Parser, kw: Token) -> None:
    tok = p.ts.expect_value(kw, "address or interface")
    text = tok.value
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        if interface_exists(text):
            p.externals.append(ExternalAddress(tok.span, interface=text))
            return
        for host in expand_host(p, tok, "external", _families(p, "external_protocols")):
            p.externals.append(ExternalAddress(tok.span, ip=host))
        return
    if ip.is_unspecified:
        raise ConfigError(
            tok.span,
            f"external address {text} is a wildcard",
            hint="name the address or interface to send from",
        )
    _check_bindable(tok, str(ip))
    p.externals.append(ExternalAddress(tok.span, ip=str(ip)))


def _check_bindable(tok: Token, ip: str) -> None:
    """Dante refuses an external address this host does not have."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((ip, 0))
    except OSError as e:
        raise ConfigError(
            tok.span,
            f"cannot bind external address {ip}: {e.strerror}",
            hint="external: must be an address of this host",
        ) from None


def _s_protocols(p: Parser, kw: Token) -> None:
    field = kw.value.replace(".protocol", "_protocols")
    side = kw.value.split(".")[0]
    if side == "internal" and p.internals:
        raise ConfigError(
            kw.span,
            "internal.protocol must come before the internal: lines",
            hint=f"move it above line {p.internals[0].span.line}",
        )
    p.settings[field] = p.word_set(kw, frozenset({"ipv4", "ipv6"}), "protocol")


def _s_rotation(p: Parser, kw: Token) -> None:
    tok = p.ts.expect_value(kw, "rotation")
    if tok.value not in ("none", "route", "same-same"):
        raise ConfigError(
            tok.span, "external.rotation must be none, route or same-same"
        )
    p.settings["external_rotation"] = tok.value


# -- methods, users ------------------------------------------------------------------


def _s_methods(p: Parser, kw: Token) -> None:
    client = kw.value == "clientmethod"
    field = "clientmethods" if client else "socksmethods"
    methods = p.method_list(kw, "client" if client else "socks")
    p.settings[field] = methods
    if not client and "none" in methods and methods[-1] != "none":
        later = methods[methods.index("none") + 1]
        p.warn(
            kw,
            f"method 'none' comes before {later!r}: a client offering both is "
            "never asked to authenticate",
            hint="list 'none' last",
        )


def _s_user(p: Parser, kw: Token) -> None:
    tok = p.ts.expect_value(kw, "user name")
    field = {
        "user.privileged": "user_privileged",
        "user.unprivileged": "user_unprivileged",
        "user.notprivileged": "user_unprivileged",
        "user.libwrap": "user_libwrap",
    }[kw.value]
    try:
        pwd.getpwnam(tok.value)
    except (KeyError, ValueError):
        raise ConfigError(tok.span, f"no such user {tok.value!r}") from None
    p.settings[field] = tok.value


# -- logging -------------------------------------------------------------------------


def log_target(w: Token) -> LogTarget:
    """One ``logoutput``/``errorlog`` destination."""
    text = w.value
    if text in ("stderr", "stdout"):
        return LogTarget(text, w.span)
    if text == "syslog" or text.startswith("syslog/"):
        facility = text.partition("/")[2] or "daemon"
        if facility not in _SYSLOG_FACILITIES:
            raise ConfigError(
                w.span,
                f"unknown syslog facility {facility!r}",
                hint=" ".join(sorted(_SYSLOG_FACILITIES)),
            )
        return LogTarget("syslog", w.span, facility=facility)
    if text.startswith(("/", ".")):
        return LogTarget("file", w.span, path=text)
    raise ConfigError(
        w.span,
        f"log destination {text!r} must be stderr, stdout, syslog[/facility] "
        "or a file path starting with / or .",
    )


def _s_log(p: Parser, kw: Token) -> None:
    field = kw.value
    targets = list(p.settings.get(field, ()))
    for w in p.line_list(kw, "destination"):
        targets.append(log_target(w))
    p.settings[field] = tuple(targets)


def _s_debug(p: Parser, kw: Token) -> None:
    p.settings["debug"] = v.parse_int(p.ts.expect_value(kw, "level"), "debug", high=9)


def _s_log_level(p: Parser, kw: Token) -> None:
    spec = error_log_spec(p, kw)
    p.settings["log_levels"] = (*p.settings.get("log_levels", ()), spec)


# -- timeouts ----------------------------------------------------------------------


def _s_timeout(p: Parser, kw: Token) -> None:
    value = v.parse_duration(p.ts.expect_value(kw, "seconds"), kw.value)
    p.timeouts[TIMEOUT_FIELDS[kw.value]] = value
    if kw.value == "timeout.tcp_fin_wait" and value:
        p.use("timeout.tcp_fin_wait", kw)


def _s_shutdown(p: Parser, kw: Token) -> None:
    # dantex: drain time after SIGTERM (global only)
    p.timeouts["shutdown"] = v.parse_duration(
        p.ts.expect_value(kw, "seconds"), kw.value
    )


#: ``metrics.internal:`` without ``port =``
METRICS_PORT = 9464


def _s_metrics(p: Parser, kw: Token) -> None:
    """dantex: ``metrics.internal: IP [port = N]``, the Prometheus endpoint."""
    tok = p.ts.expect_value(kw, "IP address")
    port_spec = v.parse_optional_port(p.ts, tok)
    if port_spec is not None and port_spec.op != "eq":
        raise ConfigError(tok.span, "metrics.internal: takes 'port = N'")
    try:
        ip = ipaddress.ip_address(tok.value)
    except ValueError:
        raise ConfigError(
            tok.span,
            f"metrics.internal: {tok.value!r} is not an IP address",
            hint="e.g. metrics.internal: 127.0.0.1 port = 9464",
        ) from None
    if "metrics" in p.settings:
        raise ConfigError(kw.span, "metrics.internal: given twice")
    if not ip.is_loopback:
        p.warn(
            tok,
            f"metrics are served without authentication on {ip}",
            hint="keep metrics.internal on a loopback address",
        )
    port = port_spec.low if port_spec is not None else METRICS_PORT
    p.settings["metrics"] = InternalAddress(str(ip), port, tok.span)


# -- behaviour switches --------------------------------------------------------------


def _s_srchost(p: Parser, kw: Token) -> None:
    old = {"nomismatch": "nodnsmismatch", "nounknown": "nodnsunknown"}
    allowed = frozenset({"nodnsmismatch", "nodnsunknown", "checkreplyauth", *old})
    values = set()
    for word in p.word_set(kw, allowed, "srchost option"):
        if word in old:
            p.warn(kw, f"srchost '{word}' is deprecated", f"use '{old[word]}'")
        values.add(old.get(word, word))
    if "checkreplyauth" in values:
        p.use("srchost:checkreplyauth", kw, "srchost: checkreplyauth")
    p.settings["srchost"] = frozenset(values)


def _s_compatibility(p: Parser, kw: Token) -> None:
    words = p.line_list(kw, "option")
    for w in words:
        if w.value == "reuseaddr":
            raise ConfigError(w.span, "compatibility 'reuseaddr' was removed in 1.4")
        if w.value not in ("sameport", "draft-5.05"):
            raise ConfigError(
                w.span,
                f"unknown compatibility option {w.value!r}",
                hint="sameport draft-5.05",
            )
        p.use(f"compatibility:{w.value}", w, f"compatibility '{w.value}'")
    p.settings["compatibility"] = frozenset(w.value for w in words)


def _s_extension(p: Parser, kw: Token) -> None:
    # httpconnect (dantex): HTTP CONNECT on the SOCKS port
    p.settings["extensions"] = p.word_set(
        kw, frozenset({"bind", "httpconnect"}), "extension", gate="extension"
    )


def _s_yesno(field: str, gate: str | None = None, when: bool | None = None) -> Handler:
    def handler(p: Parser, kw: Token) -> None:
        value = v.parse_bool(p.ts.expect_value(kw, "yes or no"), kw.value)
        if gate is not None and (when is None or value == when):
            p.use(gate, kw)
        p.settings[field] = value

    return handler


def _s_advertise(p: Parser, kw: Token) -> None:
    """``internal.advertise`` / ``external.advertise`` (dantex): an IP literal
    to put in UDP ASSOCIATE / BIND replies, one per family (servers behind NAT)."""
    tok = p.ts.expect_value(kw, "IP address")
    try:
        ip = ipaddress.ip_address(tok.value)
    except ValueError:
        raise ConfigError(
            tok.span, f"{kw.value} takes an IP address, not {tok.value!r}"
        ) from None
    if ip.is_unspecified:
        raise ConfigError(
            tok.span,
            f"{kw.value} address {tok.value} is a wildcard",
            hint="name the address clients and peers can reach",
        )
    field = kw.value.replace(".", "_")
    have: tuple[str, ...] = p.settings.get(field, ())
    if any(ipaddress.ip_address(a).version == ip.version for a in have):
        raise ConfigError(
            tok.span,
            f"a second IPv{ip.version} address for {kw.value}",
            hint="one address per family",
        )
    p.settings[field] = (*have, str(ip))


def _s_resolveprotocol(p: Parser, kw: Token) -> None:
    tok = p.ts.expect_value(kw, "protocol")
    if tok.value not in ("udp", "tcp", "fake"):
        raise ConfigError(tok.span, "resolveprotocol must be udp, tcp or fake")
    p.settings["resolveprotocol"] = tok.value


def _s_path(field: str) -> Handler:
    def handler(p: Parser, kw: Token) -> None:
        p.settings[field] = p.ts.expect_value(kw, "file name").value

    return handler


def _s_route_number(p: Parser, kw: Token) -> None:
    tok = p.ts.expect_value(kw, "number")
    p.use(kw.value, kw)
    if kw.value == "route.maxfail":
        p.settings["route_maxfail"] = v.parse_int(tok, kw.value)
    else:
        p.settings["route_badexpire"] = v.parse_duration(tok, kw.value)


def _s_route_order(p: Parser, kw: Token) -> None:
    """``route.order: file | dante`` (dantex): which matching route is tried
    first -- the first in the file, or danted's order (direct routes, then
    SOCKS 4, SOCKS 5 and HTTP parents)."""
    tok = p.ts.expect_value(kw, "order")
    if tok.value not in ("file", "dante"):
        raise ConfigError(tok.span, "route.order must be file or dante")
    p.settings["route_order"] = tok.value


def _s_pam_servicename(p: Parser, kw: Token) -> None:
    p.use("pam.servicename", kw)
    p.settings["pam_servicename"] = p.ts.expect_value(kw, "service name").value


def _s_module(p: Parser, kw: Token) -> None:
    """ldap.*, gssapi.*, pac.*, bsdauth.stylename: values kept verbatim."""
    if not keywords.is_known(kw.value):
        p.unknown_keyword(kw, keywords.KNOWN_GLOBAL | keywords.LDAP, "")
    words = tuple(p.raw_rest(kw).split())
    if not words:
        raise ConfigError(kw.span, f"'{kw.value}:' needs a value")
    p.use(kw.value, kw)
    if kw.value in LDAP_HONOURED and is_supported(kw.value, p.supported):
        check_ldap(kw, words, in_rule=False)
    if kw.value.startswith("ldap."):
        ldap = dict(p.settings.get("ldap", {}))
        ldap[kw.value] = (*ldap.get(kw.value, ()), *words)
        p.settings["ldap"] = ldap


def _s_sockopt(p: Parser, kw: Token) -> None:
    option = socket_option(p, kw)
    if option.name in STRUCTURED:
        p.use("socket options", kw)
    p.settings["socket_options"] = (*p.settings.get("socket_options", ()), option)


def _store_ignored(p: Parser, kw: Token, words: list[Token]) -> None:
    p.warn(
        kw,
        f"'{kw.value}' has no effect in dantex",
        hint="dantex runs --workers processes, each serving many clients",
    )
    ignored = dict(p.settings.get("ignored", {}))
    ignored[kw.value] = tuple(w.value for w in words)
    p.settings["ignored"] = ignored


def _s_ignored(p: Parser, kw: Token) -> None:
    words = p.line_list(kw, "value")
    if kw.value != "child.maxidle":
        v.parse_int(words[0], kw.value)
    _store_ignored(p, kw, words)


def _s_cpu(p: Parser, kw: Token) -> None:
    parts = kw.value.split(".")
    if (
        len(parts) != 3
        or parts[1] not in ("schedule", "mask")
        or parts[2] not in ("mother", "monitor", "negotiate", "request", "io")
    ):
        p.unknown_keyword(kw, keywords.KNOWN_GLOBAL, "as a server setting")
    words = p.line_list(kw, "value")
    if parts[1] == "schedule":
        policy, _, prio = words[0].value.partition("/")
        if len(words) != 1 or policy not in _CPU_POLICIES or not prio.isdigit():
            raise ConfigError(
                words[0].span,
                f"bad scheduling {words[0].value!r}",
                hint="<policy>/<priority>, policy one of "
                + " ".join(sorted(_CPU_POLICIES)),
            )
    else:
        for w in words:
            if w.value != "any":
                v.parse_int(w, "cpu id")
    _store_ignored(p, kw, words)


def _s_obsolete(p: Parser, kw: Token) -> None:
    p.ts.skip_line(kw.line)
    p.warn(kw, f"'{kw.value}' is obsolete and ignored (as in Dante 1.4)")


def _s_old_sockbuf(p: Parser, kw: Token) -> None:
    parts = kw.value.split(".")
    if parts[1] not in ("recvbuf", "sendbuf"):
        p.unknown_keyword(kw, keywords.KNOWN_GLOBAL, "as a server setting")
    v.parse_int(p.ts.expect_value(kw, "size"), kw.value)
    option = "so_rcvbuf" if parts[1] == "recvbuf" else "so_sndbuf"
    p.warn(
        kw,
        f"'{kw.value}' is obsolete and ignored",
        hint=f"use 'external.socket.{option}:' / 'internal.socket.{option}:'",
    )


_SETTINGS: dict[str, Handler] = {
    "internal": _s_internal,
    "external": _s_external,
    "internal.protocol": _s_protocols,
    "external.protocol": _s_protocols,
    "external.rotation": _s_rotation,
    "socksmethod": _s_methods,
    "clientmethod": _s_methods,
    "method": _s_methods,
    "logoutput": _s_log,
    "errorlog": _s_log,
    "debug": _s_debug,
    "user.privileged": _s_user,
    "user.unprivileged": _s_user,
    "user.notprivileged": _s_user,
    "user.libwrap": _s_user,
    "srchost": _s_srchost,
    "compatibility": _s_compatibility,
    "extension": _s_extension,
    "udp.connectdst": _s_yesno("udp_connectdst", "udp.connectdst"),
    "internal.advertise": _s_advertise,
    # dantex: PROXY protocol on the listeners (dantex/config/_proxyproto.py)
    "internal.proxyprotocol": s_proxyprotocol,
    "internal.proxyprotocol.from": s_proxyprotocol_from,
    "external.advertise": _s_advertise,
    "resolveprotocol": _s_resolveprotocol,
    "libwrap.hosts_access": _s_yesno(
        "libwrap_hosts_access", "libwrap.hosts_access", when=True
    ),
    "libwrap.allow": _s_path("libwrap_allow"),
    "libwrap.deny": _s_path("libwrap_deny"),
    "route.maxfail": _s_route_number,
    "route.badexpire": _s_route_number,
    "route.order": _s_route_order,
    "pam.servicename": _s_pam_servicename,
    "pamservicename": _s_pam_servicename,
    "username.passwordfile": s_passwordfile,
    "auth.failures": s_auth_failures,
    "rfc931.port": s_rfc931,
    "rfc931.timeout": s_rfc931,
    "bsdauth.stylename": _s_module,
    "child.maxrequests": _s_ignored,
    "child.maxlifetime": _s_ignored,
    "child.maxidle": _s_ignored,
    "localdomain": _s_obsolete,
    **{name: _s_timeout for name in TIMEOUT_FIELDS},
    "timeout.shutdown": _s_shutdown,
    "metrics.internal": _s_metrics,
}
