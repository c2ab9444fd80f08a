"""Bodies of ``client``/``hostid``/``socks`` rules, ``route`` and ``monitor``
blocks (Dante §1.5-§1.8): which keyword is valid where, and its value.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from attrs import define, field

from dantex.config import _values as v
from dantex.config import keywords
from dantex.config._auth import LDAP_HONOURED, check_ldap
from dantex.config._settings import TIMEOUT_FIELDS
from dantex.config._sockopts import STRUCTURED, error_log_spec, socket_option
from dantex.config.errors import ConfigError
from dantex.config.lexer import Token, TokenKind
from dantex.config.model import (
    AddressSpec,
    AddressSpecKind,
    Alarm,
    Hop,
    Monitor,
    PortSpec,
    Route,
    Rule,
    RuleKind,
    SessionLimits,
)
from dantex.config.support import is_supported

if TYPE_CHECKING:
    from dantex.config.parser import Parser

__all__ = ["COMMANDS", "LOG_FLAGS", "monitor", "route", "rule"]

COMMANDS = frozenset({"bind", "connect", "udpassociate", "bindreply", "udpreply"})
PROTOCOLS = frozenset({"tcp", "udp"})
LOG_FLAGS = {
    "connect": "connect",
    "disconnect": "disconnect",
    "data": "data",
    "error": "error",
    "iooperation": "iooperation",
    "ioop": "iooperation",
    "tcpinfo": "tcpinfo",
}
_RULE = frozenset({"client", "hostid", "socks"})
_ALL = _RULE | {"route", "monitor"}


@define
class Body:
    """What one block has said so far."""

    kind: str  #: client, hostid, socks, route or monitor
    head: Token
    verdict: str = "pass"
    src: AddressSpec | None = None
    dst: AddressSpec | None = None
    via: AddressSpec | None = None
    fields: dict[str, Any] = field(factory=dict)
    session: dict[str, Any] = field(factory=dict)
    extras: dict[str, tuple[str, ...]] = field(factory=dict)
    #: a route's further parents: each ``via:`` after the first, with the
    #: hop keywords that followed it (dantex's multi-hop path)
    hops: list[tuple[AddressSpec, dict[str, Any]]] = field(factory=list)

    def add(self, name: str, item: object) -> None:
        """Append to a tuple field."""
        self.fields[name] = (*self.fields.get(name, ()), item)

    def hop(self) -> dict[str, Any]:
        """Where a route's hop keywords go: the last ``via:`` given so far."""
        return self.hops[-1][1] if self.hops else self.fields


Handler = Callable[["Parser", Body, Token], None]


# -- the blocks --------------------------------------------------------------------


def rule(p: Parser, kind: RuleKind, head: Token, verdict_tok: Token) -> None:
    """``client|hostid|socks pass|block { ... }`` (or the old bare form)."""
    ts = p.ts
    while ts.peek() is not verdict_tok:
        ts.next()
    ts.next()
    body = Body(kind.value, head, verdict_tok.value)
    if kind is RuleKind.HOSTID:
        p.use("hostid", head)
    if not _block(p, body, verdict_tok):
        return
    if body.src is None or body.dst is None:
        raise _missing(body, "from:" if body.src is None else "to:")
    if body.session:
        body.fields["session"] = _session(p, body)
    if "bandwidth_key" in body.fields and "bandwidth" not in body.fields:
        raise ConfigError(
            head.span, "'bandwidth.state.key' needs 'bandwidth:' in the same rule"
        )
    if body.extras:
        body.fields["extras"] = dict(body.extras)
    rules = p.rules[kind]
    rules.append(
        Rule(
            kind,
            body.verdict,
            len(rules) + 1,
            head.span,
            body.src,
            body.dst,
            **body.fields,
        )
    )


