"""Recursive-descent parser for Dante's sockd.conf (1.4 syntax and the older one).

``parse(text, path)`` returns a checked :class:`~dantex.config.model.Config`
or raises :class:`~dantex.config.errors.ConfigErrors` carrying every error in
the file (not just the first), sorted by position, and the warnings.

The whole Dante 1.4 language is parsed and its syntax checked: every global
setting (:mod:`._settings`), socket options, ``client``/``hostid``/``socks``
rules, ``route { }`` and ``monitor { }`` blocks and every keyword inside them
(:mod:`._body`).  Keywords whose behaviour dantex does not provide yet are
stored in the model and refused at the end with "'<keyword>' is not
supported yet" through the single switch in :mod:`dantex.config.support`.
Pre-1.4 keywords (``method:``, bare ``pass``/``block``, ``maxsessions:`` ...)
are accepted with a warning that names the new keyword.
"""

from __future__ import annotations

from collections.abc import Set
from typing import Any

import attrs

from dantex.config import _values as v
from dantex.config import keywords, support
from dantex.config.errors import ConfigError, ConfigErrors, ConfigWarning, Span
from dantex.config.lexer import Token, TokenKind, tokenize
from dantex.config.model import (
    AddressSpec,
    Config,
    ExternalAddress,
    InternalAddress,
    Monitor,
    Route,
    Rule,
    RuleKind,
    Timeouts,
    Use,
)

__all__ = ["KNOWN_METHODS", "parse", "parse_file"]

#: Authentication methods Dante knows (``pam`` is the old name of pam.username).
KNOWN_METHODS = frozenset(
    "none username gssapi rfc931 pam.any pam.address pam.username bsdauth "
    "ldapauth".split()
)
#: Methods that can be decided before any SOCKS byte (client-rule level).
CLIENT_METHODS = frozenset({"none", "rfc931", "pam.address", "pam.any"})
#: Methods that yield a user name, so that ``user:``/``group:`` can match.
NAME_METHODS = frozenset(
    {"username", "rfc931", "pam.any", "pam.username", "bsdauth", "ldapauth", "gssapi"}
)


def parse_file(path: str, *, supported: Set[str] | None = None) -> Config:
    """Read and parse ``path``.

    :raises ConfigErrors: the file cannot be read or has errors.
    """
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError as e:
        raise ConfigErrors(
            [ConfigError(Span(path, 0, 0, 0), f"cannot read: {e.strerror}")]
        ) from None
    return parse(text, path, supported=supported)


def parse(text: str, path: str, *, supported: Set[str] | None = None) -> Config:
    """Parse a whole file's text.

    :param supported: gated features to accept (default
        :data:`dantex.config.support.SUPPORTED`).
    :raises ConfigErrors: one or more errors; all of them, sorted.
    """
    return Parser(text, path, supported).run()


