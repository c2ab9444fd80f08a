"""Parser for Dante's client configuration (``socks.conf`` / ``dante.conf``, §3.1).

Globals: ``route.maxfail``, ``route.badexpire``, ``timeout.connect``;
``debug``, ``logoutput``, ``errorlog`` and ``resolveprotocol`` are accepted
with a warning (a Twisted program logs through ``twisted.logger``; dantex
sends host names to the proxy).  ``route { }`` blocks with ``from:``,
``to:``, ``via:``, ``proxyprotocol:``, ``method:``/``socksmethod:``,
``command:`` and ``protocol:``.  Every other Dante keyword is refused with
"'<keyword>' is not supported yet".
"""

from __future__ import annotations

from collections.abc import Mapping

from attrs import frozen

from dantex.config import _values as v
from dantex.config.errors import ConfigError, ConfigErrors, ConfigWarning, Span
from dantex.config.lexer import Token, TokenKind, tokenize
from dantex.config.model import AddressSpec, AddressSpecKind

__all__ = ["ClientConfig", "Route", "Via", "parse_client_config"]

#: Default gateway ports (Dante: 1080 for SOCKS, 80 for HTTP).
SOCKS_PORT = 1080
HTTP_PORT = 80
_PROXYPROTOCOLS = {"socks_v4": "socks_v4", "socks_v5": "socks_v5", "http": "http",
                   "http_v1.0": "http", "http_v1.1": "http"}  # fmt: skip
_METHODS = frozenset({"none", "username"})
_COMMANDS = frozenset({"bind", "bindreply", "connect", "udpassociate", "udpreply"})
_IGNORED_GLOBALS = {
    "debug": "a Twisted program logs through twisted.logger",
    "logoutput": "a Twisted program logs through twisted.logger",
    "errorlog": "a Twisted program logs through twisted.logger",
    "resolveprotocol": "dantex sends host names to the proxy",
}
_UNSUPPORTED = frozenset(
    (
        "extension redirect clientcompatibility gssapi.enctype gssapi.keytab "
        "gssapi.servicename socksmethod.gssapi bandwidth session.max "
        "socket.option"
    ).split()
)


@frozen
class Via:
    """``via:``: a gateway (``host`` None for ``direct``) and its port."""

    host: str | None
    port: int | None
    span: Span


@frozen
class Route:
    """One ``route { }`` (``number`` counts from 1 in file order)."""

    number: int
    span: Span
    to: AddressSpec
    via: Via
    proxyprotocols: tuple[str, ...]
    methods: tuple[str, ...]
    commands: frozenset[str]

    @property
    def direct(self) -> bool:
        """``via: direct``."""
        return self.via.host is None

    def gateway_port(self, protocol: str) -> int:
        """``via:``'s port, or Dante's default for ``protocol``."""
        if self.via.port is not None:
            return self.via.port
        return HTTP_PORT if protocol == "http" else SOCKS_PORT


@frozen
class ClientConfig:
    """Routes and their failover settings.

    :ivar maxfail: failures before a route is skipped (``route.maxfail``).
    :ivar badexpire: seconds a failed route is skipped, 0 = for ever.
    :ivar connect_timeout: seconds to reach a gateway, 0 = the kernel's.
    """

    routes: tuple[Route, ...] = ()
    maxfail: int = 1
    badexpire: float = 300.0
    connect_timeout: float = 0.0
    warnings: tuple[ConfigWarning, ...] = ()


