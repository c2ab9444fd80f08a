"""Trying a request's routes in turn, and what the client is told (see :mod:`.route`).

:func:`judge` turns a failed attempt into an :class:`Outcome`: the reply it
stands for, how much it says about the target (``rank``) and whether the
route's path is broken (``mark``).  :class:`RoutedConnect` runs CONNECT
through the plans of :meth:`~dantex.server.route.RouteTable.plans`;
:class:`Failover`, its base, is shared with BIND (:mod:`._routebind`) and
UDP ASSOCIATE (:mod:`._routeudp`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from attrs import frozen
from twisted.internet.defer import CancelledError
from twisted.python.failure import Failure

from dantex.client.errors import (
    HTTPProxyRefusedError,
    ProxyAuthenticationError,
    ProxyConnectError,
    ProxyError,
    ProxyTimeoutError,
    Socks4RefusedError,
    Socks5RefusedError,
)
from dantex.log.format import dante_addr, session_line
from dantex.protocol import socks4
from dantex.protocol.address import Address, AddressType
from dantex.protocol.socks5 import Reply
from dantex.rules.addresses import NeedLookup
from dantex.rules.engine import Match
from dantex.server._chain import Attempt, Reached
from dantex.server._state import State
from dantex.server.errors import ConnectFailed, describe_failure
from dantex.server.route import Plan, client_credentials

if TYPE_CHECKING:
    from dantex.server.session import SocksSession

__all__ = [
    "NO_ROUTE",
    "Failover",
    "Outcome",
    "RoutedConnect",
    "judge",
    "start_routed_connect",
]

#: danted's words when no route is usable (reply 0x03).
NO_ROUTE = "no usable serverchain route to target found"
#: How many DNS answers route matching may wait for.
_MAX_LOOKUPS = 8

#: Ranks: how much an outcome says about the target (higher tells more).
PARENT, TIMEOUT, VAGUE, POLICY, TARGET = range(5)

#: HTTP statuses of a CONNECT refusal -> (SOCKS 5 reply, rank).
_HTTP = {
    403: (Reply.NOT_ALLOWED, POLICY),
    404: (Reply.HOST_UNREACHABLE, TARGET),
    502: (Reply.HOST_UNREACHABLE, TARGET),
    503: (Reply.CONNECTION_REFUSED, TARGET),
    504: (Reply.TTL_EXPIRED, TARGET),
}


@frozen
class Outcome:
    """A failed attempt: the reply it stands for, why, and what it means.

    :ivar rank: how much it says about the target (``TARGET`` highest).
    :ivar mark: whether it counts against the route (its path is broken).
    """

    reply: int
    reason: str
    rank: int
    mark: bool


def judge(error: BaseException, plan: Plan, attempt: Attempt | None = None) -> Outcome:
    """What a failed attempt along ``plan`` means (see the module docstring)."""
    last = str(plan.hops[-1]) if plan.hops else ""
    text = str(error)
    if isinstance(error, ProxyConnectError):
        return Outcome(Reply.NETWORK_UNREACHABLE, text, PARENT, True)
    if isinstance(error, ProxyTimeoutError):
        silent = attempt is None or not attempt.answered
        return Outcome(Reply.TTL_EXPIRED, text, TIMEOUT, silent)
    if isinstance(error, ProxyAuthenticationError):
        forwarded = any(h.credentials is not None and not h.fixed for h in plan.hops)
        return Outcome(Reply.NOT_ALLOWED, text, POLICY, not forwarded)
    if isinstance(
        error, Socks5RefusedError | Socks4RefusedError | HTTPProxyRefusedError
    ):
        if error.proxy != last:
            # a parent could not reach the next one: the path is broken
            return Outcome(Reply.NETWORK_UNREACHABLE, text, PARENT, True)
        if isinstance(error, Socks5RefusedError):
            reply = error.reply
            rank = (
                POLICY
                if reply == Reply.NOT_ALLOWED
                else VAGUE
                if reply == Reply.GENERAL_FAILURE
                else TARGET
            )
            return Outcome(reply, text, rank, False)
        if isinstance(error, HTTPProxyRefusedError):
            reply, rank = _HTTP.get(error.status, (Reply.GENERAL_FAILURE, VAGUE))
            return Outcome(reply, text, rank, False)
        return Outcome(Reply.GENERAL_FAILURE, text, VAGUE, False)
    if isinstance(error, ProxyError):  # closed, malformed: a broken parent
        return Outcome(Reply.GENERAL_FAILURE, text, PARENT, True)
    if isinstance(error, ConnectFailed):
        return Outcome(error.reply, error.reason, TARGET, False)
    if isinstance(error, ValueError):
        return Outcome(Reply.ADDRESS_TYPE_NOT_SUPPORTED, text, VAGUE, False)
    failed = describe_failure(error)
    return Outcome(failed.reply, failed.reason, VAGUE, False)


def best(outcomes: list[Outcome]) -> Outcome:
    """The outcome that tells most about the target (the first of equals)."""
    return max(outcomes, key=lambda o: o.rank)


def start_routed_connect(session: SocksSession, match: Match) -> None:
    """CONNECT for ``session`` through its routes (the policy has some)."""
    RoutedConnect(session, match).start()


class Failover:
    """One request trying its routes in turn (what every command shares).

    Subclasses say what an attempt is (:meth:`attempt`), what success does
    (:meth:`reached`) and what a ``via: direct`` route does (:meth:`direct`).
    Once :attr:`committed` (BIND's first reply went to the client), a failure
    is no longer failed over but handed to :meth:`failed_late`.
    """

    command = "connect"

    def __init__(self, session: SocksSession, match: Match) -> None:
        self.session = session
        self.match = match
        self.committed = False
        self._plans: list[Plan] = []
        self._outcomes: list[tuple[Plan, Outcome]] = []
        self._index = 0

    @property
    def plan_target(self) -> Address | None:
        """What routes' ``to:`` is matched against (None: not known yet)."""
        return self.session.target

    def start(self, tries: int = 0) -> None:
        """Find the usable routes (asking DNS first if a route needs it)."""
        session = self.session
        table = session.policy.routes
        assert table is not None
        runtime = session.runtime
        try:
            self._plans = table.plans(
                session.client,
                self.plan_target,
                self.command,
                runtime.resolver,
                runtime.route_marks,
                credentials=client_credentials(session),
            )
        except NeedLookup as e:
            if tries >= _MAX_LOOKUPS:
                self._plans = []
            else:
                d = runtime.resolver.lookup(e.lookup.kind, e.lookup.key)
                session._pending = d  # type: ignore[assignment]
                d.addCallback(lambda _: self._after_lookup(tries + 1))
                return
        self._next()

    def _after_lookup(self, tries: int) -> None:
        self.session._pending = None
        if self.alive():
            self.start(tries)

    def alive(self) -> bool:
        """Whether the session still waits for us."""

        return self.session.state is State.REQUESTED or self.committed

    def _next(self) -> None:
        session = self.session
        if not self.alive():
            return
        if self._index >= len(self._plans):
            self._give_up()
            return
        plan = self._plans[self._index]
        self._index += 1
        if plan.direct:
            self.direct()
            return
        attempt = self.attempt(plan)
        d = attempt.start()
        session._pending = d  # type: ignore[assignment]
        # BIND outlives _pending (the rules may ask DNS after the first reply)
        session.cleanups.append(d.cancel)
        d.addCallbacks(
            self._reached,
            self._failed,
            callbackArgs=(plan,),
            errbackArgs=(plan, attempt),
        )

    def _reached(self, reached: Reached, plan: Plan) -> None:
        session = self.session
        session._pending = None
        if not self.alive():
            reached.target.close()
            return
        session.runtime.route_marks.succeeded(plan.key)
        self.reached(reached, plan)

    def _failed(self, failure: Failure, plan: Plan, attempt: Attempt) -> None:
        session = self.session
        session._pending = None
        if failure.check(CancelledError):
            return
        outcome = judge(failure.value or Exception("failed"), plan, attempt)
        table = session.policy.routes
        assert table is not None
        if outcome.mark and session.runtime.route_marks.failed(
            plan.key, table.maxfail, table.badexpire
        ):
            expire = table.badexpire
            until = f"for {expire:g}s" if expire > 0 else "until restart"
            session.policy.log.warning(
                f"blacklisting route #{plan.route.number} {until}.  "
                f"Reason: {outcome.reason}"
            )
        if self.committed:
            self.failed_late(outcome)
            return
        self._outcomes.append((plan, outcome))
        session.policy.log.debug(
            f"{session._client_text()}: {plan} failed: {outcome.reason}"
        )
        self._next()

    def _give_up(self) -> None:
        if not self._outcomes:
            self.session.refuse(Reply.NETWORK_UNREACHABLE, NO_ROUTE)
            return
        chosen = best([o for _, o in self._outcomes])
        reasons = "; ".join(
            f"route #{p.route.number}: {o.reason}" for p, o in self._outcomes
        )
        self.session.refuse(chosen.reply, f"serverchain failed: {reasons}")

    def log_route(self, plan: Plan, local: Address, target: Address | None) -> None:
        """The ``-`` line naming the route a session took (``log: connect``)."""
        session = self.session
        match = session.socks_match
        if match is None or not session._logs(match, "connect"):
            return
        proto = "udp" if self.command == "udpassociate" else "tcp"
        session.policy.log.info(
            session_line(
                "pass",
                match.number,
                proto,
                self.command,
                "-",
                f"{session._client_text()} {dante_addr(session.server)} -> "
                f"{dante_addr(local)} {dante_addr(target)}: serverchain: {plan}",
            )
        )

    # -- what subclasses say -----------------------------------------------

    def attempt(self, plan: Plan) -> Attempt:
        """An attempt along ``plan`` (not started)."""
        raise NotImplementedError

    def reached(self, reached: Reached, plan: Plan) -> None:
        """The path stands."""
        raise NotImplementedError

    def direct(self) -> None:
        """A ``via: direct`` route: serve the request here."""
        raise NotImplementedError

    def failed_late(self, outcome: Outcome) -> None:
        """A failure after :attr:`committed`."""
        raise NotImplementedError


class RoutedConnect(Failover):
    """CONNECT: the client is told of success once the whole path stands."""

    def attempt(self, plan: Plan) -> Attempt:
        from dantex.server.connect import rule_timeout

        target = self.session.target
        assert target is not None
        return Attempt(
            self.session, plan, target, rule_timeout(self.session, "connect")
        )

    def direct(self) -> None:
        from dantex.server.connect import connect_direct

        connect_direct(self.session, self.match)

    def reached(self, reached: Reached, plan: Plan) -> None:
        from dantex.server.connect import rule_timeout

        session = self.session
        session.external = reached.local
        reply = session.reply(Reply.SUCCEEDED, _reply_address(session, reached))
        self.log_route(plan, reached.local, session.target)
        codec = session.codec
        assert codec is not None
        relay = session.runtime.start_relay(
            session,
            reached.target,
            reply + reached.leftover,
            codec.leftover(),
            rule_timeout(session, "io_tcp"),
        )
        session.relay_started(relay)
        relay.start()


def _reply_address(session: SocksSession, reached: Reached) -> Address:
    """The BND for the client: the last parent's (danted passes it on), else
    our own address towards the first parent (HTTP parents give none)."""
    bound = reached.bound
    if bound is None or bound.type is AddressType.DOMAIN:
        return reached.local
    if session.version == socks4.VERSION and bound.type is not AddressType.IPV4:
        return reached.local
    return bound