def route(p: Parser, head: Token) -> None:
    """``route { from: ... to: ... via: ... }`` (server chaining).

    dantex extensions: several ``via:`` lines make a path of parents, each
    reached through the ones before it; ``username:``/``password:`` and
    ``tls:``/``tls.cafile:``/``tls.servername:`` belong to the hop whose
    ``via:`` they follow (as ``proxyprotocol:`` and ``method:`` do).
    """
    p.ts.next()
    body = Body("route", head)
    p.use("route", head)
    if not _block(p, body, head):
        return
    if body.src is None or body.dst is None or body.via is None:
        missing = "from:" if body.src is None else "to:" if body.dst is None else "via:"
        raise _missing(body, missing)
    fields = body.fields
    first = {k: fields.pop(k) for k in _HOP_ONLY if k in fields}
    hops: list[Hop] = []
    if body.via.kind is AddressSpecKind.DIRECT:
        if first:
            raise ConfigError(
                head.span, f"'{next(iter(first))}:' is for a parent, not 'via: direct'"
            )
    else:
        first_fields = {k: fields[k] for k in _HOP_SHARED if k in fields}
        hops.append(_hop(body.via, {**first_fields, **first}))
        hops.extend(_hop(via, values) for via, values in body.hops)
        _check_commands(head, fields, hops[-1])
        _check_forwarding(p, head, hops)
    via = hops[0].via if hops else body.via
    if body.extras:
        fields["extras"] = dict(body.extras)
    p.routes.append(
        Route(
            len(p.routes) + 1,
            head.span,
            body.src,
            body.dst,
            via,
            hops=tuple(hops),
            **fields,
        )
    )


#: Keywords of one hop that only dantex has (kept out of the Route's fields).
_HOP_ONLY = ("username", "password", "tls", "tls_cafile", "tls_servername")
#: Hop keywords Dante has: the first hop's are also the Route's own fields.
_HOP_SHARED = ("proxyprotocols", "methods")


def _hop(via: AddressSpec, values: dict[str, Any]) -> Hop:
    """One parent, with Dante's default port (80 for HTTP, 443 over TLS,
    else 1080)."""
    if via.port is None:
        protocols = values.get("proxyprotocols") or frozenset()
        http = bool(protocols) and protocols <= {"http", "http_v1.0"}
        default = (443 if values.get("tls") else 80) if http else 1080
        via = AddressSpec(
            via.kind, via.span, via.network, via.name, PortSpec("eq", default)
        )
    if "password" in values and "username" not in values:
        raise ConfigError(via.span, "'password:' without 'username:' for this parent")
    return Hop(via, **values)


#: Methods whose clients give a password that a route may pass on.
_PASSWORD_METHODS = frozenset({"username", "pam.username", "pam.any", "ldapauth"})


def _check_forwarding(p: Parser, head: Token, hops: list[Hop]) -> None:
    """``method: username`` without fixed credentials passes on the client's
    password: some global method must ask for one (danted's check)."""
    forwards = any(h.username is None and "username" in (h.methods or ()) for h in hops)
    methods = p.settings.get("socksmethods", ())
    if forwards and not _PASSWORD_METHODS.intersection(methods):
        raise ConfigError(
            head.span,
            "the route passes on the client's user name and password (method "
            "username), but no global socksmethod asks clients for them",
            hint="add 'socksmethod: username', or give the parent's own "
            "'username:' and 'password:'",
        )


def _check_commands(head: Token, fields: dict[str, Any], last: Hop) -> None:
    """What a route through parents may carry: CONNECT (Dante's only one),
    and with dantex BIND (SOCKS parents) and UDP ASSOCIATE (SOCKS 5)."""
    commands = fields.get("commands") or frozenset()
    replies = sorted(commands & {"bindreply", "udpreply"})
    if replies:
        raise ConfigError(
            head.span,
            f"{' and '.join(replies)} cannot be routed on their own",
            hint="a route for bind or udpassociate carries its replies",
        )
    offered = last.proxyprotocols or frozenset({"socks_v4", "socks_v5"})
    if "bind" in commands and not offered <= {"socks_v4", "socks_v5"}:
        raise ConfigError(
            head.span,
            "BIND goes through SOCKS parents only",
            hint="write 'proxyprotocol: socks_v5' for the last parent",
        )
    udp = "udpassociate" in commands or "udp" in (fields.get("protocols") or ())
    if udp and offered != {"socks_v5"}:
        raise ConfigError(
            head.span,
            "UDP ASSOCIATE goes through SOCKS 5 parents only",
            hint="write 'proxyprotocol: socks_v5' for the last parent",
        )


