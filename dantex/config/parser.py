"""Recursive-descent parser for Dante's sockd.conf (1.4 syntax and the older one).

``parse(text, path)`` returns a checked :class:`~dantex.config.model.Config`
or raises :class:`~dantex.config.errors.ConfigErrors` carrying every error in
the file (not just the first), sorted by position.

Implemented keywords: ``internal``, ``external``, ``external.rotation``,
``socksmethod``/``clientmethod``/``method`` (method ``none``), ``logoutput``,
``errorlog``, ``debug``, ``timeout.*``, ``user.*``; rules ``client``/``socks``
pass/block (and the old bare ``pass``/``block``) with ``from:``/``to:`` (all
address and port forms), ``command:``, ``protocol:``, ``proxyprotocol:``,
``socksmethod:``/``clientmethod:``, ``log:``, ``timeout.*`` and
``udp.portrange:``; ``udp.connectdst`` and dantex's own
``internal.advertise``/``external.advertise``.  Every other Dante keyword
(``extension: bind`` included) is refused with a "not supported yet" error
naming it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

import attrs

from dantex.config import _values as v
from dantex.config import keywords
from dantex.config.errors import ConfigError, ConfigErrors, ConfigWarning
from dantex.config.interfaces import interface_exists
from dantex.config.lexer import Token, TokenKind, tokenize
from dantex.config.model import (
    DEFAULT_PORT,
    AddressSpec,
    Config,
    ExternalAddress,
    InternalAddress,
    LogTarget,
    Rule,
    RuleKind,
    Timeouts,
)

__all__ = ["parse", "parse_file"]

#: Authentication methods Dante knows, and the ones dantex implements today.
KNOWN_METHODS = frozenset(
    (
        "none username gssapi rfc931 pam pam.any pam.address pam.username "
        "bsdauth ldapauth"
    ).split()
)
IMPLEMENTED_METHODS = frozenset({"none"})
_COMMANDS = frozenset(["bind", "connect", "udpassociate", "bindreply", "udpreply"])
_PROTOCOLS = frozenset({"tcp", "udp"})
_PROXYPROTOCOLS = frozenset({"socks_v4", "socks_v5"})
_LOG_FLAGS = {
    "connect": "connect",
    "disconnect": "disconnect",
    "data": "data",
    "error": "error",
    "iooperation": "iooperation",
    "ioop": "iooperation",
    "tcpinfo": "tcpinfo",
}
_TIMEOUT_FIELDS = {
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
    (
        "auth authpriv cron daemon kern lpr mail news syslog user uucp "
        "local0 local1 local2 local3 local4 local5 local6 local7"
    ).split()
)


def parse_file(path: str) -> Config:
    """Read and parse ``path``.

    :raises ConfigErrors: the file cannot be read or has errors.
    """
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError as e:
        from dantex.config.errors import Span

        raise ConfigErrors(
            [ConfigError(Span(path, 0, 0, 0), f"cannot read: {e.strerror}")]
        ) from None
    return parse(text, path)


def parse(text: str, path: str) -> Config:
    """Parse a whole file's text.

    :raises ConfigErrors: one or more errors; all of them, sorted.
    """
    return _Parser(text, path).run()


class _Parser:
    def __init__(self, text: str, path: str) -> None:
        self.path = path
        self.errors: list[ConfigError] = []
        self.warnings: list[ConfigWarning] = []
        tokens: list[Token] = []
        try:
            tokens = list(tokenize(text, path))
        except ConfigError as e:
            self.errors.append(e)
        self.ts = v.TokenStream(tokens, path)
        self.settings: dict[str, Any] = {}
        self.timeouts: dict[str, float] = {}
        self.internals: list[InternalAddress] = []
        self.externals: list[ExternalAddress] = []
        self.rules: dict[RuleKind, list[Rule]] = {k: [] for k in RuleKind}
        self.seen_rule: Token | None = None

    # -- driver ---------------------------------------------------------

    def run(self) -> Config:
        ts = self.ts
        while (tok := ts.peek()) is not None:
            try:
                self.statement(tok)
            except ConfigError as e:
                self.errors.append(e)
                ts.skip_line(tok.line if e.span.line != tok.line else e.span.line)
                if ts.peek() is tok:
                    ts.next()
        config = self.build()
        if self.errors:
            raise ConfigErrors(self.errors, self.warnings)
        return config

    def statement(self, tok: Token) -> None:
        ts = self.ts
        if tok.kind is TokenKind.KEYWORD:
            ts.next()
            if self.seen_rule is not None:
                raise ConfigError(
                    tok.span,
                    f"server setting {tok.value!r} after the first rule",
                    hint=f"move it above line {self.seen_rule.line}",
                )
            self.setting(tok)
            return
        if tok.kind is TokenKind.WORD:
            nxt = ts.peek(1)
            if (
                tok.value in ("client", "socks", "hostid")
                and nxt is not None
                and nxt.value in ("pass", "block")
            ):
                self.rule(RuleKind(tok.value), tok, nxt, skip=2)
                return
            if (
                tok.value in ("pass", "block")
                and nxt is not None
                and nxt.kind is TokenKind.LBRACE
            ):
                self.warn(
                    tok,
                    f"bare '{tok.value}' rule is the old syntax",
                    f"write 'socks {tok.value} {{'",
                )
                self.rule(RuleKind.SOCKS, tok, tok, skip=1)
                return
            if (
                tok.value in ("route", "monitor")
                and nxt is not None
                and nxt.kind is TokenKind.LBRACE
            ):
                self.skip_block(tok, skip=1)
                raise ConfigError(tok.span, f"'{tok.value}' is not supported yet")
        raise ConfigError(tok.span, f"expected a setting or a rule, not {tok.value!r}")

    def warn(self, tok: Token, message: str, hint: str | None = None) -> None:
        self.warnings.append(ConfigWarning(tok.span, message, hint))

    def skip_block(self, head: Token, skip: int) -> None:
        ts = self.ts
        for _ in range(skip):
            ts.next()
        brace = ts.next()
        if brace is None or brace.kind is not TokenKind.LBRACE:
            raise ConfigError(head.span, "'{' expected")
        while (tok := ts.next()) is not None:
            if tok.kind is TokenKind.RBRACE:
                return
        raise ConfigError(head.span, "this block has no closing '}'")

    # -- settings -------------------------------------------------------

    def setting(self, kw: Token) -> None:
        name = kw.value
        handler = _SETTINGS.get(name)
        if handler is None:
            self.unknown_keyword(kw, keywords.KNOWN_GLOBAL)
            return
        if name in keywords.DEPRECATED:
            new = keywords.DEPRECATED[name]
            self.warn(kw, f"'{name}' is deprecated", f"use '{new}'")
        handler(self, kw)

    def unknown_keyword(self, kw: Token, pool: frozenset[str]) -> None:
        self.ts.skip_line(kw.line)
        if keywords.is_known(kw.value):
            raise ConfigError(kw.span, f"'{kw.value}' is not supported yet")
        guess = keywords.suggest(kw.value, pool)
        hint = f"did you mean '{guess}'?" if guess else None
        raise ConfigError(kw.span, f"unknown keyword '{kw.value}'", hint)

    def set_once(self, kw: Token, key: str, value: object) -> None:
        self.settings[key] = value

    def s_internal(self, kw: Token) -> None:
        tok = self.ts.expect_value(kw, "address or interface")
        port_spec = v.parse_optional_port(self.ts, tok)
        if port_spec is not None and port_spec.op != "eq":
            raise ConfigError(tok.span, "internal: takes 'port = N'")
        port = port_spec.low if port_spec is not None else DEFAULT_PORT
        for host in self.expand_host(tok, "internal"):
            self.internals.append(InternalAddress(host, port, tok.span))

    def expand_host(self, tok: Token, what: str) -> list[str]:
        """IP literal, interface (its addresses now) or host name (resolved now)."""
        from dantex.config.interfaces import interface_addresses

        text = tok.value
        try:
            return [str(ipaddress.ip_address(text))]
        except ValueError:
            pass
        if interface_exists(text):
            addrs = [a for _fam, a in interface_addresses(text) if "%" not in a]
            if not addrs:
                raise ConfigError(tok.span, f"interface {text!r} has no address")
            return addrs
        if not v.is_hostname(text):
            raise ConfigError(tok.span, f"bad {what} address {text!r}")
        import socket

        try:
            infos = socket.getaddrinfo(text, None, type=socket.SOCK_STREAM)
        except OSError as e:
            raise ConfigError(tok.span, f"cannot resolve {text!r}: {e}") from None
        return sorted({str(info[4][0]) for info in infos})

    def s_external(self, kw: Token) -> None:
        tok = self.ts.expect_value(kw, "address or interface")
        text = tok.value
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            if interface_exists(text):
                self.externals.append(ExternalAddress(tok.span, interface=text))
                return
            for host in self.expand_host(tok, "external"):
                self.externals.append(ExternalAddress(tok.span, ip=host))
            return
        if ip.is_unspecified:
            raise ConfigError(
                tok.span,
                f"external address {text} is a wildcard",
                hint="name the address or interface to send from",
            )
        self.externals.append(ExternalAddress(tok.span, ip=str(ip)))

    def s_rotation(self, kw: Token) -> None:
        tok = self.ts.expect_value(kw, "rotation")
        if tok.value not in ("none", "route", "same-same"):
            raise ConfigError(
                tok.span, "external.rotation must be none, route or same-same"
            )
        self.settings["external_rotation"] = tok.value

    def s_methods(self, kw: Token) -> None:
        field = "clientmethods" if kw.value == "clientmethod" else "socksmethods"
        self.settings[field] = self.method_list(
            kw, client_level=field == "clientmethods"
        )

    def method_list(self, kw: Token, *, client_level: bool) -> tuple[str, ...]:
        words = self.ts.line_words(kw)
        if not words:
            raise ConfigError(kw.span, f"'{kw.value}:' needs at least one method")
        out: list[str] = []
        for w in words:
            name = "pam.username" if w.value == "pam" else w.value
            if name not in KNOWN_METHODS:
                guess = keywords.suggest(name, KNOWN_METHODS)
                raise ConfigError(
                    w.span,
                    f"unknown authentication method {w.value!r}",
                    f"did you mean '{guess}'?" if guess else None,
                )
            if client_level and name in (
                "username",
                "pam.username",
                "bsdauth",
                "ldapauth",
                "gssapi",
            ):
                raise ConfigError(
                    w.span,
                    f"method {name!r} cannot be used at the client level",
                    hint="client methods are none, rfc931, pam.address, pam.any",
                )
            if name not in IMPLEMENTED_METHODS:
                raise ConfigError(w.span, f"method {name!r} is not supported yet")
            if name not in out:
                out.append(name)
        return tuple(out)

    def s_log(self, kw: Token) -> None:
        field = "logoutput" if kw.value == "logoutput" else "errorlog"
        words = self.ts.line_words(kw)
        if not words:
            raise ConfigError(kw.span, f"'{kw.value}:' needs a destination")
        targets = list(self.settings.get(field, ()))
        for w in words:
            targets.append(_log_target(w))
        self.settings[field] = tuple(targets)

    def s_debug(self, kw: Token) -> None:
        self.settings["debug"] = v.parse_int(
            self.ts.expect_value(kw, "level"), "debug", high=9
        )

    def s_timeout(self, kw: Token) -> None:
        value = v.parse_duration(self.ts.expect_value(kw, "seconds"), kw.value)
        self.timeouts[_TIMEOUT_FIELDS[kw.value]] = value

    def s_user(self, kw: Token) -> None:
        tok = self.ts.expect_value(kw, "user name")
        field = (
            "user_privileged" if kw.value == "user.privileged" else "user_unprivileged"
        )
        if kw.value == "user.libwrap":
            return
        import pwd

        try:
            pwd.getpwnam(tok.value)
        except KeyError:
            raise ConfigError(tok.span, f"no such user {tok.value!r}") from None
        self.settings[field] = tok.value

    # -- rules ----------------------------------------------------------

    def rule(self, kind: RuleKind, head: Token, verdict_tok: Token, skip: int) -> None:
        ts = self.ts
        for _ in range(skip):
            ts.next()
        if self.seen_rule is None:
            self.seen_rule = head
        brace = ts.next()
        if brace is None or brace.kind is not TokenKind.LBRACE:
            raise ConfigError(verdict_tok.span, "'{' expected after the rule verdict")
        if kind is RuleKind.HOSTID:
            self.skip_to_close(head)
            raise ConfigError(head.span, "hostid rules are not supported on Linux")
        fields: dict[str, Any] = {}
        errors_before = len(self.errors)
        src: AddressSpec | None = None
        dst: AddressSpec | None = None
        while True:
            tok = ts.peek()
            if tok is None:
                raise ConfigError(head.span, "this rule has no closing '}'")
            if tok.kind is TokenKind.RBRACE:
                ts.next()
                break
            try:
                if tok.kind is not TokenKind.KEYWORD:
                    raise ConfigError(
                        tok.span, f"keyword expected in rule body, not {tok.value!r}"
                    )
                ts.next()
                if tok.value == "from":
                    src = v.parse_rule_address(ts, tok)
                elif tok.value == "to":
                    dst = v.parse_rule_address(ts, tok)
                else:
                    self.rule_keyword(kind, tok, fields)
            except ConfigError as e:
                self.errors.append(e)
                ts.skip_line(tok.line)
                if ts.peek() is tok:
                    ts.next()
        if len(self.errors) > errors_before:
            return
        if src is None or dst is None:
            missing = "from:" if src is None else "to:"
            raise ConfigError(
                head.span,
                f"rule has no '{missing}' address",
                hint="every rule needs 'from: ... to: ...'",
            )
        rules = self.rules[kind]
        rules.append(
            Rule(kind, verdict_tok.value, len(rules) + 1, head.span, src, dst, **fields)
        )

    def skip_to_close(self, head: Token) -> None:
        while (tok := self.ts.next()) is not None:
            if tok.kind is TokenKind.RBRACE:
                return

    def rule_keyword(self, kind: RuleKind, kw: Token, fields: dict[str, Any]) -> None:
        name = kw.value
        socks_only = name in ("command", "protocol", "proxyprotocol")
        if socks_only and kind is not RuleKind.SOCKS:
            raise ConfigError(kw.span, f"'{name}:' is only valid in socks rules")
        if name in keywords.DEPRECATED and name not in _TIMEOUT_FIELDS:
            new = (
                "clientmethod"
                if (name == "method" and kind is RuleKind.CLIENT)
                else keywords.DEPRECATED[name]
            )
            self.warn(kw, f"'{name}' is deprecated", f"use '{new}'")
        if name == "command":
            fields["commands"] = self.word_set(kw, _COMMANDS, "command")
        elif name == "protocol":
            fields["protocols"] = self.word_set(kw, _PROTOCOLS, "protocol")
        elif name == "proxyprotocol":
            fields["proxyprotocols"] = self.word_set(
                kw, _PROXYPROTOCOLS, "proxy protocol"
            )
        elif name in ("socksmethod", "clientmethod", "method"):
            client_level = name == "clientmethod" or (
                name == "method" and kind is RuleKind.CLIENT
            )
            key = "clientmethods" if client_level else "socksmethods"
            fields[key] = self.method_list(kw, client_level=client_level)
        elif name == "log":
            words = self.ts.line_words(kw)
            flags = set()
            for w in words:
                flag = _LOG_FLAGS.get(w.value)
                if flag is None:
                    raise ConfigError(
                        w.span,
                        f"unknown log flag {w.value!r}",
                        hint="connect disconnect data error iooperation tcpinfo",
                    )
                flags.add(flag)
            fields["log"] = frozenset(flags)
        elif name in _TIMEOUT_FIELDS:
            value = v.parse_duration(self.ts.expect_value(kw, "seconds"), name)
            fields.setdefault("timeouts", {})[_TIMEOUT_FIELDS[name]] = value
        elif (handler := _RULE_KEYWORDS.get(name)) is not None:
            handler(self, kind, kw, fields)
        else:
            self.unknown_keyword(kw, keywords.KNOWN_RULE)

    def word_set(self, kw: Token, allowed: frozenset[str], what: str) -> frozenset[str]:
        words = self.ts.line_words(kw)
        if not words:
            raise ConfigError(kw.span, f"'{kw.value}:' needs at least one {what}")
        for w in words:
            if w.value not in allowed:
                raise ConfigError(
                    w.span,
                    f"unknown {what} {w.value!r}",
                    hint=" ".join(sorted(allowed)),
                )
        return frozenset(w.value for w in words)

    # -- BIND and UDP ASSOCIATE ------------------------------------------

    def s_extension(self, kw: Token) -> None:
        """``extension: bind``: refused (see the hint)."""
        words = self.ts.line_words(kw)
        if not words:
            raise ConfigError(kw.span, "'extension:' needs an extension name")
        for w in words:
            if w.value != "bind":
                raise ConfigError(
                    w.span,
                    f"unknown extension {w.value!r}",
                    hint="the only one is bind",
                )
        raise ConfigError(
            kw.span,
            "'extension: bind' is not supported yet",
            hint="no Dante 1.4 client asks for it: socksify sends standard "
            "BINDs, which work without it",
        )

    def s_udp_connectdst(self, kw: Token) -> None:
        """``udp.connectdst: yes|no``."""
        tok = self.ts.expect_value(kw, "yes or no")
        self.settings["udp_connectdst"] = v.parse_bool(tok, "udp.connectdst")

    def s_advertise(self, kw: Token) -> None:
        """``internal.advertise`` / ``external.advertise`` (dantex): an IP
        literal to put in UDP ASSOCIATE / BIND replies, one per family."""
        tok = self.ts.expect_value(kw, "IP address")
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
        have: tuple[str, ...] = self.settings.get(field, ())
        if any(ipaddress.ip_address(a).version == ip.version for a in have):
            raise ConfigError(
                tok.span,
                f"a second IPv{ip.version} address for {kw.value}",
                hint="one address per family",
            )
        self.settings[field] = (*have, str(ip))

    def r_udp_portrange(
        self, kind: RuleKind, kw: Token, fields: dict[str, Any]
    ) -> None:
        """``udp.portrange: A - B`` (also ``A-B``), socks rules only."""
        if kind is not RuleKind.SOCKS:
            raise ConfigError(kw.span, "'udp.portrange:' is only valid in socks rules")
        ts = self.ts
        tok = ts.expect_value(kw, "port range")
        low_text, dash, high_text = tok.value.partition("-")
        if not dash:
            nxt = ts.peek()
            if nxt is None or nxt.value != "-" or nxt.line != kw.line:
                raise ConfigError(
                    tok.span,
                    "udp.portrange takes a range",
                    hint=f"write 'udp.portrange: {tok.value} - {tok.value}'",
                )
            ts.next()
            high_text = ts.expect_value(nxt, "end of the port range").value
        low = v.parse_int(
            Token(TokenKind.WORD, low_text, tok.span), "port", low=1, high=65535
        )
        high = v.parse_int(
            Token(TokenKind.WORD, high_text, tok.span), "port", low=1, high=65535
        )
        if low > high:
            raise ConfigError(tok.span, f"port range {low}-{high} is empty")
        fields["udp_portrange"] = (low, high)

    # -- whole-file checks ----------------------------------------------

    def build(self) -> Config:
        end = self.ts.end_span()
        if not self.internals and not any(
            e.message.startswith("bad internal") for e in self.errors
        ):
            self.errors.append(
                ConfigError(
                    end,
                    "no internal address given for server to listen for clients on",
                    hint="add e.g. 'internal: 127.0.0.1 port = 1080'",
                )
            )
        timeouts = dict(self.timeouts)
        if "io" in timeouts:
            io = timeouts.pop("io")
            timeouts.setdefault("io_tcp", io)
            timeouts.setdefault("io_udp", io)
        socksmethods = self.settings.get("socksmethods", ())
        if not socksmethods and not self.errors:
            self.warnings.append(
                ConfigWarning(
                    end,
                    "no socks authentication methods enabled; "
                    "all socks requests will be blocked",
                    hint="add 'socksmethod: none'",
                )
            )
        clientmethods = self.settings.get("clientmethods", ("none",))
        fields = {
            k: val
            for k, val in self.settings.items()
            if k not in ("socksmethods", "clientmethods")
        }
        return Config(
            path=self.path,
            internals=tuple(self.internals),
            externals=tuple(self.externals),
            socksmethods=socksmethods,
            clientmethods=clientmethods,
            timeouts=attrs.evolve(Timeouts(), **timeouts),
            client_rules=tuple(self.rules[RuleKind.CLIENT]),
            socks_rules=tuple(self.rules[RuleKind.SOCKS]),
            warnings=tuple(self.warnings),
            **fields,
        )


def _log_target(w: Token) -> LogTarget:
    text = w.value
    if text in ("stderr", "stdout"):
        return LogTarget(text, w.span)
    if text == "syslog" or text.startswith("syslog/"):
        facility = text.partition("/")[2] or "daemon"
        if facility not in _SYSLOG_FACILITIES:
            raise ConfigError(w.span, f"unknown syslog facility {facility!r}")
        return LogTarget("syslog", w.span, facility=facility)
    if text.startswith("/") or text.startswith("."):
        return LogTarget("file", w.span, path=text)
    raise ConfigError(
        w.span,
        f"log destination {text!r} must be stderr, stdout, syslog[/facility] "
        "or an absolute path",
    )


_Handler = Callable[[_Parser, Token], None]
_SETTINGS: dict[str, _Handler] = {
    "internal": _Parser.s_internal,
    "external": _Parser.s_external,
    "external.rotation": _Parser.s_rotation,
    "socksmethod": _Parser.s_methods,
    "clientmethod": _Parser.s_methods,
    "method": _Parser.s_methods,
    "logoutput": _Parser.s_log,
    "errorlog": _Parser.s_log,
    "debug": _Parser.s_debug,
    "user.privileged": _Parser.s_user,
    "user.unprivileged": _Parser.s_user,
    "user.notprivileged": _Parser.s_user,
    "user.libwrap": _Parser.s_user,
    **{name: _Parser.s_timeout for name in _TIMEOUT_FIELDS},
    "extension": _Parser.s_extension,
    "udp.connectdst": _Parser.s_udp_connectdst,
    "internal.advertise": _Parser.s_advertise,
    "external.advertise": _Parser.s_advertise,
}

_RuleHandler = Callable[[_Parser, RuleKind, Token, dict[str, Any]], None]
#: Rule keywords handled by a method of their own.
_RULE_KEYWORDS: dict[str, _RuleHandler] = {
    "udp.portrange": _Parser.r_udp_portrange,
}
