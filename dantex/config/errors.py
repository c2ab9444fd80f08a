"""Configuration errors that point at the text: ``file:line:col: message``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from attrs import frozen

__all__ = ["ConfigError", "ConfigErrors", "ConfigWarning", "Span"]


@frozen
class Span:
    """Where a token sits: 1-based line and column, ``end_col`` exclusive."""

    path: str
    line: int
    col: int
    end_col: int
    #: the whole source line, for the excerpt under the message
    text: str = ""

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col}"

    def excerpt(self) -> str:
        """The source line and a ``^^^`` marker under the span."""
        if not self.text:
            return ""
        width = max(1, self.end_col - self.col)
        return f"{self.text}\n{' ' * (self.col - 1)}{'^' * width}"


class ConfigError(Exception):
    """One problem in a configuration file.

    ``str()`` gives ``sockd.conf:12:17: message (hint)`` followed by the
    offending line and a marker under the span.
    """

    def __init__(self, span: Span, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.span = span
        self.message = message
        self.hint = hint

    def headline(self, severity: str = "error") -> str:
        """``file:line:col: error: message (hint)`` on one line."""
        hint = f" ({self.hint})" if self.hint else ""
        return f"{self.span}: {severity}: {self.message}{hint}"

    def render(self, severity: str = "error") -> str:
        """The headline plus the source excerpt."""
        excerpt = self.span.excerpt()
        return self.headline(severity) + (f"\n{excerpt}" if excerpt else "")

    def __str__(self) -> str:
        return self.render()


class ConfigWarning(ConfigError):
    """Accepted, but worth changing (deprecated keyword, risky setting)."""

    def __str__(self) -> str:
        return self.render("warning")


class ConfigErrors(Exception):
    """Every error found in one file, sorted by position."""

    def __init__(
        self, errors: Iterable[ConfigError], warnings: Sequence[ConfigWarning] = ()
    ) -> None:
        self.errors = sorted(errors, key=lambda e: (e.span.line, e.span.col))
        self.warnings = list(warnings)
        super().__init__(self.render())

    def render(self) -> str:
        """All errors, each with its excerpt, then a count."""
        parts = [e.render() for e in self.errors]
        n = len(self.errors)
        parts.append(f"{n} error{'s' if n != 1 else ''} in configuration")
        return "\n".join(parts)