def monitor(p: Parser, head: Token) -> None:
    """``monitor { from: ... to: ... alarm... }``."""
    p.ts.next()
    body = Body("monitor", head)
    p.use("monitor", head)
    if not _block(p, body, head):
        return
    if body.src is None or body.dst is None:
        raise _missing(body, "from:" if body.src is None else "to:")
    p.monitors.append(
        Monitor(len(p.monitors) + 1, head.span, body.src, body.dst, **body.fields)
    )


def _missing(body: Body, what: str) -> ConfigError:
    extra = " via: ..." if body.kind == "route" else ""
    return ConfigError(
        body.head.span,
        f"{body.kind} block has no '{what}'",
        hint=f"every {body.kind} block needs 'from: ... to: ...{extra}'",
    )


def _block(p: Parser, body: Body, before: Token) -> bool:
    """Parse ``{ ... }``; False if the body had errors (already recorded)."""
    ts = p.ts
    brace = ts.next()
    if brace is None or brace.kind is not TokenKind.LBRACE:
        raise ConfigError(before.span, "'{' expected")
    errors_before = len(p.errors)
    while True:
        tok = ts.peek()
        if tok is None:
            p.errors.append(
                ConfigError(
                    body.head.span, f"this {body.kind} block has no closing '}}'"
                )
            )
            return False
        if tok.kind is TokenKind.RBRACE:
            ts.next()
            break
        try:
            ts.next()
            _item(p, body, tok)
        except ConfigError as e:
            p.errors.append(e)
            ts.skip_line(tok.line)
    return len(p.errors) == errors_before


def _item(p: Parser, body: Body, tok: Token) -> None:
    if tok.kind is TokenKind.LBRACE:
        raise ConfigError(
            tok.span,
            "'{' inside a block",
            hint="is the '}' of the previous block missing?",
        )
    if tok.kind is TokenKind.WORD and tok.value in ("redirect", "bounce"):
        _redirect(p, body, tok)
        return
    if tok.kind is TokenKind.WORD and tok.value in ("client", "socks", "route"):
        raise ConfigError(
            tok.span,
            f"{tok.value!r} inside a {body.kind} block",
            hint="is the '}' of this block missing?",
        )
    if tok.kind is not TokenKind.KEYWORD:
        guess = keywords.suggest(tok.value, keywords.KNOWN_RULE)
        hint = f"did you mean '{guess}:'?" if guess else None
        raise ConfigError(tok.span, f"keyword expected, not {tok.value!r}", hint)
    name = tok.value
    entry = _KEYWORDS.get(name) or _family(name)
    if entry is None:
        p.unknown_keyword(tok, keywords.KNOWN_RULE, f"in a {body.kind} block")
        return
    kinds, handler = entry
    if body.kind not in kinds:
        p.ts.skip_line(tok.line)
        where = " and ".join(
            sorted(k + (" rules" if k in _RULE else "s") for k in kinds)
        )
        raise ConfigError(
            tok.span,
            f"'{name}:' is not valid in a {body.kind} block",
            f"only in {where}",
        )
    new = keywords.DEPRECATED.get(name)
    if new is not None:
        if name == "method" and body.kind in ("client", "hostid"):
            new = "clientmethod"
        if not (name == "method" and body.kind == "route"):
            p.deprecated(tok, new)
    handler(p, body, tok)


def _family(name: str) -> tuple[frozenset[str], Handler] | None:
    parts = name.split(".")
    side = parts[0] in ("internal", "external")
    if side and len(parts) >= 3 and parts[1] == "log":
        return _RULE, _k_log_level
    if side and len(parts) >= 3 and parts[1] == "alarm":
        return frozenset({"monitor"}), _k_alarm
    if parts[0] == "alarm":
        return frozenset({"monitor"}), _k_alarm
    if side and len(parts) >= 3:
        return _RULE | {"route"}, _k_sockopt
    if parts[0] == "ldap" or parts[0] == "pac":
        return frozenset({"socks"}), _k_module
    if parts[0] == "gssapi":
        return _RULE | {"route"}, _k_module
    return None


