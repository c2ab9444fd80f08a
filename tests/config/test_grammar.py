"""The whole Dante 1.4 grammar: every setting and rule keyword parses into the
model, gated features are refused by name and line, old syntax warns."""

from __future__ import annotations

import ipaddress

import pytest

from dantex.config import ConfigErrors, parse, support
from dantex.config.model import AddressSpecKind, Config, SessionLimits

BASE = "internal: 127.0.0.1 port = 1080\nsocksmethod: none\n"
EVERYTHING = frozenset(support.FEATURES)


def ok(text: str, supported: frozenset[str] = EVERYTHING) -> Config:
    return parse(text, "t.conf", supported=supported)


def errors_of(text: str, supported: frozenset[str] | None = None) -> list[str]:
    with pytest.raises(ConfigErrors) as info:
        parse(text, "t.conf", supported=supported)
    return [e.headline() for e in info.value.errors]


def socks_rule(body: str) -> str:
    return BASE + "socks pass {\n  from: 0/0 to: 0/0\n" + body + "\n}\n"


@pytest.mark.parametrize(
    "line",
    [
        "logoutput: stderr stdout syslog/local0 /tmp/dx.log",
        "errorlog: syslog",
        "debug: 2",
        "external: 127.0.0.1",
        "external.protocol: ipv4 ipv6",
        "external.rotation: route",
        "clientmethod: none",
        "user.privileged: root",
        "user.unprivileged: nobody",
        "user.libwrap: nobody",
        "timeout.negotiate: 0x1e",
        "timeout.connect: 5",
        "timeout.io: 0",
        "timeout.io.tcp: 100",
        "timeout.io.udp: 100",
        "timeout.tcp_fin_wait: 0",
        "resolveprotocol: fake",
        "libwrap.hosts_access: no",
        "libwrap.allow: /etc/hosts.allow",
        "libwrap.deny: /etc/hosts.deny",
        "srchost: nodnsmismatch nodnsunknown",
        "external.tcp.tcp_nodelay: 1",
        "internal.socket.so_rcvbuf: 0x10000",
        "external.ip.ip_tos.dscp: af41",
        "external.ip.10: 0x12",
        "external.log.warning.error: econnrefused no-route",
        "internal.log.info.tcp.disabled: sack ecn",
    ],
)
def test_implemented_global_settings_parse(line: str) -> None:
    """Settings dantex honours parse with no gated feature at all."""
    cfg = parse(BASE + line + "\n", "t.conf", supported=frozenset())
    assert cfg.uses == ()


@pytest.mark.parametrize(
    ("line", "feature"),
    [
        ("srchost: checkreplyauth nodnsunknown", "srchost:checkreplyauth"),
        ("compatibility: sameport", "compatibility:sameport"),
        ("compatibility: draft-5.05", "compatibility:draft-5.05"),
        ("extension: bind", "extension:bind"),
        ("udp.connectdst: no", "udp.connectdst"),
        ("libwrap.hosts_access: yes", "libwrap.hosts_access"),
        ("route.maxfail: 3", "route.maxfail"),
        ("route.badexpire: 60", "route.badexpire"),
        ("ldap.keytab: FILE:/etc/sockd.keytab", "ldap.keytab"),
        ("ldap.auth.domain: example.org", "ldap.auth.domain"),
        ("internal.socket.so_linger: 5", "socket options"),
        ("external.socket.so_rcvtimeo: 5", "socket options"),
        ("external.tcp.tcp_md5sig: 1", "socket options"),
        ("timeout.tcp_fin_wait: 30", "timeout.tcp_fin_wait"),
    ],
)
def test_gated_global_settings_are_refused_by_name(line: str, feature: str) -> None:
    """Parsed fully, then refused (while switched off) naming keyword and line."""
    (err,) = errors_of(BASE + line + "\n", supported=frozenset())
    assert err.startswith("t.conf:3:")
    assert "not supported yet" in err
    cfg = ok(BASE + line + "\n")
    assert feature in {u.feature for u in cfg.uses}


