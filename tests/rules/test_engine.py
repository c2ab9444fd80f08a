"""The rule engine alone: first match, default block #0, address semantics."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dantex.config import parse
from dantex.protocol.address import Address
from dantex.rules import ClientFacts, NeedLookup, RuleSet, SocksFacts

HEAD = "internal: 127.0.0.1\nsocksmethod: none\n"
SERVER = Address.from_host("127.0.0.1", 1080)


#: Gated features these tests exercise before their owners switch them on.
GATED = frozenset({"command:bind", "user", "group", "method:username"})


def rules(body: str, head: str = HEAD) -> RuleSet:
    return RuleSet(parse(head + body, "t.conf", supported=GATED))


def socks(
    target: str, port: int = 80, client: str = "10.0.0.1", **kw: str
) -> SocksFacts:
    return SocksFacts(
        Address.from_host(client, 5000),
        Address.from_host(target, port),
        kw.get("command", "connect"),
        kw.get("proxyprotocol", "socks_v5"),
    )


def test_first_match_wins() -> None:
    """Rules are tried top-down and the first match decides."""
    rs = rules(
        "socks block { from: 0/0 to: 10.0.0.0/8 }\nsocks pass { from: 0/0 to: 0/0 }\n"
    )
    assert rs.match_socks(socks("10.1.1.1")).number == 1
    assert not rs.match_socks(socks("10.1.1.1")).passed
    assert rs.match_socks(socks("192.0.2.1")).number == 2


def test_no_match_is_default_block_zero() -> None:
    """Nothing matching means the implicit block, rule #0."""
    m = rules("socks pass { from: 0/0 to: 10.0.0.0/8 }\n").match_socks(
        socks("192.0.2.1")
    )
    assert m.rule is None and m.number == 0 and not m.passed


def test_zero_slash_zero_matches_ipv6_but_ipv4_any_does_not() -> None:
    """0/0 matches both families; 0.0.0.0/0 only IPv4 (Dante's IPv6 pitfall)."""
    assert (
        rules("socks pass { from: 0/0 to: 0/0 }\n")
        .match_socks(socks("2001:db8::1"))
        .passed
    )
    rs = rules("socks pass { from: 0/0 to: 0.0.0.0/0 }\n")
    assert not rs.match_socks(socks("2001:db8::1")).passed
    assert rs.match_socks(socks("192.0.2.1")).passed


def test_port_operators() -> None:
    """Port tests come first: a range rule skips ports outside it."""
    rs = rules("socks pass { from: 0/0 to: 0/0 port 1000-2000 }\n")
    assert rs.match_socks(socks("192.0.2.1", 1500)).passed
    assert not rs.match_socks(socks("192.0.2.1", 80)).passed


def test_domain_matches_on_label_boundaries() -> None:
    """.example.com matches example.com and subdomains, not badexample.com."""
    rs = rules("socks pass { from: 0/0 to: .example.com }\n")
    assert rs.match_socks(socks("example.com")).passed
    assert rs.match_socks(socks("www.Example.COM")).passed
    assert not rs.match_socks(socks("badexample.com")).passed


def test_hostname_request_vs_network_rule_needs_and_uses_resolution() -> None:
    """An IP rule and a host name request: resolve, and connect to the matched IP."""
    rs = rules("socks pass { from: 0/0 to: 192.0.2.0/24 }\n")
    with pytest.raises(NeedLookup) as info:
        rs.match_socks(socks("www.test"))
    assert (info.value.lookup.kind, info.value.lookup.key) == ("forward", "www.test")
    answers = {("forward", "www.test"): ("198.51.100.1", "192.0.2.5")}
    m = rs.match_socks(socks("www.test"), answers)
    assert m.passed and m.matched_ip == "192.0.2.5"


def test_hostname_rule_vs_ip_request_resolves_the_rule() -> None:
    """A host name rule and an IP request: the rule's name is resolved."""
    rs = rules("socks pass { from: 0/0 to: www.test }\n")
    answers = {("forward", "www.test"): ("192.0.2.5",)}
    assert rs.match_socks(socks("192.0.2.5"), answers).passed
    assert not rs.match_socks(socks("192.0.2.6"), answers).passed


def test_command_and_proxyprotocol_filters() -> None:
    """command: and proxyprotocol: restrict what a rule covers."""
    rs = rules(
        "socks pass { from: 0/0 to: 0/0\n command: bind\n}\n"
        "socks pass { from: 0/0 to: 0/0\n proxyprotocol: socks_v4\n}\n"
    )
    assert rs.match_socks(socks("192.0.2.1", command="bind")).number == 1
    assert rs.match_socks(socks("192.0.2.1", proxyprotocol="socks_v4")).number == 2
    assert not rs.match_socks(socks("192.0.2.1")).passed


