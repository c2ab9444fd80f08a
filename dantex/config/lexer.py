"""Tokens of Dante's sockd.conf language, each stamped with its :class:`Span`.

Lines matter in Dante's grammar (list keywords run to the end of their line),
so every token carries its line.  A word followed by ``:`` is a keyword, unless
it is the start of an IPv6 literal (``fe80::1``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from enum import Enum, auto

from attrs import frozen

from dantex.config.errors import ConfigError, Span

__all__ = ["Token", "TokenKind", "tokenize"]


class TokenKind(Enum):
    """What a token is."""

    KEYWORD = auto()  #: ``name:`` (the value holds ``name`` without the colon)
    WORD = auto()  #: an address, number, name, path ...
    OP = auto()  #: ``= != < > <= >=``
    LBRACE = auto()
    RBRACE = auto()


@frozen
class Token:
    """One token and where it came from."""

    kind: TokenKind
    value: str
    span: Span

    @property
    def line(self) -> int:
        """The 1-based line number."""
        return self.span.line


_TOKEN = re.compile(
    r"""
    (?P<ws>[ \t\r\f\v]+)
  | (?P<comment>\#.*)
  | (?P<lbrace>\{)
  | (?P<rbrace>\})
  | (?P<op>!=|>=|<=|=|<|>)
  | (?P<word>[^\s{}#=<>!]+)
    """,
    re.VERBOSE,
)
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*\Z")
_HEX = re.compile(r"[0-9A-Fa-f]{1,4}\Z")


def _is_keyword_prefix(word: str) -> bool:
    """Whether ``word`` (before a ``:``) names a keyword, not an IPv6 group."""
    return bool(_IDENT.match(word)) and not _HEX.match(word)


def tokenize(text: str, path: str) -> Iterator[Token]:
    """Split ``text`` into tokens.

    :raises ConfigError: a character that cannot start any token.
    """
    for lineno, line in enumerate(text.splitlines(), start=1):
        pos = 0
        while pos < len(line):
            m = _TOKEN.match(line, pos)
            if m is None:
                span = Span(path, lineno, pos + 1, pos + 2, line)
                raise ConfigError(span, f"unexpected character {line[pos]!r}")
            kind = m.lastgroup
            start, end = m.span()
            pos = end
            if kind in ("ws", "comment"):
                continue
            value = m.group()
            span = Span(path, lineno, start + 1, end + 1, line)
            if kind == "lbrace":
                yield Token(TokenKind.LBRACE, value, span)
            elif kind == "rbrace":
                yield Token(TokenKind.RBRACE, value, span)
            elif kind == "op":
                yield Token(TokenKind.OP, value, span)
            else:
                yield from _split_word(value, span)


def _split_word(value: str, span: Span) -> Iterator[Token]:
    """A raw word may be ``keyword:``, ``keyword:value`` or a plain word."""
    colon = value.find(":")
    if (
        colon > 0
        and _is_keyword_prefix(value[:colon])
        and not value.startswith("//", colon + 1)  # a URL: ldap://host/
    ):
        kw_span = Span(span.path, span.line, span.col, span.col + colon + 1, span.text)
        yield Token(TokenKind.KEYWORD, value[:colon], kw_span)
        rest = value[colon + 1 :]
        if rest:
            rest_col = span.col + colon + 1
            yield Token(
                TokenKind.WORD,
                rest,
                Span(span.path, span.line, rest_col, span.end_col, span.text),
            )
        return
    yield Token(TokenKind.WORD, value, span)