def test_switching_a_feature_on_accepts_it_and_keeps_the_value() -> None:
    """The support set is the only switch; the parsed value is in the model."""
    cfg = ok(BASE + "route.maxfail: 3\nextension: bind\n")
    assert cfg.route_maxfail == 3 and cfg.extensions == {"bind"}


def test_socket_option_values() -> None:
    """Symbolic DSCP values, hex numbers and numeric options end in the model."""
    cfg = ok(
        BASE
        + "external.ip.ip_tos.dscp: ef\ninternal.tcp.tcp_nodelay: 1\n"
        + "external.ip.10: 0x12\n"
    )
    opts = {(o.side, o.level, o.name): o.value for o in cfg.socket_options}
    assert opts[("external", "ip", "ip_tos.dscp")] == 46 << 2
    assert opts[("internal", "tcp", "tcp_nodelay")] == 1
    assert opts[("external", "ip", "10")] == 0x12


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("external.tcp.tcp_nodeley: 1", "did you mean 'tcp_nodelay'"),
        ("external.ip.ip_tos.dscp: af99", "unknown ip_tos.dscp value"),
        ("external.log.loud.error: econnrefused", "unknown log level"),
        ("external.log.info.error: enotanerrno", "unknown error value"),
        ("compatibility: reuseaddr", "removed in 1.4"),
        ("srchost: nodnsweird", "unknown srchost option"),
        ("resolveprotocol: carrier-pigeon", "udp, tcp or fake"),
        ("cpu.schedule.io: SCHED_FIFO/1", "bad scheduling"),
        ("debug: many", "must be a number"),
        ("logoutput: syslog/local9", "unknown syslog facility"),
        ("user.unprivileged: no-such-user-dantex", "no such user"),
        ("external.rotation: random", "none, route or same-same"),
        ("socksmethod: username user: bob", "takes the rest of its line"),
    ],
)
def test_bad_global_values(line: str, message: str) -> None:
    """Bad values are errors at the right line with a useful message."""
    (err,) = errors_of(BASE + line + "\n", supported=EVERYTHING)
    assert err.startswith("t.conf:3:") and message in err, err


def test_cpu_and_child_settings_warn_and_are_ignored() -> None:
    """Dante's process tuning has no meaning here: accepted with a warning."""
    cfg = ok(
        BASE + "cpu.mask.io: 0 1\ncpu.schedule.mother: fifo/1\nchild.maxidle: 60\n"
    )
    assert set(cfg.ignored) == {"cpu.mask.io", "cpu.schedule.mother", "child.maxidle"}
    assert sum("no effect" in w.message for w in cfg.warnings) == 3


def test_internal_protocol_filters_interface_addresses() -> None:
    """internal.protocol: ipv4 keeps only the IPv4 addresses of an interface."""
    cfg = parse("internal.protocol: ipv4\ninternal: lo port = 1081\n", "t.conf")
    assert {i.host for i in cfg.internals} == {"127.0.0.1"}


def test_internal_protocol_after_internal_is_an_error() -> None:
    """internal.protocol must come before internal: (it shapes the expansion)."""
    (err,) = errors_of(BASE + "internal.protocol: ipv4\n")
    assert "before the internal: lines" in err


# -- rules ----------------------------------------------------------------------


