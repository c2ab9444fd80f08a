"""Session limits (``session.*``, Dante §1.6) and which bucket a session uses.

The server asks this module at two points, and only for rules that set a
limit (:func:`limited`; an unlimited rule costs one check):

* after a client-rule passed (:func:`client_rule_passed`): its ``session.*``
  limits are counted at once.  A refusal is kept and given when the request
  is known, as SOCKS5 reply 0x02 (v4: 91), like an authentication failure.
* after a socks-rule passed (:func:`socks_rule_passed`): a socks-rule with
  limits of its own takes a slot of its own and the client-rule's slot is
  given back; otherwise the client-rule's slot is kept (inherited) unless the
  client-rule says ``session.inheritable: no``.

``bandwidth:`` comes from the socks-rule, else from the client-rule (Dante's
inheritance).  Keys (``session.state.key``, dantex's ``bandwidth.state.key``):
``from`` is the client's IP address, ``user`` the authenticated user name
(socks-rules only: the name is known after negotiation).  ``hostid`` is not
available on Linux and refused by the configuration.

Slots are held in a :class:`Held` on the session and given back by
:meth:`Held.release` however the session ends.  BIND and UDP ASSOCIATE are
counted like CONNECT (UDP against the rule its control connection matched).
"""

from __future__ import annotations

from typing import Protocol

from attrs import frozen
from twisted.internet.interfaces import IReactorTime

from dantex.config.model import Rule
from dantex.limits._table import Check, LimitTable, digest_of
from dantex.protocol.address import Address

__all__ = [
    "Bandwidth",
    "Held",
    "LimitedSession",
    "admit",
    "client_rule_passed",
    "limited",
    "session_limited",
    "socks_rule_passed",
]


class _Runtime(Protocol):
    clock: IReactorTime
    limit_table: LimitTable | None


class LimitedSession(Protocol):
    """What this module reads and sets on a session
    (:class:`~dantex.server.session.SocksSession`)."""

    client: Address
    user: str | None
    auth_error: str | None
    limits: Held | None

    @property
    def runtime(self) -> _Runtime: ...


@frozen
class Bandwidth:
    """The bucket a session's relay is shaped by."""

    digest: bytes
    rate: int


class Held:
    """The slots one session holds, and its bucket."""

    __slots__ = ("bandwidth", "client", "socks", "table")

    def __init__(self, table: LimitTable) -> None:
        self.table = table
        self.client: tuple[bytes, ...] = ()
        self.socks: tuple[bytes, ...] = ()
        self.bandwidth: Bandwidth | None = None

    def release(self, now: float) -> None:
        """Give every slot back (idempotent)."""
        held = self.client + self.socks
        self.client = self.socks = ()
        if held:
            self.table.release(held, now)


def session_limited(rule: Rule) -> bool:
    """Whether ``rule`` counts sessions."""
    s = rule.session
    return s is not None and (
        s.max is not None
        or s.throttle is not None
        or s.state_max is not None
        or s.state_throttle is not None
    )


def limited(rule: Rule | None) -> bool:
    """Whether ``rule`` has a session limit or a bandwidth."""
    return rule is not None and (rule.bandwidth is not None or session_limited(rule))


def _key_value(key: str | None, client: Address, user: str | None) -> str | None:
    if key == "from":
        return client.host
    if key == "user":
        return user if user is not None else ""
    return None


def admit(
    table: LimitTable, rule: Rule, client: Address, user: str | None, now: float
) -> tuple[tuple[bytes, ...], str | None]:
    """Count a new session against ``rule``'s limits.

    :returns: the counters now held, and None; or (), and why not.
    """
    s = rule.session
    assert s is not None
    checks: list[Check] = []
    ident = (rule.kind.value, rule.number)
    if s.max is not None or s.throttle is not None:
        checks.append(Check(digest_of(*ident, "s"), s.max, s.throttle))
    value = _key_value(s.state_key, client, user)
    if value is not None and (s.state_max is not None or s.state_throttle is not None):
        checks.append(
            Check(digest_of(*ident, "k", value), s.state_max, s.state_throttle)
        )
    why = table.admit(checks, now)
    if why is not None:
        return (), why
    return tuple(c.digest for c in checks), None


def _table(session: LimitedSession) -> LimitTable:
    runtime = session.runtime
    if runtime.limit_table is None:
        runtime.limit_table = LimitTable.anonymous()
    return runtime.limit_table


def _bandwidth(rule: Rule, client: Address, user: str | None) -> Bandwidth:
    assert rule.bandwidth is not None
    parts: tuple[object, ...] = (rule.kind.value, rule.number, "b")
    value = _key_value(rule.bandwidth_key, client, user)
    if value is not None:
        parts += (rule.bandwidth_key, value)
    return Bandwidth(digest_of(*parts), rule.bandwidth)


def client_rule_passed(session: LimitedSession, rule: Rule) -> None:
    """A client-rule with limits passed ``session`` (see the module text)."""
    table = _table(session)
    held = session.limits = Held(table)
    if rule.bandwidth is not None:
        held.bandwidth = _bandwidth(rule, session.client, None)
    if not session_limited(rule):
        return
    now = session.runtime.clock.seconds()
    digests, why = admit(table, rule, session.client, None, now)
    if why is not None:
        if session.auth_error is None:
            session.auth_error = why
        return
    held.client = digests


def socks_rule_passed(
    session: LimitedSession, rule: Rule, client_rule: Rule | None
) -> str | None:
    """A socks-rule passed ``session``'s request: take or inherit slots.

    :returns: None to go on, or why the request is refused (reply 0x02).
    """
    held = session.limits
    if held is None:
        held = session.limits = Held(_table(session))
    if rule.bandwidth is not None:
        held.bandwidth = _bandwidth(rule, session.client, session.user)
    now = session.runtime.clock.seconds()
    if session_limited(rule):
        digests, why = admit(held.table, rule, session.client, session.user, now)
        if why is not None:
            return why
        held.socks = digests
        inherit = False
    else:
        s = client_rule.session if client_rule is not None else None
        inherit = s is None or s.inheritable is not False
    if held.client and not inherit:
        held.table.release(held.client, now)
        held.client = ()
    return None
