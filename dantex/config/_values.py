"""Parsing of the value forms shared by many keywords: addresses, ports, lists."""

from __future__ import annotations

import ipaddress
import re
import socket

from dantex.config.errors import ConfigError, Span
from dantex.config.interfaces import interface_exists
from dantex.config.lexer import Token, TokenKind
from dantex.config.model import AddressSpec, AddressSpecKind, PortSpec

__all__ = [
    "OPERATORS",
    "is_number",
    "parse_bool",
    "parse_duration",
    "parse_int",
    "parse_port_number",
    "parse_rule_address",
]

#: Dante's port operators, symbolic and spelled out.
OPERATORS = {
    "=": "eq",
    "eq": "eq",
    "!=": "ne",
    "ne": "ne",
    ">=": "ge",
    "ge": "ge",
    "<=": "le",
    "le": "le",
    ">": "gt",
    "gt": "gt",
    "<": "lt",
    "lt": "lt",
}
_HOSTNAME = re.compile(
    r"[A-Za-z0-9_]([A-Za-z0-9_\-]*[A-Za-z0-9_])?(\.[A-Za-z0-9_]([A-Za-z0-9_\-]*[A-Za-z0-9_])?)*\.?\Z"
)
_NUMBER = re.compile(r"(0[xX][0-9a-fA-F]+|[0-9]+)\Z")


def is_number(text: str) -> bool:
    """Whether ``text`` is a decimal or ``0x`` hex number."""
    return bool(_NUMBER.match(text))


def parse_int(tok: Token, what: str, *, low: int = 0, high: int | None = None) -> int:
    """A decimal or ``0x`` hex number within bounds (Dante accepts both).

    :raises ConfigError: not a number, or out of bounds.
    """
    if tok.kind is not TokenKind.WORD or not _NUMBER.match(tok.value):
        raise ConfigError(tok.span, f"{what} must be a number, not {tok.value!r}")
    value = int(tok.value, 0)
    if value < low or (high is not None and value > high):
        bound = f"{low}-{high}" if high is not None else f">= {low}"
        raise ConfigError(tok.span, f"{what} {value} is out of range ({bound})")
    return value


def parse_duration(tok: Token, what: str) -> float:
    """Seconds as a whole number (0 = no limit)."""
    return float(parse_int(tok, what))


def parse_bool(tok: Token, what: str) -> bool:
    """``yes``/``no``."""
    if tok.value in ("yes", "no"):
        return tok.value == "yes"
    raise ConfigError(tok.span, f"{what} must be 'yes' or 'no', not {tok.value!r}")


def parse_port_number(tok: Token) -> int:
    """A port number, or a service name from the services database."""
    if _NUMBER.match(tok.value):
        return parse_int(tok, "port", high=65535)
    try:
        return socket.getservbyname(tok.value, "tcp")
    except (OSError, ValueError, UnicodeError):
        raise ConfigError(tok.span, f"unknown service name {tok.value!r}") from None


class TokenStream:
    """Tokens with a cursor; the parser's view of the file."""

    def __init__(self, tokens: list[Token], path: str) -> None:
        self.tokens = tokens
        self.pos = 0
        self.path = path

    def peek(self, ahead: int = 0) -> Token | None:
        """The token ``ahead`` positions after the cursor, if any."""
        i = self.pos + ahead
        return self.tokens[i] if i < len(self.tokens) else None

    def next(self) -> Token | None:
        """Consume and return the next token."""
        tok = self.peek()
        if tok is not None:
            self.pos += 1
        return tok

    def end_span(self) -> Span:
        """A span at the end of the file, for "unexpected end" errors."""
        last = self.tokens[-1].span if self.tokens else Span(self.path, 1, 1, 2)
        return Span(last.path, last.line, last.end_col, last.end_col + 1, last.text)

    def expect_value(self, after: Token, what: str) -> Token:
        """The next token, which must be a WORD on ``after``'s line."""
        tok = self.peek()
        if tok is None or tok.kind is not TokenKind.WORD or tok.line != after.line:
            span = after.span if tok is None or tok.line != after.line else tok.span
            raise ConfigError(span, f"{what} expected after {after.value!r}")
        self.pos += 1
        return tok

    def line_words(self, after: Token) -> list[Token]:
        """WORD tokens on ``after``'s line up to the next keyword or brace."""
        out: list[Token] = []
        while (tok := self.peek()) is not None and tok.line == after.line:
            if tok.kind is not TokenKind.WORD:
                break
            out.append(tok)
            self.pos += 1
        return out

    def skip_line(self, line: int) -> None:
        """Discard the rest of ``line`` (error recovery)."""
        while (tok := self.peek()) is not None and tok.line == line:
            if tok.kind is TokenKind.RBRACE:
                return
            self.pos += 1


