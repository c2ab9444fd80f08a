"""Interfaces shared across dantex."""

from __future__ import annotations

from twisted.internet.interfaces import (
    IReactorCore,
    IReactorFDSet,
    IReactorProcess,
    IReactorSocket,
    IReactorTCP,
    IReactorThreads,
    IReactorTime,
    IReactorUDP,
)

__all__ = ["IServerReactor"]


class IServerReactor(
    IReactorCore,
    IReactorTime,
    IReactorFDSet,
    IReactorProcess,
    IReactorTCP,
    IReactorUDP,
    IReactorSocket,
    IReactorThreads,
):
    """Everything the server asks of its reactor (the default epoll one has it all).

    Only a typing aid: the real reactor provides each parent interface.
    """