def test_every_rule_keyword_lands_in_the_model() -> None:
    """A socks-rule using every keyword keeps each parsed value."""
    cfg = ok(
        # a rule may only name methods the global list has (Dante)
        socks_rule(
            "  command: connect bind\n  protocol: tcp\n  proxyprotocol: socks_v5\n"
            "  socksmethod: username\n  clientmethod: none\n  user: alice bob\n"
            "  group: staff\n  log: connect disconnect data error ioop tcpinfo\n"
            "  libwrap: spawn echo %a\n  bandwidth: 10240\n  session.max: 10\n"
            "  session.throttle: 5/1\n  session.state.key: from\n"
            "  session.state.max: 2\n  redirect from: 127.0.0.1/32 port = 5000\n"
            "  redirect to: 127.0.0.2/32\n  udp.portrange: 40000-40100\n"
            "  pam.servicename: sockd\n  ldap.group: admins\n"
            "  timeout.io: 60\n  external.tcp.tcp_nodelay: 1\n"
            "  internal.log.warning.error: econnreset\n"
        ).replace("socksmethod: none\n", "socksmethod: none username\n", 1)
    )
    (rule,) = cfg.socks_rules
    assert rule.commands == frozenset({"connect", "bind"})
    assert rule.socksmethods == ("username",)
    assert rule.users == frozenset({"alice", "bob"})
    assert rule.groups == frozenset({"staff"})
    assert rule.log == {
        "connect",
        "disconnect",
        "data",
        "error",
        "iooperation",
        "tcpinfo",
    }
    assert rule.libwrap == "spawn echo %a"
    assert rule.bandwidth == 10240
    assert rule.session == SessionLimits(
        max=10, throttle=(5, 1), state_key="from", state_max=2
    )
    assert rule.redirect_from is not None and rule.redirect_from.port is not None
    assert rule.redirect_to is not None
    assert rule.udp_portrange == (40000, 40100)
    assert rule.pam_servicename == "sockd"
    assert rule.ldap == {"ldap.group": ("admins",)}
    assert rule.timeouts == {"io_tcp": 60.0, "io_udp": 60.0}
    assert rule.socket_options[0].name == "tcp_nodelay"
    assert rule.log_levels[0].values == ("econnreset",)


@pytest.mark.parametrize(
    ("body", "label"),
    [
        ("bandwidth: 1000", "'bandwidth'"),
        ("session.max: 3", "'session.max'"),
        ("session.throttle: 10/1", "'session.throttle'"),
        ("redirect to: 10.0.0.1/32", "'redirect to:'"),
        ("udp.portrange: 5000-5010", "'udp.portrange'"),
        ("command: udpassociate", "command 'udpassociate'"),
        ("command: bindreply udpreply", "command 'bindreply'"),
        ("ldap.group.hex: 61646d696e73", "'ldap.group.hex'"),
        ("pam.servicename: sockd", "'pam.servicename' in socks-rules"),
        ("libwrap: spawn finger @%a", "'libwrap'"),
    ],
)
def test_gated_rule_keywords_name_keyword_and_line(body: str, label: str) -> None:
    """Each is refused with its name at its line (4), never silently ignored."""
    errs = errors_of(socks_rule("  " + body), supported=frozenset())
    assert any(
        e.startswith("t.conf:5:") and f"{label} is not supported yet" in e for e in errs
    ), errs


def test_maxsessions_is_old_session_max() -> None:
    """maxsessions: warns naming session.max and stores the limit there."""
    cfg = ok(socks_rule("  maxsessions: 4"))
    assert cfg.socks_rules[0].session == SessionLimits(max=4)
    assert any(w.hint == "use 'session.max'" for w in cfg.warnings)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "client pass { from: 0/0 to: 0/0\n command: connect\n}",
            "not valid in a client",
        ),
        (
            "client pass { from: 0/0 to: 0/0\n udp.portrange: 1-2\n}",
            "not valid",
        ),
        (
            "socks pass { from: 0/0 to: 0/0\n session.inheritable: yes\n}",
            "client-rules only",
        ),
        (
            "socks pass { from: 0/0 to: 0/0\n session.state.max: 3\n}",
            "needs 'session.state.key'",
        ),
        ("socks pass { from: 0/0 to: 0/0\n log: connect loudly\n}", "unknown log flag"),
        (
            "socks pass { from: 0/0 to: 0/0\n command: connect log: connect\n}",
            "takes the rest",
        ),
        (
            "socks pass { from: 0/0 to: 0/0\n comand: connect\n}",
            "did you mean 'command'",
        ),
        ("socks pass { from: 0/0 to: 0/0\n bounce to: 10.0.0.1/32\n}", "Barefoot"),
        (
            "socks block { from: 0/0 to: 0/0\n external.tcp.tcp_nodelay: 1\n}",
            "block rule",
        ),
        (
            "client pass { from: 0/0 to: 0/0\n external.tcp.tcp_nodelay: 1\n}",
            "internal-side",
        ),
        ("socks pass { from: 0/0 to: 0/0\n udp.portrange: 50-10\n}", "empty"),
        (
            "socks pass { from: 0/0 to: 0/0\n proxyprotocol: http\n}",
            "unknown proxy protocol",
        ),
        ("socks pass { from: 0/0 to: 0/0 from: 0/0 }", "second 'from:'"),
        ("socks pass { from: 0/0 }", "has no 'to:'"),
        ("socks pass { from: 0/0 to: 0/0", "no closing"),
        ("socks from: 0/0 to: 0/0 }", "'pass' or 'block' expected"),
    ],
)
def test_bad_rules(text: str, message: str) -> None:
    """Rule errors say what is wrong and where."""
    errs = errors_of(BASE + text + "\n", supported=EVERYTHING)
    assert any(message in e for e in errs), errs