def test_client_rules_match_client_and_server_address() -> None:
    """client-rules see the client's address and the address it connected to."""
    rs = rules("client pass { from: 10.0.0.0/8 to: 127.0.0.1/32 port = 1080 }\n")
    client = Address.from_host("10.2.3.4", 9999)
    assert rs.match_client(ClientFacts(client, SERVER)).passed
    other = Address.from_host("127.0.0.1", 1081)
    assert not rs.match_client(ClientFacts(client, other)).passed


def test_socksmethod_mismatch_skips_rule() -> None:
    """A rule whose socksmethod does not fit is skipped, not a block."""
    cfg = parse(
        HEAD + "socks pass { from: 0/0 to: 0/0\n socksmethod: none\n}\n", "t.conf"
    )
    rs = RuleSet(cfg)
    facts = SocksFacts(
        Address.from_host("10.0.0.1", 1),
        Address.from_host("192.0.2.1", 80),
        "connect",
        "socks_v5",
        socksmethod="username",
    )
    assert rs.match_socks(facts).rule is None


def username_facts(
    user: str | None, groups: frozenset[str] = frozenset()
) -> SocksFacts:
    return SocksFacts(
        Address.from_host("10.0.0.1", 1),
        Address.from_host("192.0.2.1", 80),
        "connect",
        "socks_v5",
        socksmethod="username" if user else "none",
        user=user,
        groups=groups,
    )


def test_user_and_group_rules_skip_other_users_and_none() -> None:
    """user:/group: rules are skipped (not a block) for others and for 'none'."""
    head = "internal: 127.0.0.1\nsocksmethod: username none\n"
    rs = rules(
        "socks block { from: 0/0 to: 0/0\n user: mallory\n}\n"
        "socks pass { from: 0/0 to: 0/0\n group: staff\n}\n"
        "socks pass { from: 0/0 to: 0/0\n socksmethod: none\n}\n",
        head,
    )
    assert rs.match_socks(username_facts("mallory")).number == 1
    assert rs.match_socks(username_facts("alice", frozenset({"staff"}))).number == 2
    assert rs.match_socks(username_facts("bob")).number == 0
    assert rs.match_socks(username_facts(None)).number == 3


def test_rule_without_socksmethod_takes_the_global_list() -> None:
    """A socks-rule with no socksmethod: gets the global list (Dante fills it in)."""
    rs = rules("socks pass { from: 0/0 to: 0/0 }\n")  # global: none
    assert rs.match_socks(username_facts("alice")).number == 0
    assert rs.match_socks(username_facts(None)).passed


def test_empty_global_socksmethod_blocks_everything() -> None:
    """No socksmethod at all: every socks request is blocked (rule #0)."""
    rs = RuleSet(
        parse("internal: 127.0.0.1\nsocks pass { from: 0/0 to: 0/0 }\n", "t.conf")
    )
    assert not rs.match_socks(socks("192.0.2.1")).passed


def test_resolveprotocol_fake_never_resolves() -> None:
    """resolveprotocol: fake turns DNS off in matching: no lookup, no match."""
    rs = rules(
        "socks pass { from: 0/0 to: 192.0.2.0/24 }\n",
        "internal: 127.0.0.1\nsocksmethod: none\nresolveprotocol: fake\n",
    )
    assert rs.match_socks(socks("www.test")).number == 0


# -- the index against a plain linear scan -------------------------------------------

_NETS = ["0/0", "0.0.0.0/0", "10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24",
         "10.1.2.3/32", "192.0.2.0/24", "::/0", "2001:db8::/32", ".test",
         "www.test"]  # fmt: skip
_PORTS = ["", " port = 80", " port ge 1024", " port 1-100", " port != 80"]
_CMDS = ["", "\n command: connect", "\n command: bind", "\n command: connect bind"]
_PPS = ["", "\n proxyprotocol: socks_v4", "\n proxyprotocol: socks_v5"]
_ADDRS = ["10.1.2.3", "10.1.9.9", "10.200.0.1", "192.0.2.77", "198.51.100.1",
          "2001:db8::5", "::1", "www.test", "a.test", "other.example"]  # fmt: skip
_ANSWERS = {
    ("forward", "www.test"): ("10.1.2.3",),
    ("forward", "a.test"): ("192.0.2.77", "2001:db8::5"),
    ("forward", "other.example"): (),
    **{("reverse", a): ("x.test",) if a.startswith("10.1") else () for a in _ADDRS},
}


