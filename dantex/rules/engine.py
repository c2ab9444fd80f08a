"""First-match evaluation of client-rules and socks-rules (Dante §2.2).

A rule whose method, user or group does not fit is *skipped* (the search goes
on); no rule matching means Dante's implicit block, reported as rule #0.
"""

from __future__ import annotations

from attrs import frozen

from dantex.config.model import AddressSpec, AddressSpecKind, Config, Rule
from dantex.protocol.address import Address
from dantex.rules.addresses import Answers, Lookup, Matcher, NeedLookup, compile_address

__all__ = [
    "NO_ANSWERS",
    "ClientFacts",
    "Lookup",
    "Match",
    "NeedLookup",
    "RuleSet",
    "SocksFacts",
]


@frozen
class ClientFacts:
    """What is known right after accept: who connected, to which of our addresses."""

    client: Address
    server: Address
    clientmethod: str = "none"


@frozen
class SocksFacts:
    """What is known once the SOCKS request is read.

    ``command`` uses Dante's names: connect, bind, udpassociate, bindreply,
    udpreply; ``proxyprotocol`` is socks_v4 or socks_v5.  ``target`` is None
    while it is not known (a UDP association being set up): then a pass rule
    matches whatever its ``to:``, and a block rule only when its ``to:``
    covers every destination, so the request is refused early only when no
    datagram could ever pass (Dante §2.2).
    """

    client: Address
    target: Address | None
    command: str
    proxyprotocol: str
    socksmethod: str = "none"
    clientmethod: str = "none"
    user: str | None = None
    groups: frozenset[str] = frozenset()


@frozen
class Match:
    """The verdict.  ``rule`` is None for the implicit default block (#0).

    ``matched_ip`` is the target address that made an IP rule match a host
    name request: Dante connects to that address.
    """

    rule: Rule | None
    matched_ip: str = ""

    @property
    def passed(self) -> bool:
        """Whether the request may proceed."""
        return self.rule is not None and self.rule.passes

    @property
    def number(self) -> int:
        """Dante's rule number (0 = the default block rule)."""
        return self.rule.number if self.rule is not None else 0


@frozen
class _Compiled:
    rule: Rule
    src: Matcher
    dst: Matcher


class _NoAnswers:
    def __getitem__(self, key: tuple[str, str], /) -> tuple[str, ...]:
        raise KeyError(key)


#: No DNS answers at all: any rule that needs one raises NeedLookup.
NO_ANSWERS: Answers = _NoAnswers()

_PROTOCOL_OF = {
    "connect": "tcp",
    "bind": "tcp",
    "bindreply": "tcp",
    "udpassociate": "udp",
    "udpreply": "udp",
}


class RuleSet:
    """A configuration's rules, compiled once into matcher closures."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._client = [_compile(r) for r in config.client_rules]
        self._socks = [_compile(r) for r in config.socks_rules]

    def match_client(self, facts: ClientFacts, answers: Answers | None = None) -> Match:
        """First client-rule matching; Dante's ``tcp/accept`` level.

        :raises NeedLookup: a DNS answer is needed first (see ``.lookup``).
        """
        ans = answers if answers is not None else NO_ANSWERS
        for c in self._client:
            rule = c.rule
            if (
                rule.clientmethods is not None
                and facts.clientmethod not in rule.clientmethods
            ):
                continue
            if c.src(facts.client, ans) is None:
                continue
            if c.dst(facts.server, ans) is None:
                continue
            return Match(rule)
        return Match(None)

    def match_socks(self, facts: SocksFacts, answers: Answers | None = None) -> Match:
        """First socks-rule matching the request.

        :raises NeedLookup: a DNS answer is needed first (see ``.lookup``).
        """
        ans = answers if answers is not None else NO_ANSWERS
        protocol = _PROTOCOL_OF[facts.command]
        for c in self._socks:
            rule = c.rule
            if rule.commands is not None and facts.command not in rule.commands:
                continue
            if rule.protocols is not None and protocol not in rule.protocols:
                continue
            if (
                rule.proxyprotocols is not None
                and facts.proxyprotocol not in rule.proxyprotocols
            ):
                continue
            if (
                rule.socksmethods is not None
                and facts.socksmethod not in rule.socksmethods
            ):
                continue
            if (
                rule.clientmethods is not None
                and facts.clientmethod not in rule.clientmethods
            ):
                continue
            if rule.users is not None and (
                facts.user is None or facts.user not in rule.users
            ):
                continue
            if rule.groups is not None and not (facts.groups & rule.groups):
                continue
            if c.src(facts.client, ans) is None:
                continue
            if facts.target is None:
                if rule.passes or _covers_everything(rule.dst):
                    return Match(rule)
                continue
            matched = c.dst(facts.target, ans)
            if matched is None:
                continue
            return Match(rule, matched_ip=matched)
        return Match(None)


def _covers_everything(spec: AddressSpec) -> bool:
    """``0/0`` or a ``/0`` network, without a port test."""
    if spec.port is not None:
        return False
    if spec.kind is AddressSpecKind.ANY:
        return True
    return spec.network is not None and spec.network.prefixlen == 0


def _compile(rule: Rule) -> _Compiled:
    return _Compiled(rule, compile_address(rule.src), compile_address(rule.dst))