def test_hostid_rules_give_dantes_platform_error() -> None:
    """Linux has no host ids: Dante's own message, at the rule's line."""
    (err,) = errors_of(BASE + "hostid pass { from: 0/0 to: 0/0 }\n")
    assert err.startswith("t.conf:3:1: error: hostid is not supported on this system")


def test_hostid_rules_are_kept_when_switched_on() -> None:
    """With the hostid feature on, hostid-rules are their own list."""
    cfg = ok(BASE + "hostid block { from: 10.0.0.0/8 to: 0/0\n hostindex: 2\n}\n")
    (rule,) = cfg.hostid_rules
    assert rule.verdict == "block" and rule.hostindex == 2


def test_method_in_client_rule_warns_naming_clientmethod() -> None:
    """Old `method:` in a client-rule is clientmethod (and socksmethod in socks)."""
    cfg = ok(BASE + "client pass { from: 0/0 to: 0/0\n method: none\n}\n")
    assert cfg.client_rules[0].clientmethods == ("none",)
    assert any(w.hint == "use 'clientmethod'" for w in cfg.warnings)


def test_user_rule_without_name_method_warns_it_never_matches() -> None:
    """user: with only method none can never match (Dante's checkrule warning)."""
    cfg = ok(socks_rule("  user: alice"))
    assert any("can never match" in w.message for w in cfg.warnings)


# -- routes and monitors ------------------------------------------------------------


def test_route_block_parses_with_default_gateway_port() -> None:
    """A route keeps from/to/via, protocols and methods; default port 1080."""
    cfg = ok(
        BASE.replace("socksmethod: none", "socksmethod: none username")
        + "route {\n  from: 0/0 to: 10.0.0.0/8 port = http\n"
        + "  via: 127.0.0.1\n  proxyprotocol: socks_v5\n  method: none username\n"
        + "  command: connect\n}\n"
        + "route { from: 0/0 to: .example.org via: proxy.example.net port = 3128\n"
        + "  proxyprotocol: http\n}\n"
        + "route { from: 0/0 to: 0/0 via: direct }\n"
    )
    r1, r2, r3 = cfg.routes
    assert r1.via.network == ipaddress.ip_network("127.0.0.1/32")
    assert r1.via.port is not None and r1.via.port.low == 1080
    assert r1.methods == ("none", "username")
    assert r2.via.name == "proxy.example.net" and r2.via.port is not None
    assert r2.via.port.low == 3128
    assert r3.via.kind is AddressSpecKind.DIRECT
    assert [r.number for r in cfg.routes] == [1, 2, 3]


