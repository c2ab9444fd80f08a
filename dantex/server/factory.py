"""The listening side: one factory shared by every ``internal:`` socket."""

from __future__ import annotations

from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import Protocol, ServerFactory

from dantex.server.context import Policy, Runtime
from dantex.server.proxyproto import ProxyHeaderGate
from dantex.server.session import SocksSession

__all__ = ["SocksFactory"]


class SocksFactory(ServerFactory):
    """Builds a :class:`SocksSession` per connection with the current policy.

    ``policy`` is replaced on reload; sessions keep the one they started with.
    """

    noisy = False  # no "Starting factory" event per listener

    def __init__(self, policy: Policy, runtime: Runtime) -> None:
        self.policy = policy
        self.runtime = runtime

    @property
    def needs_address(self) -> bool:
        """Whether :meth:`buildProtocol` looks at the client's address (the
        PROXY protocol's trusted senders); else a listener may pass None."""
        return self.policy.proxy_trust is not None

    def buildProtocol(self, addr: IAddress | None) -> Protocol:
        self.runtime.accepted += 1
        policy = self.policy
        session = SocksSession(policy, self.runtime)
        trust = policy.proxy_trust
        if trust is not None and trust.trusts(addr):  # its PROXY header first
            return ProxyHeaderGate(session, trust)
        return session
