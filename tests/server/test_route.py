"""Route choice: matching, order, methods, bad marks (Dante §1.8, §2.10).

Pure: :class:`~dantex.server.route.RouteTable` over parsed configurations,
a ``Clock`` for the marks, DNS answers from a dict.
"""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from dantex.client import UserPass
from dantex.config import parse
from dantex.config.support import SUPPORTED
from dantex.protocol.address import Address
from dantex.rules.addresses import NeedLookup
from dantex.server.route import Plan, RouteMarks, RouteTable, route_commands

HEAD = "internal: 127.0.0.1 port = 1080\nsocksmethod: none\n"
CLIENT = Address.from_host("127.0.0.1", 40000)
TARGET = Address.from_host("192.0.2.10", 80)


class Answers(dict[tuple[str, str], tuple[str, ...]]):
    """DNS answers the matchers may ask for (KeyError: not known yet)."""


#: ``method: username`` in routes is the authentication work's switch.
WITH_USERNAME = SUPPORTED | {"method:username"}


def table(routes: str, settings: str = "") -> RouteTable:
    return RouteTable(
        parse(HEAD + settings + routes, "t.conf", supported=WITH_USERNAME)
    )


def numbers(plans: list[Plan]) -> list[int]:
    return [p.route.number for p in plans]


def plans(
    t: RouteTable,
    target: Address = TARGET,
    command: str = "connect",
    *,
    marks: RouteMarks | None = None,
    client: Address = CLIENT,
    answers: Answers | None = None,
    credentials: UserPass | None = None,
) -> list[Plan]:
    return t.plans(
        client,
        target,
        command,
        answers if answers is not None else Answers(),
        marks or RouteMarks(Clock()),
        credentials=credentials,
    )


MIXED = """
route { from: 0/0 to: 0/0 via: 10.0.0.5 port = 3128
  proxyprotocol: http
}
route { from: 0/0 to: 0/0 via: 10.0.0.1 port = 1080
  proxyprotocol: socks_v5
}
route { from: 0/0 to: 0/0 via: 10.0.0.4 port = 1080
  proxyprotocol: socks_v4
}
route { from: 0/0 to: 0/0 via: direct }
"""


def test_file_order_is_the_default() -> None:
    """dantex tries matching routes in file order, direct last if written last."""
    assert numbers(plans(table(MIXED))) == [1, 2, 3, 4]


def test_dante_order_puts_direct_first_then_v4_v5_http() -> None:
    """route.order: dante sorts as danted: direct, socks_v4, socks_v5, http."""
    assert numbers(plans(table(MIXED, "route.order: dante\n"))) == [4, 3, 2, 1]


def test_no_matching_route_gives_no_plan() -> None:
    """to: decides: a target outside every route has nothing to try."""
    t = table("route { from: 0/0 to: 10.0.0.0/8 via: direct }\n")
    assert plans(t) == []
    assert numbers(plans(t, Address.from_host("10.9.9.9", 22))) == [1]


def test_from_matches_the_client() -> None:
    """from: is the client's address."""
    t = table(
        "route { from: 10.0.0.0/8 to: 0/0 via: 10.0.0.1 port = 1080 }\n"
        "route { from: 127.0.0.0/8 to: 0/0 via: direct }\n"
    )
    assert numbers(plans(t)) == [2]
    assert numbers(plans(t, client=Address.from_host("10.1.1.1", 5))) == [1]


def test_port_of_to_is_checked() -> None:
    """to: 0/0 port = 443 serves only port 443."""
    t = table("route { from: 0/0 to: 0/0 port = 443 via: direct }\n")
    assert plans(t) == []
    assert numbers(plans(t, Address.from_host("192.0.2.10", 443))) == [1]


def test_a_route_serves_connect_unless_it_names_commands() -> None:
    """Without command: a route is for CONNECT; protocol: udp means UDP ASSOCIATE."""
    cfg = parse(
        HEAD
        + "route { from: 0/0 to: 0/0 via: direct }\n"
        + "route { from: 0/0 to: 0/0 via: direct\n protocol: udp\n}\n"
        + "route { from: 0/0 to: 0/0 via: direct\n command: bind connect\n}\n",
        "t.conf",
    )
    assert [sorted(route_commands(r)) for r in cfg.routes] == [
        ["connect"],
        ["udpassociate"],
        ["bind", "connect"],
    ]
    t = RouteTable(cfg)
    assert t.commands == {"connect", "udpassociate", "bind"}
    assert numbers(plans(t, command="bind")) == [3]


def test_host_name_target_is_resolved_when_to_needs_addresses() -> None:
    """to: 192.0.2.0/24 and a name: the matcher asks for its addresses first."""
    t = table("route { from: 0/0 to: 192.0.2.0/24 via: direct }\n")
    name = Address.from_host("www.example.org", 80)
    with pytest.raises(NeedLookup) as info:
        plans(t, name)
    assert info.value.lookup.key == "www.example.org"
    known = Answers({("forward", "www.example.org"): ("192.0.2.7",)})
    assert numbers(plans(t, name, answers=known)) == [1]


def test_any_address_matches_a_name_without_dns() -> None:
    """to: 0/0 takes a host name as it is (the parent resolves it)."""
    t = table("route { from: 0/0 to: 0/0 via: 10.0.0.1 port = 1080 }\n")
    (plan,) = plans(t, Address.from_host("www.example.org", 80))
    assert plan.hops[0].host == "10.0.0.1"


