"""What the proxy peers (microsocks, squid, tinyproxy) have in common: a
frozen record of the running daemon, how it is started on its free port,
and the context that stops it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from tests.integration.peers._process import Daemon, listening, retry_on_bind_failure

__all__ = ["HttpProxyPeer", "ProxyPeer", "serving"]

P = TypeVar("P", bound="ProxyPeer")


@dataclass(frozen=True)
class ProxyPeer:
    """A running proxy daemon; *username* is ``None`` when it needs no auth."""

    host: str
    port: int
    pid: int
    dir: Path
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    daemon: Daemon = field(repr=False, compare=False, kw_only=True)

    @classmethod
    def launch(
        cls: type[P],
        daemon: Daemon,
        port: int,
        username: str | None = None,
        password: str | None = None,
    ) -> P:
        """Start *daemon*, wait until it listens on 127.0.0.1:*port*."""
        daemon.start(lambda: listening(daemon.pid, port), what="listening")
        return cls(
            host="127.0.0.1",
            port=port,
            pid=daemon.pid,
            dir=daemon.dir,
            username=username,
            password=password,
            daemon=daemon,
        )

    def log_text(self) -> str:
        """What the daemon wrote (its output, then its own log files)."""
        return self.daemon.log_text()

    def stop(self) -> None:
        """Stop it now (also done when the context exits)."""
        self.daemon.stop()


@dataclass(frozen=True)
class HttpProxyPeer(ProxyPeer):
    """A running HTTP proxy."""

    @property
    def url(self) -> str:
        """``http://host:port`` (no credentials)."""
        return f"http://{self.host}:{self.port}"


@contextmanager
def serving(start: Callable[[], P]) -> Iterator[P]:
    """The peer *start* makes (tried twice if its port was taken), stopped
    when the context exits."""
    peer = retry_on_bind_failure(start)
    try:
        yield peer
    finally:
        peer.stop()