def _linear(rs: RuleSet, facts: SocksFacts) -> int:
    """Dante's plain top-down scan, without any index."""
    from dantex.rules.engine import compile_matchers

    for rule in rs.config.socks_rules:
        if rule.commands is not None and facts.command not in rule.commands:
            continue
        pps = rule.proxyprotocols
        if pps is not None and facts.proxyprotocol not in pps:
            continue
        src, dst = compile_matchers(rule)
        if src(facts.client, _ANSWERS) is None:
            continue
        if facts.target is None or dst(facts.target, _ANSWERS) is None:
            continue
        return rule.number
    return 0


@settings(max_examples=150, deadline=None, derandomize=True)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["pass", "block"]),
            st.sampled_from(_NETS),
            st.sampled_from(_NETS),
            st.sampled_from(_PORTS),
            st.sampled_from(_CMDS),
            st.sampled_from(_PPS),
        ),
        min_size=1,
        max_size=40,
    ),
    st.lists(
        st.tuples(
            st.sampled_from(_ADDRS[:7]),
            st.sampled_from(_ADDRS),
            st.sampled_from([1, 80, 443, 8080]),
            st.sampled_from(["connect", "bind"]),
            st.sampled_from(["socks_v4", "socks_v5"]),
        ),
        min_size=1,
        max_size=10,
    ),
)
def test_index_agrees_with_a_linear_scan(
    specs: list[tuple[str, str, str, str, str, str]],
    requests: list[tuple[str, str, int, str, str]],
) -> None:
    """Indexed first match == top-down scan, for random rule lists and requests."""
    body = "".join(
        f"socks {verdict} {{\n from: {src} to: {dst}{port}{cmd}{pp}\n}}\n"
        for verdict, src, dst, port, cmd, pp in specs
    )
    rs = rules(body)
    for client, target, port, command, pp in requests:
        facts = SocksFacts(
            Address.from_host(client, 5000),
            Address.from_host(target, port),
            command,
            pp,
        )
        assert rs.match_socks(facts, _ANSWERS).number == _linear(rs, facts)


def _unknown_target(rs: RuleSet) -> int:
    facts = SocksFacts(
        Address.from_host("10.0.0.1", 5000), None, "udpassociate", "socks_v5"
    )
    match = rs.match_socks(facts)
    return match.number if match.passed else -match.number


def test_unknown_target_skips_block_rules_that_cover_some_destinations() -> None:
    """A UDP association with no destination yet passes a block rule for
    part of the address space: some datagrams could still pass (Dante §2.2)."""
    rs = rules(
        "socks block { from: 0/0 to: 10.0.0.0/8 }\n"
        "socks block { from: 0/0 to: 0/0 port = 53 }\n"
        "socks pass { from: 0/0 to: 192.0.2.0/24 }\n"
    )
    assert _unknown_target(rs) == 3


@pytest.mark.parametrize("everything", ["0/0", "0.0.0.0/0"])
def test_unknown_target_is_blocked_by_a_rule_for_every_destination(
    everything: str,
) -> None:
    """A block rule whose to: is 0/0 (or a /0 net) without a port decides at once."""
    rs = rules(
        f"socks block {{ from: 0/0 to: {everything} }}\n"
        "socks pass { from: 0/0 to: 0/0 }\n"
    )
    assert _unknown_target(rs) == -1


def test_unknown_target_still_checks_the_source() -> None:
    """With the destination unknown the from: address still has to match."""
    rs = rules(
        "socks pass { from: 192.168.0.0/16 to: 0/0 }\n"
        "socks block { from: 10.0.0.0/8 to: 0/0 }\n"
    )
    assert _unknown_target(rs) == -2


def test_port_rules_are_indexed_and_still_first_match() -> None:
    """Rules differing only by port keep file order and their port semantics."""
    body = "".join(
        f"socks block {{ from: 0/0 to: 0/0 port = {p} }}\n" for p in range(1, 300)
    )
    rs = rules(
        body + "socks block { from: 0/0 port lt 1024 to: 0/0 }\n"
        "socks pass { from: 0/0 to: 0/0 port ge 80 }\n"
    )
    assert rs.match_socks(socks("10.1.1.1", 80)).number == 80
    assert rs.match_socks(socks("10.1.1.1", 299)).number == 299
    assert rs.match_socks(socks("10.1.1.1", 300)).number == 301
    assert rs.match_socks(socks("10.1.1.1", 30)).number == 30
    assert rs.match_socks(socks("10.1.1.1", 0)).number == 0