class Parser:
    """The state of one parse; handlers in :mod:`._settings`/:mod:`._body`."""

    def __init__(self, text: str, path: str, supported: Set[str] | None) -> None:
        self.path = path
        self.supported = supported
        self.errors: list[ConfigError] = []
        self.warnings: list[ConfigWarning] = []
        self.uses: list[Use] = []
        tokens: list[Token] = []
        try:
            tokens = list(tokenize(text, path))
        except ConfigError as e:
            self.errors.append(e)
        self.ts = v.TokenStream(tokens, path)
        #: Config fields set by settings
        self.settings: dict[str, Any] = {}
        self.timeouts: dict[str, float] = {}
        self.internals: list[InternalAddress] = []
        self.externals: list[ExternalAddress] = []
        self.rules: dict[RuleKind, list[Rule]] = {k: [] for k in RuleKind}
        self.routes: list[Route] = []
        self.monitors: list[Monitor] = []
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
        self.errors.extend(support.refusals(self.uses, self.supported))
        if self.errors:
            raise ConfigErrors(self.errors, self.warnings)
        return config

    def statement(self, tok: Token) -> None:
        from dantex.config import _body, _settings

        ts = self.ts
        if tok.kind is TokenKind.KEYWORD:
            ts.next()
            if self.seen_rule is not None:
                ts.skip_line(tok.line)
                raise ConfigError(
                    tok.span,
                    f"server setting {tok.value!r} after the first rule",
                    hint=f"move it above line {self.seen_rule.line}",
                )
            _settings.setting(self, tok)
            return
        if tok.kind is TokenKind.WORD:
            nxt = ts.peek(1)
            if (
                tok.value in ("client", "socks", "hostid")
                and nxt is not None
                and nxt.value in ("pass", "block")
            ):
                self._first_rule(tok)
                _body.rule(self, RuleKind(tok.value), tok, nxt)
                return
            if tok.value in ("pass", "block") and nxt is not None and nxt.value == "{":
                self.warn(
                    tok,
                    f"bare '{tok.value}' rule is the old syntax",
                    f"write 'socks {tok.value} {{'",
                )
                self._first_rule(tok)
                _body.rule(self, RuleKind.SOCKS, tok, tok)
                return
            if tok.value in ("route", "monitor") and nxt is not None:
                self._first_rule(tok)
                if tok.value == "route":
                    _body.route(self, tok)
                else:
                    _body.monitor(self, tok)
                return
            if tok.value in ("client", "socks", "hostid"):
                ts.next()
                raise ConfigError(
                    tok.span,
                    f"'pass' or 'block' expected after {tok.value!r}",
                    hint=f"write '{tok.value} pass {{' or '{tok.value} block {{'",
                )
            guess = keywords.suggest(tok.value)
            if guess is not None and (nxt is None or nxt.line != tok.line):
                raise ConfigError(
                    tok.span,
                    f"{tok.value!r} is not a setting or a rule",
                    hint=f"did you mean '{guess}:'?",
                )
        raise ConfigError(tok.span, f"expected a setting or a rule, not {tok.value!r}")

    def _first_rule(self, tok: Token) -> None:
        if self.seen_rule is None:
            self.seen_rule = tok

    # -- helpers for handlers -------------------------------------------

    def warn(self, tok: Token | Span, message: str, hint: str | None = None) -> None:
        """Record a warning at ``tok``."""
        span = tok.span if isinstance(tok, Token) else tok
        self.warnings.append(ConfigWarning(span, message, hint))

    def use(self, feature: str, tok: Token, label: str | None = None) -> None:
        """Record a use of the gated ``feature`` (see :mod:`..support`)."""
        self.uses.append(Use(feature, tok.span, label or f"'{tok.value}'"))

    def deprecated(self, kw: Token, new: str) -> None:
        """Warn that ``kw`` is an old keyword, naming the new one."""
        self.warn(kw, f"'{kw.value}' is deprecated", f"use '{new}'")

    def unknown_keyword(self, kw: Token, pool: frozenset[str], where: str) -> None:
        """Raise the error for a keyword not valid here, with a suggestion."""
        self.ts.skip_line(kw.line)
        if keywords.is_known(kw.value):
            raise ConfigError(kw.span, f"'{kw.value}:' is not valid {where}")
        guess = keywords.suggest(kw.value, pool)
        hint = f"did you mean '{guess}'?" if guess else None
        raise ConfigError(kw.span, f"unknown keyword '{kw.value}'", hint)

    def line_list(self, kw: Token, what: str) -> list[Token]:
        """The words of a list keyword, which takes the rest of its line.

        :raises ConfigError: no word, or another keyword on the same line
            (Dante: a list keyword swallows its line).
        """
        words = self.ts.line_words(kw)
        nxt = self.ts.peek()
        if nxt is not None and nxt.line == kw.line and nxt.kind is TokenKind.KEYWORD:
            self.ts.skip_line(kw.line)
            raise ConfigError(
                nxt.span,
                f"'{kw.value}:' takes the rest of its line",
                hint=f"put '{nxt.value}:' on a line of its own",
            )
        if not words:
            raise ConfigError(kw.span, f"'{kw.value}:' needs at least one {what}")
        return words

    def raw_rest(self, kw: Token) -> str:
        """The text after ``kw`` to the end of its line (or a ``}`` on it),
        comment removed; its tokens are consumed.  For values that are not
        Dante words (URLs with ``=``, libwrap option lines)."""
        ts = self.ts
        start = kw.span.end_col - 1
        end = len(kw.span.text)
        while (tok := ts.peek()) is not None and tok.line == kw.line:
            if tok.kind is TokenKind.RBRACE:
                end = tok.span.col - 1
                break
            ts.next()
        return kw.span.text[start:end].split("#", 1)[0].strip()

    def word_set(
        self,
        kw: Token,
        allowed: frozenset[str],
        what: str,
        gate: str | None = None,
    ) -> frozenset[str]:
        """A list of words from ``allowed``; each may be gated as ``gate:word``."""
        out: set[str] = set()
        for w in self.line_list(kw, what):
            if w.value not in allowed:
                guess = keywords.suggest(w.value, allowed)
                hint = (
                    f"did you mean '{guess}'?" if guess else " ".join(sorted(allowed))
                )
                raise ConfigError(w.span, f"unknown {what} {w.value!r}", hint)
            if gate is not None and support.feature_of(f"{gate}:{w.value}"):
                self.use(f"{gate}:{w.value}", w, f"{what} '{w.value}'")
            out.add(w.value)
        return frozenset(out)

    def method_list(self, kw: Token, level: str) -> tuple[str, ...]:
        """``socksmethod:``/``clientmethod:``/``method:`` values.

        :param level: "client", "socks" or "route".
        """
        out: list[str] = []
        for w in self.line_list(kw, "method"):
            name = w.value
            if name == "pam":
                self.warn(w, "method 'pam' is deprecated", "use 'pam.username'")
                name = "pam.username"
            if name not in KNOWN_METHODS:
                guess = keywords.suggest(name, KNOWN_METHODS)
                raise ConfigError(
                    w.span,
                    f"unknown authentication method {w.value!r}",
                    f"did you mean '{guess}'?" if guess else None,
                )
            if level == "client" and name not in CLIENT_METHODS:
                raise ConfigError(
                    w.span,
                    f"method {name!r} cannot be used at the client level",
                    hint="client methods are none, rfc931, pam.address, pam.any",
                )
            if level == "route" and name not in ("none", "username", "gssapi"):
                raise ConfigError(
                    w.span,
                    f"method {name!r} is only valid for ACL rules, not routes",
                    hint="routes take none and username",
                )
            if level == "route" and name == "gssapi":
                raise ConfigError(
                    w.span, "method 'gssapi' is not supported for server chaining"
                )
            if name != "none":
                self.use(f"method:{name}", w, f"method '{name}'")
            if name in out:
                self.warn(w, f"method {name!r} is listed twice")
            else:
                out.append(name)
        return tuple(out)

    # -- whole-file checks ----------------------------------------------

    def _warn_connect_only_redirects(self) -> None:
        """``redirect`` acts on CONNECT only: say so where a socks-rule with a
        redirect also passes BIND or UDP (given, or by not naming its
        commands)."""
        others = {"bind", "bindreply", "udpassociate", "udpreply"}
        for rule in self.rules[RuleKind.SOCKS]:
            if rule.redirect_to is None and rule.redirect_from is None:
                continue
            if rule.commands is not None and not rule.commands & others:
                continue
            self.warn(
                rule.span,
                "redirect applies to CONNECT only; the BIND and UDP ASSOCIATE "
                "sessions this rule passes are not redirected",
                "add 'command: connect' to the rule",
            )

    def build(self) -> Config:
        end = self.ts.end_span()
        if not self.internals and not any("internal" in e.message for e in self.errors):
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
        from dantex.config._proxyproto import check_proxyprotocol

        check_proxyprotocol(self)
        self._warn_connect_only_redirects()
        settings = dict(self.settings)
        socksmethods = settings.pop("socksmethods", ())
        if not socksmethods and not self.errors:
            self.warn(
                end,
                "no socks authentication methods enabled; "
                "all socks requests will be blocked",
                hint="add 'socksmethod: none'",
            )
        clientmethods = settings.pop("clientmethods", ("none",))
        rotation = settings.get("external_rotation")
        if rotation == "same-same" and len(self.externals) == 1:
            self.warn(
                self.externals[0].span,
                "external.rotation 'same-same' with only one external address",
                hint="same-same uses the internal address the client connected to",
            )
        self._check_names(socksmethods)
        self._check_rule_methods(socksmethods, clientmethods)
        return Config(
            path=self.path,
            internals=tuple(self.internals),
            externals=tuple(self.externals),
            socksmethods=socksmethods,
            clientmethods=clientmethods,
            timeouts=attrs.evolve(Timeouts(), **timeouts),
            client_rules=tuple(self.rules[RuleKind.CLIENT]),
            hostid_rules=tuple(self.rules[RuleKind.HOSTID]),
            socks_rules=tuple(self.rules[RuleKind.SOCKS]),
            routes=tuple(self.routes),
            monitors=tuple(self.monitors),
            uses=tuple(self.uses),
            warnings=tuple(self.warnings),
            **settings,
        )

    def _check_rule_methods(
        self, socksmethods: tuple[str, ...], clientmethods: tuple[str, ...]
    ) -> None:
        """A rule may only name methods of the global lists (Dante refuses
        the file otherwise; without ``clientmethod:`` the list is ``none``)."""
        for kind in (RuleKind.CLIENT, RuleKind.SOCKS):
            for rule in self.rules[kind]:
                for level, used, allowed in (
                    ("socksmethod", rule.socksmethods, socksmethods),
                    ("clientmethod", rule.clientmethods, clientmethods),
                ):
                    for method in used or ():
                        if method in allowed:
                            continue
                        listed = " ".join(allowed) or "nothing"
                        self.errors.append(
                            ConfigError(
                                rule.span,
                                f"{level} {method!r} is set in the rule, but not "
                                f"in the global {level} list ({listed})",
                                hint=f"add it to the global '{level}:' line",
                            )
                        )

    def _check_names(self, global_methods: tuple[str, ...]) -> None:
        """Warn about rules whose ``user:``/``group:`` can never match (Dante
        checkrule(): no method of the rule yields a user name)."""
        for rule in self.rules[RuleKind.SOCKS]:
            if rule.users is None and rule.groups is None:
                continue
            methods = rule.socksmethods or global_methods
            if not NAME_METHODS.intersection(methods):
                self.warn(
                    rule.span,
                    f"socks-rule #{rule.number} names users or groups, but none of "
                    f"its methods ({' '.join(methods) or 'none'}) yields a user "
                    "name: it can never match",
                    hint="add e.g. 'socksmethod: username' to the rule",
                )


def address_text(spec: AddressSpec) -> str:
    """How an address spec reads in messages."""
    return str(spec)
