"""A worker's tie to its supervisor: the read end of a pipe it alone writes.

Nothing is ever written; the kernel closes the write end when the
supervisor ends, whatever ends it (SIGKILL included), and the worker then
reads EOF.  Unlike ``PR_SET_PDEATHSIG`` this needs no Linux-only call and
reaches the worker through its reactor, so it can stop in order.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from twisted.internet.interfaces import IReactorFDSet, IReadDescriptor
from twisted.python.failure import Failure
from zope.interface import implementer

__all__ = ["Lifeline"]


@implementer(IReadDescriptor)
class Lifeline:
    """Calls ``gone`` once when the pipe's other end is closed.

    :param fd: the read end (made non-blocking here).
    :param reactor: where it is registered (by the caller, ``addReader``).
    """

    def __init__(
        self, fd: int, reactor: IReactorFDSet, gone: Callable[[], None]
    ) -> None:
        os.set_blocking(fd, False)
        self.fd = fd
        self._reactor = reactor
        self._gone: Callable[[], None] | None = gone

    def fileno(self) -> int:
        return self.fd

    def logPrefix(self) -> str:
        return "dantex-lifeline"

    def doRead(self) -> None:
        try:
            data = os.read(self.fd, 64)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._end()

    def connectionLost(self, reason: Failure) -> None:
        # epoll reported HUP/ERR: the writer is gone as well
        self._end()

    def _end(self) -> None:
        gone, self._gone = self._gone, None
        if gone is None:
            return
        self._reactor.removeReader(self)
        os.close(self.fd)
        gone()