# -- keyword handlers ---------------------------------------------------------------


def _k_address(p: Parser, body: Body, kw: Token) -> None:
    slot = kw.value if kw.value != "from" else "src"
    slot = {"src": "src", "to": "dst", "via": "via"}[slot]
    if slot == "via" and body.via is not None:
        via = v.parse_via(p.ts, kw)  # a further parent on the path (dantex)
        if (
            via.kind is AddressSpecKind.DIRECT
            or body.via.kind is AddressSpecKind.DIRECT
        ):
            raise ConfigError(
                kw.span,
                "'via: direct' cannot be part of a path of parents",
                hint="a route is either direct or through one or more parents",
            )
        body.hops.append((via, {}))
        return
    if getattr(body, slot) is not None:
        raise ConfigError(kw.span, f"a second '{kw.value}:' in one block")
    if slot == "via":
        body.via = v.parse_via(p.ts, kw)
    else:
        setattr(body, slot, v.parse_rule_address(p.ts, kw))


def _k_command(p: Parser, body: Body, kw: Token) -> None:
    body.fields["commands"] = p.word_set(kw, COMMANDS, "command", gate="command")


def _k_protocol(p: Parser, body: Body, kw: Token) -> None:
    body.fields["protocols"] = p.word_set(kw, PROTOCOLS, "protocol")


def _k_proxyprotocol(p: Parser, body: Body, kw: Token) -> None:
    allowed = {"socks_v4", "socks_v5"}
    if body.kind == "route":
        allowed |= {"http", "http_v1.0", "upnp"}
    values = p.word_set(kw, frozenset(allowed), "proxy protocol")
    if values & {"socks_v4", "socks_v5"} and values - {"socks_v4", "socks_v5"}:
        raise ConfigError(kw.span, "socks proxy protocols cannot be combined with http")
    if body.kind == "route":
        if "upnp" in values:
            raise ConfigError(kw.span, "UPnP gateways are not supported by dantex")
        body.hop()["proxyprotocols"] = values
        return
    body.fields["proxyprotocols"] = values


def _k_method(p: Parser, body: Body, kw: Token) -> None:
    if body.kind == "route":
        body.hop()["methods"] = p.method_list(kw, "route")
        return
    client = kw.value == "clientmethod" or (
        kw.value == "method" and body.kind in ("client", "hostid")
    )
    key = "clientmethods" if client else "socksmethods"
    body.fields[key] = p.method_list(kw, "client" if client else "socks")


def _k_names(p: Parser, body: Body, kw: Token) -> None:
    words = p.line_list(kw, "name")
    p.use(kw.value, kw)
    key = "users" if kw.value == "user" else "groups"
    body.fields[key] = frozenset(w.value for w in words)


def _k_log(p: Parser, body: Body, kw: Token) -> None:
    flags = set()
    for w in p.line_list(kw, "log flag"):
        flag = LOG_FLAGS.get(w.value)
        if flag is None:
            raise ConfigError(
                w.span,
                f"unknown log flag {w.value!r}",
                hint="connect disconnect data error iooperation tcpinfo",
            )
        flags.add(flag)
    body.fields["log"] = frozenset(flags)


def _k_timeout(p: Parser, body: Body, kw: Token) -> None:
    value = v.parse_duration(p.ts.expect_value(kw, "seconds"), kw.value)
    if kw.value == "timeout.tcp_fin_wait" and value:
        p.use("timeout.tcp_fin_wait", kw)
    timeouts = dict(body.fields.get("timeouts", {}))
    name = TIMEOUT_FIELDS[kw.value]
    if name == "io":
        timeouts["io_tcp"] = timeouts["io_udp"] = value
    else:
        timeouts[name] = value
    body.fields["timeouts"] = timeouts


def _k_libwrap(p: Parser, body: Body, kw: Token) -> None:
    text = p.raw_rest(kw)
    if not text:
        raise ConfigError(kw.span, "'libwrap:' needs a hosts_options line")
    p.use("libwrap", kw)
    body.fields["libwrap"] = text


def _k_bandwidth(p: Parser, body: Body, kw: Token) -> None:
    tok = p.ts.expect_value(kw, "bytes per second")
    body.fields["bandwidth"] = v.parse_int(tok, "bandwidth", low=1)
    p.use("bandwidth", kw)


