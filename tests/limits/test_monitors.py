"""monitor { } alarms on a fake clock: periods, thresholds, sides, clears,
disconnect counting, matching, and the session hooks."""

from __future__ import annotations

import socket
import struct
from pathlib import Path

import pytest
from twisted.internet.task import Clock

from dantex.config import ConfigErrors, parse
from dantex.config.model import Monitor
from dantex.limits._monshare import MonitorShare
from dantex.limits.monitors import MonitorSet
from dantex.protocol.address import Address
from dantex.server.relay import EndReason
from dantex.testing import MemoryLog, memory_session

HEAD = "internal: 127.0.0.1 port = 1080\nsocksmethod: none\n"
SOCKS = "socks pass { from: 0/0 to: 0/0 log: connect disconnect }\n"
CLIENT = Address.from_host("127.0.0.1", 40000)
TARGET = Address.from_host("10.1.2.3", 80)
NO_DNS: dict[tuple[str, str], tuple[str, ...]] = {}


class Counters:
    """A relay's four counters, set by the test."""

    def __init__(self) -> None:
        self.values = [0, 0, 0, 0]

    def counts(self) -> tuple[int, int, int, int]:
        a, b, c, d = self.values
        return (a, b, c, d)


def monitors(body: str) -> tuple[Monitor, ...]:
    return parse(HEAD + body + SOCKS, "t.conf").monitors


def running(body: str) -> tuple[MonitorSet, Clock, MemoryLog]:
    clock, log = Clock(), MemoryLog()
    mset = MonitorSet(clock)
    mset.configure(monitors(body), log.warning, NO_DNS)
    return mset, clock, log


def warnings(log: MemoryLog) -> list[str]:
    return [m for level, m in log.lines if level == "warning"]


def test_data_alarm_triggers_without_sessions_and_logs_danteds_line() -> None:
    """Nothing moved in the first period: raised, logged once."""
    _mset, clock, log = running(
        "monitor { from: 0/0 to: 0/0\n internal.alarm.data.recv: 0 in 2\n}\n"
    )
    clock.advance(1.9)
    assert warnings(log) == []
    clock.advance(0.1)
    assert warnings(log) == [
        "monitor(1): alarm/data [: 0/0 -> 0/0 internal.recv: 0/0 in 2s.  "
        "Session count: 0"
    ]
    clock.advance(10)  # stays raised: no more lines
    assert len(warnings(log)) == 1


def test_data_alarm_clears_when_traffic_resumes_with_its_duration() -> None:
    mset, clock, log = running(
        "monitor { from: 0/0 to: 0/0\n internal.alarm.data.recv: 0 in 2\n}\n"
    )
    relay = Counters()
    member = mset.attach(CLIENT, TARGET, "connect", relay)
    assert member is not None
    clock.advance(2)  # raised at 2
    relay.values[0] = 5
    clock.advance(2)  # cleared at 4: 2 s of alarm
    assert warnings(log)[-1] == (
        "monitor(1): alarm/data ]: 0/0 -> 0/0 internal.recv: 5/0 in 2s.  "
        "Session count: 1.  Alarm duration: 2s"
    )


def test_data_alarm_threshold_is_at_most_bytes() -> None:
    """BYTES moved is still an alarm; one more is not."""
    mset, clock, log = running(
        "monitor { from: 0/0 to: 0/0\n alarm.data: 100 in 5\n}\n"
    )
    relay = Counters()
    mset.attach(CLIENT, TARGET, "connect", relay)
    relay.values = [50, 0, 0, 51]  # 101 in all four counters
    clock.advance(5)
    assert warnings(log) == []
    relay.values = [100, 0, 0, 51]  # 50 more: at most 100
    clock.advance(5)
    assert warnings(log) == [
        "monitor(1): alarm/data [: 0/0 -> 0/0 internal/external: 50/100 in 5s.  "
        "Session count: 1"
    ]


def test_data_alarm_counts_only_its_side_and_direction() -> None:
    """external.send counts bytes written to the target, nothing else."""
    mset, clock, log = running(
        "monitor { from: 0/0 to: 0/0\n external.alarm.data.send: 0 in 1\n}\n"
    )
    relay = Counters()
    mset.attach(CLIENT, TARGET, "connect", relay)
    relay.values = [10, 10, 10, 0]
    clock.advance(1)
    assert "external.send: 0/0 in 1s" in warnings(log)[0]


