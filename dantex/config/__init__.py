"""Dante's configuration language: lexer, parser, model and errors."""

from collections.abc import Set as AbstractSet
from importlib import resources

from dantex.config.errors import ConfigError, ConfigErrors, ConfigWarning, Span
from dantex.config.model import Config
from dantex.config.parser import parse, parse_file

__all__ = [
    "DEFAULT_CONFIG_NAME",
    "Config",
    "ConfigError",
    "ConfigErrors",
    "ConfigWarning",
    "Span",
    "default_config_text",
    "load",
    "parse",
    "parse_file",
]

#: How the embedded default shows up in messages.
DEFAULT_CONFIG_NAME = "<embedded default>"


def default_config_text() -> str:
    """The embedded safe default: 127.0.0.1:1080, loopback clients, no auth."""
    return resources.files("dantex.config").joinpath("default.conf").read_text("utf-8")


def load(path: str | None, *, supported: AbstractSet[str] | None = None) -> Config:
    """Parse ``path``, or the embedded default when ``path`` is None.

    :param supported: gated features to accept (see :mod:`.support`).
    :raises ConfigErrors: every error in the file.
    """
    if path is None:
        return parse(default_config_text(), DEFAULT_CONFIG_NAME, supported=supported)
    return parse_file(path, supported=supported)