def _k_bandwidth_key(p: Parser, body: Body, kw: Token) -> None:
    """dantex extension: ``bandwidth.state.key: from|user`` gives each client
    address (or user) a bucket of its own at the rule's rate."""
    tok = p.ts.expect_value(kw, "from or user")
    if tok.value not in ("from", "user"):
        raise ConfigError(tok.span, "bandwidth.state.key must be from or user")
    if tok.value == "user" and body.kind != "socks":
        raise ConfigError(
            tok.span,
            "bandwidth.state.key: user is for socks-rules "
            "(the user is known after negotiation)",
        )
    p.use("bandwidth.state.key", kw)
    body.fields["bandwidth_key"] = tok.value


def _k_session(p: Parser, body: Body, kw: Token) -> None:
    name = "session.max" if kw.value == "maxsessions" else kw.value
    tok = p.ts.expect_value(kw, "value")
    p.use(name, kw, f"'{kw.value}'")
    field_name = name.removeprefix("session.").replace(".", "_")
    if field_name in ("throttle", "state_throttle"):
        value: Any = v.parse_ratio(tok, name)
    elif field_name == "state_key":
        if tok.value not in ("from", "hostid", "user"):
            raise ConfigError(
                tok.span, "session.state.key must be from, hostid or user"
            )
        if tok.value == "user" and body.kind != "socks":
            raise ConfigError(
                tok.span,
                "session.state.key: user is for socks-rules "
                "(the user is known after negotiation)",
            )
        if tok.value == "hostid":
            p.use("session.state.key:hostid", tok, "'session.state.key: hostid'")
        value = tok.value
    elif field_name == "inheritable":
        if body.kind not in ("client", "hostid"):
            raise ConfigError(kw.span, "session.inheritable is for client-rules only")
        value = v.parse_bool(tok, name)
    elif field_name == "state_key_hostindex":
        field_name = "state_hostindex"
        value = v.parse_int(tok, name)
    else:
        value = v.parse_int(tok, name)
    body.session[field_name] = (value, kw)


def _session(p: Parser, body: Body) -> SessionLimits:
    """Cross-checks of the ``session.*`` keywords of one rule (Dante §1.6)."""
    values = {k: val for k, (val, _tok) in body.session.items()}
    for key in ("state_max", "state_throttle", "state_hostindex"):
        if key in values and "state_key" not in values:
            tok = body.session[key][1]
            raise ConfigError(tok.span, f"'{tok.value}' needs 'session.state.key'")
    if (
        "state_max" in values
        and "max" in values
        and values["state_max"] > values["max"]
    ):
        tok = body.session["state_max"][1]
        raise ConfigError(tok.span, "session.state.max is larger than session.max")
    return SessionLimits(**values)


def _redirect(p: Parser, body: Body, word: Token) -> None:
    kw = p.ts.next()
    if word.value == "bounce":
        raise ConfigError(
            word.span, "'bounce' is not a Dante server keyword (Barefoot only)"
        )
    if kw is None or kw.kind is not TokenKind.KEYWORD or kw.value not in ("from", "to"):
        raise ConfigError(word.span, "'redirect' must be followed by 'from:' or 'to:'")
    if body.kind == "monitor" or (body.kind == "route" and kw.value == "to"):
        raise ConfigError(word.span, f"'redirect {kw.value}:' is not valid here")
    spec = v.parse_rule_address(p.ts, kw)
    from dantex.limits.redirect import check  # the module that serves it

    problem = check(kw.value, spec)
    if problem is not None:
        raise ConfigError(spec.span, problem)
    p.use(f"redirect {kw.value}", word, f"'redirect {kw.value}:'")
    if body.kind == "route":
        p.use("redirect from:route", word, "'redirect from:' in routes")
    body.fields[f"redirect_{kw.value}"] = spec


def _k_single(field_name: str, gate: str) -> Handler:
    def handler(p: Parser, body: Body, kw: Token) -> None:
        body.fields[field_name] = p.ts.expect_value(kw, "value").value
        p.use(gate, kw)
        if gate == "pam.servicename" and body.kind == "socks":
            # dantex checks passwords during negotiation, before socks-rules.
            p.use("pam.servicename:socks", kw, "'pam.servicename' in socks-rules")

    return handler