def test_bytes_of_an_ended_session_still_count_in_its_period() -> None:
    mset, clock, log = running(
        "monitor { from: 0/0 to: 0/0\n internal.alarm.data: 0 in 3\n}\n"
    )
    relay = Counters()
    member = mset.attach(CLIENT, TARGET, "connect", relay)
    assert member is not None
    relay.values = [7, 0, 0, 0]
    member.ended("client")
    clock.advance(3)
    assert warnings(log) == []


def test_first_matching_monitor_owns_the_session() -> None:
    mset, _clock, _log = running(
        "monitor { from: 10.0.0.0/8 to: 0/0\n alarm.data: 0 in 5\n}\n"
        "monitor { from: 127.0.0.0/8 to: 0/0 port = 80\n alarm.data: 0 in 5\n}\n"
        "monitor { from: 0/0 to: 0/0\n alarm.data: 0 in 5\n}\n"
    )
    member = mset.attach(CLIENT, TARGET, "connect", Counters())
    assert member is not None and member._monitor.monitor.number == 2
    other = Address.from_host("192.0.2.1", 1)
    member = mset.attach(other, TARGET, "connect", Counters())
    assert member is not None and member._monitor.monitor.number == 3


def test_monitor_commands_and_protocols_restrict_matching() -> None:
    mset, _clock, _log = running(
        "monitor { from: 0/0 to: 0/0 protocol: udp\n alarm.data: 0 in 5\n}\n"
    )
    assert mset.attach(CLIENT, TARGET, "connect", Counters()) is None


def test_disconnect_alarm_counts_closes_by_that_sides_peer() -> None:
    """3 targets closed in the period: external alarm; our timeouts do not count."""
    mset, clock, log = running(
        "monitor { from: 0/0 to: 0/0\n external.alarm.disconnect: 3/1 in 5\n}\n"
    )
    members = [mset.attach(CLIENT, TARGET, "connect", Counters()) for _ in range(5)]
    for m in members[:2]:
        assert m is not None
        m.ended("target")
    members[2].ended("timeout")  # type: ignore[union-attr]
    clock.advance(5)
    assert warnings(log) == []  # 2 < 3
    members += [mset.attach(CLIENT, TARGET, "connect", Counters())]
    for m in members[3:]:
        m.ended("target")  # type: ignore[union-attr]
    clock.advance(5)
    assert warnings(log) == [
        "monitor(1): alarm/disconnect ]: 0/0 -> 0/0 external: 3/3 disconnects "
        "during last 5s.  Session count: 0"
    ]


def test_disconnect_alarm_min_and_ratio() -> None:
    """MIN reached, and at least one in RATIO of the ended sessions."""
    mset, clock, log = running(
        "monitor { from: 0/0 to: 0/0\n internal.alarm.disconnect: 2/2 in 5\n}\n"
    )
    ends = ["client", "client", "target", "target", "target"]  # 2 of 5 < 1/2
    for who in ends:
        m = mset.attach(CLIENT, TARGET, "connect", Counters())
        assert m is not None
        m.ended(who)
    clock.advance(5)
    assert warnings(log) == []
    for who in ["client", "client", "target"]:  # 2 of 3 >= 1/2
        m = mset.attach(CLIENT, TARGET, "connect", Counters())
        assert m is not None
        m.ended(who)
    clock.advance(5)
    assert warnings(log) == [
        "monitor(1): alarm/disconnect ]: 0/0 -> 0/0 internal: 2/3 disconnects "
        "during last 5s.  Session count: 0"
    ]


def test_reconfiguring_stops_the_old_timers_and_drops_alarms() -> None:
    mset, clock, log = running(
        "monitor { from: 0/0 to: 0/0\n alarm.data: 0 in 5\n alarm.disconnect: 1/1\n}\n"
    )
    assert len(clock.getDelayedCalls()) == 2
    mset.configure((), log.warning, NO_DNS)
    assert clock.getDelayedCalls() == []
    mset.stop()


def test_the_mtu_test_alarm_is_refused_at_start_up() -> None:
    with pytest.raises(ConfigErrors) as info:
        monitors("monitor { from: 0/0 to: 0/0\n alarm.test.mtu-error: yes\n}\n")
    assert "t.conf:4:2: error: 'alarm.test.mtu-error' is not supported yet" in str(
        info.value
    )


