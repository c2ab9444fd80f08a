"""Network namespaces created by a test (root only), for what loopback cannot show.

Used to provoke real "network unreachable", "host unreachable" and connect
timeouts with routes of our own, and to run the embedded default config on
port 1080 where nothing else can hold that port.
"""

from __future__ import annotations

import itertools
import os
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from attrs import frozen

__all__ = ["NetNS", "netns"]

_counter = itertools.count()


@frozen
class NetNS:
    """A namespace: prefix commands with :attr:`exec` to run inside it."""

    name: str

    @property
    def exec(self) -> list[str]:
        """``ip netns exec <name>``."""
        return ["ip", "netns", "exec", self.name]

    def run(self, *args: str) -> None:
        """Run a command inside the namespace; raise if it fails."""
        subprocess.run([*self.exec, *args], check=True, capture_output=True, timeout=10)


@contextmanager
def netns(setup: Sequence[Sequence[str]] = ()) -> Iterator[NetNS]:
    """A fresh namespace with ``lo`` up, then each ``setup`` command run in it."""
    name = f"dantex-{os.getpid()}-{next(_counter)}"
    subprocess.run(
        ["ip", "netns", "add", name], check=True, capture_output=True, timeout=10
    )
    ns = NetNS(name)
    try:
        ns.run("ip", "link", "set", "lo", "up")
        for cmd in setup:
            ns.run(*cmd)
        yield ns
    finally:
        subprocess.run(
            ["ip", "netns", "del", name], check=False, capture_output=True, timeout=10
        )