def parse_port_spec(ts: TokenStream, port_tok: Token) -> PortSpec:
    """After ``port`` (or ``port:``): ``= N``, ``eq N``, ``N-M``, ``N - M``, ``: N``."""
    tok = ts.peek()
    if tok is None or tok.line != port_tok.line:
        raise ConfigError(port_tok.span, "port operator and number expected")
    if port_tok.kind is TokenKind.KEYWORD:  # "port: N"
        ts.next()
        return PortSpec("eq", parse_port_number(tok))
    op = OPERATORS.get(tok.value)
    if op is not None:
        ts.next()
        value = ts.expect_value(tok, "port number")
        return PortSpec(op, parse_port_number(value))
    ts.next()
    if tok.kind is TokenKind.WORD and "-" in tok.value.strip("-"):
        low_s, _, high_s = tok.value.partition("-")
        low = _port_in(tok, low_s)
        high = _port_in(tok, high_s)
    elif (
        (dash := ts.peek()) is not None and dash.value == "-" and dash.line == tok.line
    ):
        ts.next()
        high_tok = ts.expect_value(dash, "end of port range")
        low, high = parse_port_number(tok), parse_port_number(high_tok)
    else:
        raise ConfigError(
            tok.span,
            f"port operator expected before {tok.value!r}",
            hint=f"write 'port = {tok.value}'",
        )
    if low > high:
        raise ConfigError(tok.span, f"port range {low}-{high} is empty")
    return PortSpec("range", low, high)


def _port_in(tok: Token, text: str) -> int:
    return parse_port_number(Token(TokenKind.WORD, text, tok.span))


def parse_optional_port(ts: TokenStream, after: Token) -> PortSpec | None:
    """A ``port ...`` clause following an address on the same line, if present."""
    tok = ts.peek()
    if (
        tok is not None
        and tok.line == after.line
        and tok.value == "port"
        and tok.kind in (TokenKind.WORD, TokenKind.KEYWORD)
    ):
        ts.next()
        return parse_port_spec(ts, tok)
    return None


def parse_rule_address(ts: TokenStream, keyword: Token) -> AddressSpec:
    """The address after ``from:``/``to:``/``via:``, with its optional port.

    Dante's forms: ``0/0``, CIDR with a mandatory bit-count netmask, a host
    name, a ``.domain``, an interface name, and ``direct`` for ``via:``.
    """
    tok = ts.expect_value(keyword, "address")
    text = tok.value
    kind: AddressSpecKind
    network = None
    name = None
    if text == "0/0":
        kind = AddressSpecKind.ANY
    elif "/" in text:
        addr, _, bits = text.partition("/")
        if not bits.isdigit():
            raise ConfigError(
                tok.span,
                f"netmask {bits!r} must be a number of bits",
                hint="e.g. 10.0.0.0/8",
            )
        try:
            network = ipaddress.ip_network(f"{addr}/{bits}", strict=False)
        except ValueError as e:
            raise ConfigError(tok.span, f"bad network address {text!r}: {e}") from None
        if (
            isinstance(network, ipaddress.IPv6Network)
            and network.network_address.ipv4_mapped
        ):
            raise ConfigError(tok.span, "IPv4-mapped IPv6 addresses are not accepted")
        kind = AddressSpecKind.NETWORK
    elif _is_ip(text):
        raise ConfigError(
            tok.span,
            f"no netmask has been specified for {text!r}",
            hint=f"write {text}/{32 if ':' not in text else 128} for one host",
        )
    elif keyword.value == "via" and text == "direct":
        kind = AddressSpecKind.DIRECT
    elif text.startswith("."):
        if text != "." and not _HOSTNAME.match(text[1:]):
            raise ConfigError(tok.span, f"bad domain name {text!r}")
        kind, name = AddressSpecKind.DOMAIN, text.lower()
    elif interface_exists(text):
        kind, name = AddressSpecKind.INTERFACE, text
    elif _HOSTNAME.match(text):
        kind, name = AddressSpecKind.HOSTNAME, text.lower().rstrip(".")
    else:
        raise ConfigError(tok.span, f"bad address {text!r}")
    port = parse_optional_port(ts, tok)
    return AddressSpec(kind, tok.span, network=network, name=name, port=port)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def is_hostname(text: str) -> bool:
    """Whether ``text`` is syntactically a host name."""
    return bool(_HOSTNAME.match(text))