def test_session_joins_its_monitor_and_leaves_with_its_bytes() -> None:
    """The CONNECT session is watched from relay start to its end."""
    text = HEAD + "client pass { from: 0/0 to: 0/0 }\n" + SOCKS
    text += "monitor { from: 0/0 to: 0/0\n internal.alarm.data.recv: 3 in 10\n}\n"
    m = memory_session(text)
    cfg = m.session.policy.config
    m.session.runtime.monitors.configure(cfg.monitors, m.log.warning, NO_DNS)
    m.send(b"\x05\x01\x00")  # RFC 1928 §3: VER=5 NMETHODS=1 METHODS=[00]
    # RFC 1928 §4: CONNECT 10.1.2.3:80, then 4 early bytes for the target
    m.send(b"\x05\x01\x00\x01\x0a\x01\x02\x03\x00\x50" + b"ping")
    with socket.create_server(("127.0.0.1", 0)) as server:
        sock = socket.create_connection(server.getsockname())
        server.accept()[0].close()
    m.connector.calls[0].deferred.callback(sock)
    member = m.session.monitored
    assert member is not None
    (relay,) = m.relays
    relay.end(EndReason("target"))
    assert member not in member._monitor.live
    m.clock.advance(10)  # 4 bytes read from the client: more than 3
    assert not [x for x in m.log.messages() if "alarm/data" in x]
    m.session.runtime.monitors.stop()


def test_udp_associations_match_by_protocol_and_command() -> None:
    """protocol: udp and command: udpassociate/udpreply take UDP
    associations, and only them; they are no longer refused with a warning."""
    for body, udp, tcp in (
        ("protocol: udp", True, False),
        ("protocol: tcp", False, True),
        ("command: udpassociate", True, False),
        ("command: udpreply", True, False),
        ("command: connect udpassociate", True, True),
        ("", True, True),
    ):
        text = f"monitor {{ from: 0/0 to: 0/0\n {body}\n alarm.data: 0 in 5\n}}\n"
        assert not parse(HEAD + text + SOCKS, "t.conf").warnings, body
        mset, _clock, _log = running(text)
        for command, wanted in (("udpassociate", udp), ("connect", tcp)):
            member = mset.attach(CLIENT, TARGET, command, Counters())
            assert (member is not None) is wanted, (body, command)
        mset.stop()


def test_a_bind_session_is_watched_from_its_peer_to_its_end() -> None:
    """command: bind -- the BIND session's relay (client and the peer that
    connected) joins the monitor; the peer closing it counts as external."""
    from tests.server.test_bind import connect_peer, negotiated, the_reader, v5_bind

    text = (
        HEAD
        + "external: 127.0.0.1\n"
        + "client pass { from: 0/0 to: 0/0 }\n"
        + "socks pass { from: 0/0 to: 0/0 command: bind bindreply }\n"
        + "monitor { from: 0/0 to: 127.0.0.0/8\n command: bind\n"
        + " external.alarm.disconnect: 1/1 in 5\n}\n"
    )
    m = negotiated(text)
    m.session.runtime.monitors.configure(
        m.session.policy.config.monitors, m.log.warning, NO_DNS
    )
    reply = m.send(v5_bind("0.0.0.0", 0))  # RFC 1928 §4 CMD=2
    port = struct.unpack("!H", reply[8:10])[0]
    peers: list[socket.socket] = []
    try:
        reader = the_reader(m)
        connect_peer(peers, port)
        reader.doRead()  # type: ignore[attr-defined]
        member = m.session.monitored
        assert member is not None and member in member._monitor.live
        (relay,) = m.relays
        relay.end(EndReason("target"))  # the peer closed
        assert m.session.monitored is None
        m.clock.advance(5)
    finally:
        for s in peers:
            s.close()
        m.session.runtime.monitors.stop()
    assert [x for x in m.log.messages() if "alarm/disconnect" in x] == [
        "monitor(1): alarm/disconnect ]: 0/0 -> 127.0.0.0/8 external: 1/1 "
        "disconnects during last 5s.  Session count: 0"
    ]


# -- --workers N: counters shared through a table ----------------------------