def _k_module(p: Parser, body: Body, kw: Token) -> None:
    if not keywords.is_known(kw.value):
        p.unknown_keyword(kw, keywords.KNOWN_RULE | keywords.LDAP, "")
    words = tuple(p.raw_rest(kw).split())
    if not words:
        raise ConfigError(kw.span, f"'{kw.value}:' needs a value")
    p.use(kw.value, kw)
    if kw.value in LDAP_HONOURED and is_supported(kw.value, p.supported):
        check_ldap(kw, words, in_rule=True)
    if kw.value.startswith("ldap."):
        ldap = dict(body.fields.get("ldap", {}))
        ldap[kw.value] = (*ldap.get(kw.value, ()), *words)
        body.fields["ldap"] = ldap
    else:
        body.extras[kw.value] = words


def _k_clientcompat(p: Parser, body: Body, kw: Token) -> None:
    body.extras["clientcompatibility"] = tuple(
        p.word_set(kw, frozenset({"necgssapi"}), "client compatibility")
    )
    p.use("clientcompatibility", kw)


def _k_portrange(p: Parser, body: Body, kw: Token) -> None:
    body.fields["udp_portrange"] = v.parse_range(p.ts, kw, "udp.portrange")
    p.use("udp.portrange", kw)


def _k_hostid(p: Parser, body: Body, kw: Token) -> None:
    p.use("hostid", kw)
    if kw.value == "hostindex":
        body.fields["hostindex"] = v.parse_int(
            p.ts.expect_value(kw, "index"), "hostindex"
        )
    else:
        body.fields["hostid"] = v.parse_rule_address(p.ts, kw)


def _k_sockopt(p: Parser, body: Body, kw: Token) -> None:
    option = socket_option(p, kw)
    if body.kind == "client" and option.side == "external":
        raise ConfigError(kw.span, "client-rules may only set internal-side options")
    if body.verdict == "block" and option.side == "external":
        raise ConfigError(kw.span, "a block rule may not set external-side options")
    if option.name in STRUCTURED or body.kind not in ("client", "socks"):
        p.use("socket options", kw)
    body.add("socket_options", option)


def _k_log_level(p: Parser, body: Body, kw: Token) -> None:
    spec = error_log_spec(p, kw)
    body.add("log_levels", spec)
    if body.kind not in ("client", "socks"):
        p.use("log levels", kw)


def _k_extension(p: Parser, body: Body, kw: Token) -> None:
    body.fields["extensions"] = p.word_set(
        kw, frozenset({"bind"}), "extension", gate="extension"
    )


def _k_credential(p: Parser, body: Body, kw: Token) -> None:
    """``username: NAME`` / ``password: SECRET`` (dantex): fixed credentials
    for this hop's parent.  The password is the rest of the line (up to a
    ``#`` or ``}``: the lexer keeps it one word); it is masked in messages."""
    hop = body.hop()
    if kw.value in hop:
        raise ConfigError(kw.span, f"a second '{kw.value}:' for one parent")
    value = p.ts.expect_value(kw, kw.value).value
    if len(value.encode("utf-8")) > 255:
        raise ConfigError(kw.span, f"'{kw.value}:' is longer than 255 bytes")
    hop[kw.value] = value


def _k_tls(p: Parser, body: Body, kw: Token) -> None:
    """``tls: yes|no``, ``tls.cafile: PATH`` (PEM certificates to trust,
    relative to the configuration file), ``tls.servername: NAME`` (dantex)."""
    hop = body.hop()
    tok = p.ts.expect_value(kw, "value")
    if kw.value == "tls":
        hop["tls"] = v.parse_bool(tok, "tls")
    elif kw.value == "tls.cafile":
        path = tok.value  # relative to the configuration file, kept absolute
        if not os.path.isabs(path):
            base = os.path.dirname(os.path.abspath(p.path)) if p.path else os.getcwd()
            path = os.path.join(base, path)
        try:
            with open(path, "rb"):
                pass
        except OSError as e:
            raise ConfigError(
                tok.span, f"cannot read {tok.value!r}: {e.strerror}"
            ) from None
        hop["tls_cafile"] = path
    else:
        hop["tls_servername"] = tok.value