def parse_via(ts: TokenStream, keyword: Token) -> AddressSpec:
    """The gateway after ``via:``: ``direct``, or an IP/host name (no netmask)
    with an optional port (the default port is filled in by the caller)."""
    tok = ts.expect_value(keyword, "gateway address or 'direct'")
    text = tok.value
    if text == "direct":
        return AddressSpec(AddressSpecKind.DIRECT, tok.span)
    if _is_ip(text):
        ip = ipaddress.ip_address(text)
        net = ipaddress.ip_network(f"{ip}/{ip.max_prefixlen}")
        spec = AddressSpec(AddressSpecKind.NETWORK, tok.span, network=net)
    elif "/" in text:
        raise ConfigError(
            tok.span, "a gateway is one address", hint=f"write {text.split('/')[0]}"
        )
    elif interface_exists(text):
        spec = AddressSpec(AddressSpecKind.INTERFACE, tok.span, name=text)
    elif _HOSTNAME.match(text):
        spec = AddressSpec(AddressSpecKind.HOSTNAME, tok.span, name=text.lower())
    else:
        raise ConfigError(tok.span, f"bad gateway address {text!r}")
    after = ts.peek()
    if after is not None and after.line == tok.line and after.value == "port":
        for ahead in (1, 2):  # "port = N" or "port: N": danted wants a number
            value = ts.peek(ahead)
            if (
                value is not None
                and value.line == tok.line
                and value.kind is TokenKind.WORD
                and value.value not in OPERATORS
                and not _NUMBER.match(value.value)
            ):
                raise ConfigError(
                    value.span,
                    f"a gateway port must be a number, not {value.value!r}",
                    hint="danted looks up no service names in via:",
                )
    port = parse_optional_port(ts, tok)
    if port is not None and port.op != "eq":
        raise ConfigError(tok.span, "a gateway takes 'port = N'")
    return AddressSpec(spec.kind, spec.span, spec.network, spec.name, port)


def parse_ratio(tok: Token, what: str) -> tuple[int, int]:
    """``N/S`` (e.g. session.throttle clients per seconds)."""
    a, sep, b = tok.value.partition("/")
    if not sep or not _NUMBER.match(a) or not _NUMBER.match(b):
        raise ConfigError(tok.span, f"{what} must be N/S, not {tok.value!r}")
    first, second = int(a, 0), int(b, 0)
    if second == 0:
        raise ConfigError(tok.span, f"{what}: the second number must not be 0")
    return first, second


def parse_range(ts: TokenStream, keyword: Token, what: str) -> tuple[int, int]:
    """``A-B`` or ``A - B`` port numbers."""
    tok = ts.expect_value(keyword, what)
    if "-" in tok.value.strip("-"):
        low_s, _, high_s = tok.value.partition("-")
        low, high = _port_in(tok, low_s), _port_in(tok, high_s)
    else:
        dash = ts.peek()
        if dash is None or dash.value != "-" or dash.line != tok.line:
            raise ConfigError(tok.span, f"{what} must be a range like 40000-40100")
        ts.next()
        high_tok = ts.expect_value(dash, "end of range")
        low, high = parse_port_number(tok), parse_port_number(high_tok)
    if low > high or low == 0:
        raise ConfigError(tok.span, f"{what} {low}-{high} is empty or starts at 0")
    return low, high
