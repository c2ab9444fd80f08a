"""Checks and handlers for the authentication keywords (Dante §1.4, §1.9).

Dante's LDAP keywords are stored verbatim by the parser (``Config.ldap`` /
``Rule.ldap``); this module checks the values of the ones dantex honours, so
a typo is a ``file:line:col`` error instead of a failure at the first login.
It also holds dantex's own keywords:

* ``username.passwordfile: PATH`` -- the ``username`` method checks this
  htpasswd-style file instead of system accounts;
* ``auth.failures: N/S`` -- slow down a source after N failed
  authentications in S seconds (``0`` turns it off; default ``5/60``);
* ``rfc931.port: N``, ``rfc931.timeout: S`` -- where and how long to ask
  identd (Dante: always port 113);
* ``ldap[.auth].starttls: yes|no``, ``ldap[.auth].timeout: S``,
  ``ldap[.auth].cache: S`` -- StartTLS, operation timeout and result cache.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from dantex.config import _values as v
from dantex.config.errors import ConfigError
from dantex.config.lexer import Token

if TYPE_CHECKING:
    from dantex.config.parser import Parser

__all__ = ["LDAP_HONOURED", "check_ldap", "s_auth_failures", "s_passwordfile"]

_YESNO = "yes/no"
_INT = "port"
_SECONDS = "seconds"
_TEXT = "text"
_URL = "url"
_PATH = "path"
_FILTER = "filter"

_LDAP_COMMON = {
    "url": _URL,
    "server": _TEXT,
    "port": _INT,
    "port.ssl": _INT,
    "ssl": _YESNO,
    "basedn": _TEXT,
    "filter": _FILTER,
    "certcheck": _YESNO,
    "certfile": _PATH,
    "certpath": _PATH,
    "starttls": _YESNO,
    "timeout": _SECONDS,
    "cache": _SECONDS,
}
#: LDAP keywords dantex honours -> the kind of value each takes.
LDAP_HONOURED: dict[str, str] = {
    **{f"ldap.auth.{k}": t for k, t in _LDAP_COMMON.items()},
    **{f"ldap.{k}": t for k, t in _LDAP_COMMON.items()},
    "ldap.attribute": _TEXT,
    "ldap.group": _TEXT,
}


def check_ldap(kw: Token, words: tuple[str, ...], *, in_rule: bool) -> None:
    """Check one LDAP keyword's value.

    :raises ConfigError: a value of the wrong kind, or a keyword dantex
        does not honour (or not at this place).
    """
    name = kw.value
    kind = LDAP_HONOURED.get(name)
    if kind is None:
        raise ConfigError(kw.span, f"'{name}' is not supported yet")
    if in_rule != (name == "ldap.group"):
        where = "in a rule" if in_rule else "as a server setting"
        hint = (
            "LDAP servers are set globally; rules name groups with 'ldap.group:'"
            if in_rule
            else "'ldap.group:' belongs in a socks-rule"
        )
        raise ConfigError(kw.span, f"'{name}:' is not supported {where}", hint)
    if kind in (_TEXT, _URL):
        values = words
    else:
        if len(words) != 1:
            raise ConfigError(kw.span, f"'{name}:' takes one value")
        values = words
    for value in values:
        _check_value(kw, name, kind, value)


def _check_value(kw: Token, name: str, kind: str, value: str) -> None:
    if kind == _YESNO and value not in ("yes", "no"):
        raise ConfigError(kw.span, f"'{name}:' must be 'yes' or 'no', not {value!r}")
    if kind == _INT and not (value.isdigit() and 1 <= int(value) <= 65535):
        raise ConfigError(kw.span, f"'{name}:' must be a port number, not {value!r}")
    if kind == _SECONDS and not value.isdigit():
        raise ConfigError(kw.span, f"'{name}:' must be whole seconds, not {value!r}")
    if kind == _URL:
        parts = urlsplit(value)
        if parts.scheme.lower() not in ("ldap", "ldaps") or not parts.hostname:
            raise ConfigError(
                kw.span,
                f"'{name}:' wants ldap://host[:port]/basedn or ldaps://...",
            )
        try:
            parts.port  # noqa: B018 (raises on a bad port)
        except ValueError:
            raise ConfigError(kw.span, f"'{name}:' has a bad port") from None
    if kind == _FILTER and (
        "%s" not in value or not (value.startswith("(") and value.endswith(")"))
    ):
        raise ConfigError(
            kw.span,
            f"'{name}:' must be an LDAP filter with %s for the user name",
            hint="e.g. (uid=%s)",
        )


def s_passwordfile(p: Parser, kw: Token) -> None:
    """``username.passwordfile: PATH`` (dantex): ``username`` checks this file."""
    tok = p.ts.expect_value(kw, "file name")
    path = tok.value
    if not os.path.isabs(path):
        base = os.path.dirname(os.path.abspath(p.path)) if p.path else os.getcwd()
        path = os.path.join(base, path)
    if not os.path.isfile(path):
        raise ConfigError(tok.span, f"password file {tok.value!r} does not exist")
    p.settings["passwordfile"] = path


def s_auth_failures(p: Parser, kw: Token) -> None:
    """``auth.failures: N/S`` (dantex), or ``0`` to turn slowing down off."""
    tok = p.ts.expect_value(kw, "N/S")
    count, slash, seconds = tok.value.partition("/")
    if tok.value == "0":
        p.settings["auth_failures"] = (0, 60.0)
        return
    if not slash or not count.isdigit() or not seconds.isdigit() or int(seconds) < 1:
        raise ConfigError(
            tok.span,
            "auth.failures wants N/S: failures allowed per S seconds (or 0)",
            hint="e.g. 'auth.failures: 5/60'",
        )
    p.settings["auth_failures"] = (int(count), float(seconds))


def s_rfc931(p: Parser, kw: Token) -> None:
    """``rfc931.port: N`` / ``rfc931.timeout: S`` (dantex)."""
    tok = p.ts.expect_value(kw, "number")
    if kw.value == "rfc931.port":
        p.settings["rfc931_port"] = v.parse_int(tok, kw.value, low=1, high=65535)
    else:
        p.settings["rfc931_timeout"] = float(v.parse_int(tok, kw.value, low=1))