def workers_sharing(
    body: str, tmp_path: Path
) -> tuple[MonitorSet, MonitorSet, Clock, MemoryLog, MemoryLog]:
    """Worker 0 and worker 1 of two, on one clock, with the supervisor's table."""
    MonitorShare.create(str(tmp_path / "monitors"), 2).close()
    clock = Clock()
    logs = (MemoryLog(), MemoryLog())
    sets = []
    for index in (0, 1):
        mset = MonitorSet(clock)
        mset.share = MonitorShare.open(str(tmp_path / "monitors"), index)
        mset.configure(monitors(body), logs[index].warning, NO_DNS)
        sets.append(mset)
    return sets[0], sets[1], clock, logs[0], logs[1]


def test_workers_data_alarm_sees_the_bytes_of_every_worker(tmp_path: Path) -> None:
    """Bytes relayed by worker 1 keep worker 0 from raising 'no data'; when
    nobody relays, worker 0 alone raises it, counting worker 1's session."""
    _zero, one, clock, log0, log1 = workers_sharing(
        "monitor { from: 0/0 to: 0/0\n internal.alarm.data.recv: 0 in 2\n}\n",
        tmp_path,
    )
    relay = Counters()
    assert one.attach(CLIENT, TARGET, "connect", relay) is not None
    for second in range(1, 5):  # traffic on worker 1 only, for two periods
        relay.values[0] += 100
        clock.advance(1)
        assert warnings(log0) == [], second
    clock.advance(2)  # a period without a byte anywhere
    assert warnings(log0) == [
        "monitor(1): alarm/data [: 0/0 -> 0/0 internal.recv: 0/0 in 2s.  "
        "Session count: 1"
    ]
    assert warnings(log1) == []  # worker 1 raises nothing itself


def test_workers_disconnect_alarm_adds_up_the_workers_sessions(
    tmp_path: Path,
) -> None:
    """Two targets closed on each worker: 4/4, over a minimum of 3."""
    zero, one, clock, log0, _ = workers_sharing(
        "monitor { from: 0/0 to: 0/0\n external.alarm.disconnect: 3/1 in 5\n}\n",
        tmp_path,
    )
    for mset in (zero, one, zero, one):
        member = mset.attach(CLIENT, TARGET, "connect", Counters())
        assert member is not None
        member.ended("target")
    clock.advance(5)
    assert warnings(log0) == [
        "monitor(1): alarm/disconnect ]: 0/0 -> 0/0 external: 4/4 disconnects "
        "during last 5s.  Session count: 0"
    ]


def test_workers_on_other_monitors_are_left_out(tmp_path: Path) -> None:
    """A worker still on the monitors before a reload does not count."""
    _zero, one, clock, log0, _ = workers_sharing(
        "monitor { from: 0/0 to: 0/0\n alarm.data: 0 in 1\n}\n", tmp_path
    )
    one.configure(
        monitors("monitor { from: 0/0 to: 0/0\n alarm.data: 5 in 1\n}\n"),
        MemoryLog().warning,
        NO_DNS,
    )
    relay = Counters()
    one.attach(CLIENT, TARGET, "connect", relay)
    relay.values[0] = 1000
    clock.advance(1)
    assert [w.split(":")[0] for w in warnings(log0)] == ["monitor(1)"]
    assert "0/0 in 1s.  Session count: 0" in warnings(log0)[0]


def test_workers_counters_that_start_over_are_not_a_drop(tmp_path: Path) -> None:
    """Worker 1 reloads (same monitors, its counters start from 0) while its
    session goes on: worker 0 sees the new bytes, not a fall to none."""
    _zero, one, clock, log0, _ = workers_sharing(
        "monitor { from: 0/0 to: 0/0\n internal.alarm.data.recv: 0 in 1\n}\n",
        tmp_path,
    )
    relay = Counters()
    one.attach(CLIENT, TARGET, "connect", relay)
    relay.values[0] = 5000
    clock.advance(1)
    one.configure(
        monitors("monitor { from: 0/0 to: 0/0\n internal.alarm.data.recv: 0 in 1\n}\n"),
        MemoryLog().warning,
        NO_DNS,
    )
    fresh = Counters()
    one.attach(CLIENT, TARGET, "connect", fresh)
    fresh.values[0] = 10  # far below 5000: counted as new bytes
    clock.advance(1)
    assert warnings(log0) == []
