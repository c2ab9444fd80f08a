"""BIND through a route's parents (dantex: danted chains CONNECT only).

When a route names ``command: bind``, a BIND request is passed on: the last
parent binds and answers twice.  Its first reply (the address it listens
on; a wildcard becomes the parent's own address) is what the socks-rules
see as ``to:`` and what the client's first reply carries.  Its second
reply (the peer that connected to it) is checked as ``bindreply`` (``from:``
the peer, ``to:`` the client) and passed on, and the connection to the
parent is then relayed like a local BIND's peer (same log lines, see
:mod:`dantex.server.bind`).  Routes are failed over until the first reply
reaches the client; after it a failure ends the session with a second
reply saying why.  A ``via: direct`` route is the local BIND.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dantex.protocol.address import Address
from dantex.protocol.socks5 import Command, Reply
from dantex.rules.engine import Match
from dantex.server._bindwait import BindWait
from dantex.server._chain import Attempt, Reached
from dantex.server._failover import Failover, Outcome
from dantex.server._state import State
from dantex.server.connect import rule_timeout
from dantex.server.relay import Relay

if TYPE_CHECKING:
    from dantex.server.route import Plan
    from dantex.server.session import SocksSession

__all__ = ["ParentBindWait", "RoutedBind", "routed_bind"]

_WILDCARDS = ("0.0.0.0", "::")


def routed_bind(session: SocksSession) -> bool:
    """Start a routed BIND if a route names ``bind``; False: serve it here."""
    table = session.policy.routes
    if table is None or "bind" not in table.commands:
        return False
    RoutedBind(session).start()
    return True


class ParentBindWait(BindWait):
    """The wait for the peer while the parent listens for it."""

    kind = "bind-parent"

    def __init__(self, session: SocksSession, bound: Address, expected: list[str]):
        Relay.__init__(
            self,
            session.runtime.clock,
            self._wait_ended,
            rule_timeout(session, "io_tcp"),
        )
        self.session = session
        self.bound = bound
        self.expected = frozenset(expected)
        self.buffered = b""
        self.peer_sock = None
        self.peer = None
        self.relay = None
        self.reply_match = None
        self.reply_started = 0.0
        self._reactor = session.runtime.reactor
        self._listener = None

    def start(self) -> None:
        """Resume reading the client (for its EOF) while the parent waits."""
        self.session._resume()

    def peer_connected(self, reached: Reached) -> None:
        """The parent's second reply: check the peer as a local BIND does."""
        assert reached.bound is not None
        self.peer_first = reached.leftover
        peer = reached.bound
        self.accepted(reached.target, (peer.host, peer.port))  # type: ignore[arg-type]


class RoutedBind(Failover):
    """A BIND request trying its routes in turn."""

    command = "bind"

    def __init__(self, session: SocksSession) -> None:
        super().__init__(session, Match(None))
        self.wait: ParentBindWait | None = None
        #: the second reply, when it came before the rules decided
        self._early: Reached | None = None

    def attempt(self, plan: Plan) -> Attempt:
        session = self.session
        target = session.target
        assert target is not None
        return Attempt(
            session,
            plan,
            target,
            rule_timeout(session, "connect"),
            command=Command.BIND,
            on_first_reply=lambda bound: self._first_reply(plan, bound),
        )

    def direct(self) -> None:
        from dantex.server.bind import start_local_bind

        start_local_bind(self.session)

    def _first_reply(self, plan: Plan, bound: Address) -> None:
        """The parent listens: check the socks-rules against its address."""
        session = self.session
        self.committed = True
        if bound.host in _WILDCARDS:
            bound = Address.from_host(plan.hops[-1].host, bound.port)
        facts = session.socks_facts(session.client, bound, "bind")
        session.decide(
            lambda answers: session.policy.rules.match_socks(facts, answers),
            lambda match: self._decided(match, plan, bound),
        )

    def _decided(self, match: Match, plan: Plan, bound: Address) -> None:
        session = self.session
        if session.state is not State.REQUESTED:
            return
        session.socks_match = match
        if not match.passed:
            session.blocked(match)  # closes: the pending attempt is cancelled
            return
        session.external = bound
        session._write(session.reply(Reply.SUCCEEDED, bound, final=False))
        target = session.target
        assert target is not None
        expected = (
            [target.host] if target.is_ip and target.host not in _WILDCARDS else []
        )
        wait = ParentBindWait(session, bound, expected)
        self.wait = wait
        self.log_route(plan, bound, target)
        session.relay_started(wait)
        wait.start()
        early, self._early = self._early, None
        if early is not None:
            wait.peer_connected(early)

    def reached(self, reached: Reached, plan: Plan) -> None:
        wait = self.wait
        if wait is None:  # the second reply came before the rules decided
            if self.session.state is State.REQUESTED:
                self._early = reached
            else:
                reached.target.close()
            return
        wait.peer_connected(reached)

    def failed_late(self, outcome: Outcome) -> None:
        session = self.session
        wait = self.wait
        if wait is None:
            if session.state is State.REQUESTED:
                session.refuse(outcome.reply, f"serverchain failed: {outcome.reason}")
            return
        session._write(session.reply(outcome.reply, wait.bound))
        wait.failed(f"serverchain failed: {outcome.reason}")