def _k_alarm(p: Parser, body: Body, kw: Token) -> None:
    parts = kw.value.split(".")
    side = parts.pop(0) if parts[0] in ("internal", "external") else None
    rest = ".".join(parts[1:])
    ts = p.ts
    if rest in ("data", "data.recv", "data.send"):
        limit = v.parse_int(ts.expect_value(kw, "bytes"), "alarm bytes")
        seconds = _in_seconds(p, kw, required=True)
        direction = rest.split(".")[1] if "." in rest else None
        alarm = Alarm("data", kw.span, side, direction, limit, None, seconds)
    elif rest == "disconnect":
        count, ratio = v.parse_ratio(ts.expect_value(kw, "MIN/RATIO"), kw.value)
        seconds = _in_seconds(p, kw, required=False)
        alarm = Alarm("disconnect", kw.span, side, None, count, ratio, seconds)
    elif rest == "test.mtu-error":
        ts.line_words(kw)
        p.use("alarm.test", kw, f"'{kw.value}'")
        alarm = Alarm("test.mtu-error", kw.span, side)
    else:
        p.unknown_keyword(kw, keywords.KNOWN_RULE, "in a monitor block")
        return
    body.add("alarms", alarm)


def _in_seconds(p: Parser, kw: Token, *, required: bool) -> float:
    tok = p.ts.peek()
    if tok is None or tok.line != kw.line or tok.value != "in":
        if required:
            raise ConfigError(kw.span, f"'{kw.value}:' needs 'in SECONDS'")
        return 5.0
    p.ts.next()
    return v.parse_duration(p.ts.expect_value(tok, "seconds"), "alarm period")


_KEYWORDS: dict[str, tuple[frozenset[str], Handler]] = {
    "from": (_ALL, _k_address),
    "to": (_ALL, _k_address),
    "via": (frozenset({"route"}), _k_address),
    "command": (frozenset({"socks", "route", "monitor"}), _k_command),
    "protocol": (frozenset({"socks", "route", "monitor"}), _k_protocol),
    "proxyprotocol": (frozenset({"socks", "route"}), _k_proxyprotocol),
    "protocolversion": (frozenset({"socks"}), _k_proxyprotocol),
    "socksmethod": (_RULE, _k_method),
    "clientmethod": (_RULE, _k_method),
    "method": (_RULE | {"route"}, _k_method),
    "user": (_RULE, _k_names),
    "group": (_RULE, _k_names),
    "log": (_RULE, _k_log),
    "libwrap": (_RULE, _k_libwrap),
    "bandwidth": (_RULE, _k_bandwidth),
    "bandwidth.state.key": (_RULE, _k_bandwidth_key),
    "maxsessions": (_RULE, _k_session),
    "pam.servicename": (_RULE, _k_single("pam_servicename", "pam.servicename")),
    "pamservicename": (_RULE, _k_single("pam_servicename", "pam.servicename")),
    "bsdauth.stylename": (frozenset({"socks"}), _k_module),
    "clientcompatibility": (frozenset({"client", "hostid", "route"}), _k_clientcompat),
    "udp.portrange": (frozenset({"socks"}), _k_portrange),
    "hostid": (_RULE | {"monitor"}, _k_hostid),
    "hostindex": (_RULE | {"monitor"}, _k_hostid),
    "extension": (frozenset({"route"}), _k_extension),
    "username": (frozenset({"route"}), _k_credential),
    "password": (frozenset({"route"}), _k_credential),
    "tls": (frozenset({"route"}), _k_tls),
    "tls.cafile": (frozenset({"route"}), _k_tls),
    "tls.servername": (frozenset({"route"}), _k_tls),
    **{name: (_RULE, _k_timeout) for name in TIMEOUT_FIELDS},
    **{
        f"session.{s}": (_RULE, _k_session)
        for s in (
            "max throttle state.key state.key.hostindex state.max "
            "state.throttle inheritable"
        ).split()
    },
}