def test_route_is_served_but_its_bind_extension_is_refused() -> None:
    """route { } is switched on; a route's 'extension: bind' stays refused."""
    cfg = ok(BASE + "route { from: 0/0 to: 0/0 via: 127.0.0.1 port = 1 }\n")
    assert len(cfg.routes) == 1
    (err,) = errors_of(
        BASE + "route { from: 0/0 to: 0/0 via: 127.0.0.1 port = 1\n"
        " extension: bind\n}\n"
    )
    assert "extension 'bind' is not supported yet" in err


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("from: 0/0 to: 0/0 via: 10.0.0.1\n command: bindreply", "on their own"),
        ("from: 0/0 to: 0/0 via: 10.0.0.1\n protocol: udp", "SOCKS 5 parents only"),
        ("from: 0/0 to: 0/0 via: 10.0.0.1\n method: rfc931", "only valid for ACL"),
        ("from: 0/0 to: 0/0 via: 10.0.0.1/32", "one address"),
        ("from: 0/0 to: 0/0", "no 'via:'"),
        ("from: 0/0 to: 0/0 via: direct\n log: connect", "not valid in a route"),
    ],
)
def test_bad_routes(body: str, message: str) -> None:
    """Route errors as Dante's parser has them, clearer."""
    errs = errors_of(BASE + "route {\n " + body + "\n}\n", supported=EVERYTHING)
    assert any(message in e for e in errs), errs


def test_monitor_block_with_alarms() -> None:
    """monitor { } keeps its alarms: data (side, direction) and disconnect."""
    cfg = ok(
        BASE
        + "monitor {\n  from: 0/0 to: 0/0\n  protocol: tcp\n"
        + "  internal.alarm.data.recv: 0 in 2\n"
        + "  external.alarm.disconnect: 1/1 in 5\n  alarm.data: 100 in 10\n}\n"
    )
    (mon,) = cfg.monitors
    recv, disc, both = mon.alarms
    assert (recv.kind, recv.side, recv.direction, recv.limit, recv.seconds) == (
        "data",
        "internal",
        "recv",
        0,
        2.0,
    )
    assert (disc.kind, disc.limit, disc.ratio, disc.seconds) == ("disconnect", 1, 1, 5)
    assert both.side is None and both.direction is None


def test_monitor_is_accepted_and_refused_when_switched_off() -> None:
    """monitor { } is served (dantex.limits.monitors); switched off it is
    refused by name."""
    text = BASE + "monitor { from: 0/0 to: 0/0\n alarm.data: 0 in 2\n}\n"
    (err,) = errors_of(text, supported=frozenset())
    assert "'monitor' is not supported yet" in err
    (mon,) = ok(text).monitors
    assert mon.alarms[0].kind == "data"


# -- reporting ---------------------------------------------------------------------


def test_every_error_is_reported_once_in_order() -> None:
    """Several errors in rules, settings and blocks: all of them, sorted."""
    errs = errors_of(
        BASE
        + "bogus: 1\n"
        + "socks pass { from: 0/0 to: 0/0\n  bandwidth: lots\n  comand: x\n}\n"
        + "route { from: 0/0 to: 0/0 }\n"
    )
    lines = [int(e.split(":")[1]) for e in errs]
    assert lines == sorted(lines) and lines == [3, 5, 6, 8]


def test_gssapi_is_refused_as_out_of_scope() -> None:
    """GSS-API is refused with its own message, not 'not supported yet'."""
    (err,) = errors_of("internal: 127.0.0.1\nsocksmethod: gssapi none\n")
    assert "GSS-API" in err and "not supported by dantex" in err


@pytest.mark.parametrize(
    ("rule_line", "kind"),
    [
        ("clientmethod: rfc931", "client"),
        ("socksmethod: username", "socks"),
        ("socksmethod: username", "client"),
    ],
)
def test_rule_methods_must_be_in_the_global_list(rule_line: str, kind: str) -> None:
    """Dante refuses a rule naming a method its global list lacks (the
    global clientmethod list is 'none' unless given)."""
    text = BASE + f"{kind} pass {{\n  from: 0/0 to: 0/0\n  {rule_line}\n}}\n"
    errs = errors_of(text)
    assert any("is set in the rule, but not in the global" in e for e in errs), errs