def test_routing_loop_guard_skips_a_route_to_its_own_gateway() -> None:
    """A CONNECT to the parent itself does not go through that parent."""
    t = table(MIXED)
    assert numbers(plans(t, Address.from_host("10.0.0.1", 1080))) == [1, 3, 4]


def test_bad_route_is_skipped_until_badexpire() -> None:
    """At route.maxfail failures the route is skipped for route.badexpire s."""
    t = table(MIXED, "route.maxfail: 2\nroute.badexpire: 60\n")
    clock = Clock()
    marks = RouteMarks(clock)
    first = plans(t, marks=marks)[0]
    assert marks.failed(first.key, t.maxfail, t.badexpire) is False
    assert numbers(plans(t, marks=marks)) == [1, 2, 3, 4]
    assert marks.failed(first.key, t.maxfail, t.badexpire) is True
    assert numbers(plans(t, marks=marks)) == [2, 3, 4]
    clock.advance(59)
    assert numbers(plans(t, marks=marks)) == [2, 3, 4]
    clock.advance(1)
    assert numbers(plans(t, marks=marks)) == [1, 2, 3, 4]


def test_badexpire_zero_marks_for_ever_and_success_forgets_failures() -> None:
    """route.badexpire: 0 never expires; a success resets the failure count."""
    t = table(MIXED, "route.maxfail: 2\nroute.badexpire: 0\n")
    clock = Clock()
    marks = RouteMarks(clock)
    key = plans(t, marks=marks)[0].key
    marks.failed(key, t.maxfail, t.badexpire)
    marks.succeeded(key)
    assert marks.failed(key, t.maxfail, t.badexpire) is False  # counting anew
    assert marks.failed(key, t.maxfail, t.badexpire) is True
    clock.advance(10**9)
    assert numbers(plans(t, marks=marks)) == [2, 3, 4]


def test_marks_survive_a_reload_of_the_same_route() -> None:
    """The same route in a reloaded configuration keeps its mark; a changed
    one starts clean."""
    marks = RouteMarks(Clock())
    old = table(MIXED)
    marks.failed(plans(old, marks=marks)[0].key, 1, 300)
    assert numbers(plans(table(MIXED), marks=marks)) == [2, 3, 4]
    changed = MIXED.replace("10.0.0.5 port = 3128", "10.0.0.6 port = 3128")
    assert numbers(plans(table(changed), marks=marks)) == [1, 2, 3, 4]


def test_default_protocols_prefer_socks5_in_file_order_and_v4_in_dante_order() -> None:
    """A parent offering both SOCKS versions: v5 by default, v4 as danted picks."""
    route = "route { from: 0/0 to: 0/0 via: 10.0.0.1 }\n"
    (plan,) = plans(table(route))
    assert (plan.hops[0].protocol, plan.hops[0].port) == ("socks_v5", 1080)
    (plan,) = plans(table(route, "route.order: dante\n"))
    assert plan.hops[0].protocol == "socks_v4"
    ipv6 = Address.from_host("2001:db8::1", 80)
    (plan,) = plans(table(route, "route.order: dante\n"), ipv6)
    assert plan.hops[0].protocol == "socks_v5"  # SOCKS 4 cannot carry IPv6


def test_username_method_needs_credentials() -> None:
    """method: username alone: usable only with the client's credentials,
    which are then offered; fixed credentials make it usable for anyone."""
    forward = table(
        "route { from: 0/0 to: 0/0 via: 10.0.0.1\n proxyprotocol: socks_v5\n"
        " method: username\n}\n",
        "socksmethod: username\n",
    )
    assert plans(forward) == []
    alice = UserPass("alice", "pw")
    (plan,) = plans(forward, credentials=alice)
    assert plan.hops[0].credentials == alice and not plan.hops[0].fixed
    fixed = table(
        "route { from: 0/0 to: 0/0 via: 10.0.0.1\n proxyprotocol: socks_v5\n"
        " username: bob\n password: secret\n}\n"
    )
    (plan,) = plans(fixed, credentials=alice)
    assert plan.hops[0].credentials == UserPass("bob", "secret")
    assert plan.hops[0].fixed


def test_http_parent_serves_connect_only() -> None:
    """An HTTP parent cannot carry BIND or UDP; SOCKS 4 cannot carry UDP."""
    t = table(
        "route { from: 0/0 to: 0/0 via: 10.0.0.5\n proxyprotocol: http\n}\n"
        "route { from: 0/0 to: 0/0 via: 10.0.0.1\n proxyprotocol: socks_v4\n}\n"
    )
    (http, v4) = plans(t)
    assert http.hops[0].port == 80 and v4.hops[0].protocol == "socks_v4"


def test_a_path_of_parents_is_planned_hop_by_hop() -> None:
    """Several via: lines make one route whose parents are tried as a path."""
    t = table(
        "route {\n from: 0/0 to: 0/0\n via: 10.0.0.1 port = 1081\n"
        " proxyprotocol: socks_v5\n via: 10.0.0.2 port = 3128\n"
        " proxyprotocol: http\n username: u\n password: p\n}\n"
    )
    (plan,) = plans(t)
    assert [(h.protocol, h.host, h.port) for h in plan.hops] == [
        ("socks_v5", "10.0.0.1", 1081),
        ("http", "10.0.0.2", 3128),
    ]
    assert plan.hops[1].credentials == UserPass("u", "p")
    assert str(plan) == "route #1 (socks_v5 10.0.0.1.1081 -> http 10.0.0.2.3128)"