class _Parser:
    def __init__(self, text: str, path: str, first_route: int = 1) -> None:
        self.ts = v.TokenStream(list(tokenize(text, path)), path)
        self.errors: list[ConfigError] = []
        self.warnings: list[ConfigWarning] = []
        self.routes: list[Route] = []
        self.next_number = first_route
        self.settings: dict[str, float] = {}

    def parse(self) -> None:
        ts = self.ts
        while (tok := ts.next()) is not None:
            try:
                if tok.kind is TokenKind.WORD and tok.value == "route":
                    self._route(tok)
                elif tok.kind is TokenKind.KEYWORD:
                    self._global(tok)
                else:
                    raise ConfigError(tok.span, f"unexpected {tok.value!r}")
            except ConfigError as e:
                self.errors.append(e)
                ts.skip_line(tok.line)

    def _global(self, tok: Token) -> None:
        name = tok.value
        if name in _IGNORED_GLOBALS:
            self.ts.line_words(tok)
            self.warnings.append(
                ConfigWarning(
                    tok.span, f"'{name}' is ignored: {_IGNORED_GLOBALS[name]}"
                )
            )
        elif name == "route.maxfail":
            value = self.ts.expect_value(tok, "number")
            self.settings["maxfail"] = v.parse_int(value, name)
        elif name in ("route.badexpire", "timeout.connect"):
            value = self.ts.expect_value(tok, "seconds")
            self.settings[name] = v.parse_duration(value, name)
        elif name == "route":
            raise ConfigError(tok.span, "write 'route {', not 'route:'")
        else:
            raise self._unknown(tok)

    @staticmethod
    def _unknown(tok: Token) -> ConfigError:
        if tok.value in _UNSUPPORTED or tok.value.startswith(("gssapi", "socket")):
            return ConfigError(tok.span, f"'{tok.value}' is not supported yet")
        return ConfigError(tok.span, f"unknown keyword '{tok.value}'")

    def _route(self, head: Token) -> None:
        ts = self.ts
        brace = ts.next()
        if brace is None or brace.kind is not TokenKind.LBRACE:
            raise ConfigError(head.span, "'{' expected after 'route'")
        fields: dict[str, object] = {}
        errors_before = len(self.errors)
        while True:
            tok = ts.next()
            if tok is None:
                raise ConfigError(ts.end_span(), "route is not closed with '}'")
            if tok.kind is TokenKind.RBRACE:
                break
            try:
                self._route_keyword(tok, fields)
            except ConfigError as e:
                self.errors.append(e)
                ts.skip_line(tok.line)
        if len(self.errors) == errors_before:
            self._finish_route(head, fields)

    def _route_keyword(self, tok: Token, fields: dict[str, object]) -> None:
        ts = self.ts
        if tok.kind is not TokenKind.KEYWORD:
            raise ConfigError(tok.span, f"keyword expected, not {tok.value!r}")
        name = tok.value
        if name == "from":
            spec = v.parse_rule_address(ts, tok)
            any_network = spec.network is not None and spec.network.prefixlen == 0
            if spec.kind is not AddressSpecKind.ANY and not any_network:
                raise ConfigError(
                    spec.span,
                    "'from:' other than 0/0 is not supported yet",
                    hint="routes apply to every local address",
                )
            fields["from"] = spec
        elif name == "to":
            fields["to"] = v.parse_rule_address(ts, tok)
        elif name == "via":
            fields["via"] = self._via(tok)
        elif name == "proxyprotocol":
            fields["proxyprotocol"] = self._words(
                tok, _PROXYPROTOCOLS, "proxy protocol"
            )
        elif name in ("method", "socksmethod"):
            fields["method"] = self._words(tok, dict.fromkeys(_METHODS), "method")
        elif name == "command":
            fields["command"] = self._words(tok, dict.fromkeys(_COMMANDS), "command")
        elif name == "protocol":
            self._words(tok, {"tcp": "tcp", "udp": "udp"}, "protocol")
        else:
            raise self._unknown(tok)

    def _words(
        self, tok: Token, known: Mapping[str, str | None], what: str
    ) -> tuple[str, ...]:
        words = self.ts.line_words(tok)
        if not words:
            raise ConfigError(tok.span, f"{what} expected after '{tok.value}'")
        out: list[str] = []
        for w in words:
            if w.value not in known:
                if w.value in ("gssapi", "upnp"):
                    raise ConfigError(w.span, f"'{w.value}' is not supported yet")
                raise ConfigError(w.span, f"unknown {what} '{w.value}'")
            out.append(known[w.value] or w.value)
        return tuple(dict.fromkeys(out))

    def _via(self, tok: Token) -> Via:
        value = self.ts.expect_value(tok, "gateway address or 'direct'")
        if value.value == "direct":
            return Via(None, None, value.span)
        host = value.value
        if "/" in host:
            raise ConfigError(value.span, "a gateway is one address, without a netmask")
        if not (v.is_hostname(host) or _is_ip(host)):
            raise ConfigError(value.span, f"bad gateway address {host!r}")
        port = v.parse_optional_port(self.ts, value)
        if port is not None and port.op != "eq":
            raise ConfigError(value.span, "a gateway has one port: 'port = N'")
        return Via(host, port.low if port else None, value.span)

    def _finish_route(self, head: Token, fields: dict[str, object]) -> None:
        missing = [k for k in ("from", "to", "via") if k not in fields]
        if missing:
            self.errors.append(
                ConfigError(
                    head.span, f"route without {', '.join(m + ':' for m in missing)}"
                )
            )
            return
        via = fields["via"]
        to = fields["to"]
        assert isinstance(via, Via) and isinstance(to, AddressSpec)
        protocols = fields.get("proxyprotocol", ("socks_v4", "socks_v5"))
        methods = fields.get("method", ("none",))
        assert isinstance(protocols, tuple) and isinstance(methods, tuple)
        if "http" in protocols and len(protocols) > 1:
            self.errors.append(
                ConfigError(via.span, "'http' cannot be combined with socks protocols")
            )
        if (
            "username" in methods
            and "none" not in methods
            and protocols == ("socks_v4",)
        ):
            self.errors.append(
                ConfigError(via.span, "method 'username' needs proxyprotocol socks_v5")
            )
        commands = fields.get("command")
        if commands is None:
            commands = ("connect",) if via.host is None or protocols == ("http",) else (
                "connect", "bind", "bindreply", "udpassociate", "udpreply")  # fmt: skip
        assert isinstance(commands, tuple)
        self.routes.append(
            Route(
                self.next_number,
                head.span,
                to,
                via,
                protocols,
                methods,
                frozenset(commands),
            )
        )
        self.next_number += 1

    def config(self) -> ClientConfig:
        if self.errors:
            raise ConfigErrors(self.errors, self.warnings)
        s = self.settings
        return ClientConfig(
            tuple(self.routes),
            maxfail=int(s.get("maxfail", 1)),
            badexpire=s.get("route.badexpire", 300.0),
            connect_timeout=s.get("timeout.connect", 0.0),
            warnings=tuple(self.warnings),
        )


def _is_ip(text: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def parse_client_config(text: str, path: str, *, first_route: int = 1) -> ClientConfig:
    """Parse a ``socks.conf``.

    :raises ConfigErrors: every error, as ``file:line:col: message``.
    """
    parser = _Parser(text, path, first_route)
    parser.parse()
    return parser.config()
