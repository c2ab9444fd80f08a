"""Timeouts: per-rule values over global ones, the FIN-WAIT limit, the i/o
timeout, all on a fake clock."""

from __future__ import annotations

from dantex.config import parse
from dantex.config.model import Timeouts
from dantex.limits.timeouts import fin_wait, pick
from dantex.server.relay import EndReason
from dantex.testing import MemorySession, memory_session

# RFC 1928 §3: VER=5 NMETHODS=1 METHODS=[00]
GREETING = b"\x05\x01\x00"
# RFC 1928 §4: VER=5 CMD=1 RSV ATYP=1 10.1.2.3 port 80
CONNECT_V4 = b"\x05\x01\x00\x01\x0a\x01\x02\x03\x00\x50"

CONF = """
internal: 127.0.0.1 port = 1080
socksmethod: none
{globals}
client pass {{ from: 0/0 to: 0/0
  log: connect disconnect error
  {client} }}
socks pass {{ from: 0/0 to: 0/0
  log: connect disconnect error
  {socks} }}
"""


def conf(globals_: str = "", client: str = "", socks: str = "") -> str:
    return CONF.format(globals=globals_, client=client, socks=socks)


def relaying(text: str) -> MemorySession:
    """A session whose CONNECT succeeded (a FakeRelay runs)."""
    import socket

    m = memory_session(text)
    assert m.send(GREETING) == b"\x05\x00"
    m.send(CONNECT_V4)
    with socket.create_server(("127.0.0.1", 0)) as server:
        sock = socket.create_connection(server.getsockname())
        server.accept()[0].close()
    m.connector.calls[0].deferred.callback(sock)
    return m


def test_socks_rule_beats_client_rule_beats_global() -> None:
    """The most specific level that gives a value wins."""
    cfg = parse(
        conf("timeout.connect: 7", "timeout.connect: 8", "timeout.connect: 9"), "t"
    )
    client, socks = cfg.client_rules[0], cfg.socks_rules[0]
    assert pick("connect", (socks, client), cfg.timeouts) == 9.0
    assert pick("connect", (None, client), cfg.timeouts) == 8.0
    assert pick("connect", (None, None), cfg.timeouts) == 7.0


def test_rule_timeout_io_covers_tcp_and_udp() -> None:
    """A rule's timeout.io stands for both; a specific one beats it."""
    cfg = parse(conf(socks="timeout.io: 11\n timeout.io.udp: 12"), "t")
    rule = cfg.socks_rules[0]
    assert pick("io_tcp", (rule,), cfg.timeouts) == 11.0
    assert pick("io_udp", (rule,), cfg.timeouts) == 12.0


def test_fin_wait_is_cut_to_the_io_timeout() -> None:
    """danted reduces a FIN-WAIT limit longer than a non-zero i/o timeout."""
    assert fin_wait((), Timeouts(io_tcp=10, tcp_fin_wait=60)) == 10
    assert fin_wait((), Timeouts(io_tcp=0, tcp_fin_wait=60)) == 60
    assert fin_wait((), Timeouts(io_tcp=100, tcp_fin_wait=0)) == 0


def test_fin_wait_closes_a_half_closed_session_after_its_time() -> None:
    """After the first EOF the session has tcp_fin_wait seconds left."""
    m = relaying(conf(socks="timeout.tcp_fin_wait: 5"))
    (relay,) = m.relays
    assert relay.fin_wait == 5.0
    m.clock.advance(100)  # no EOF yet: nothing happens
    assert relay.aborted is None
    relay._half_close_began()
    m.clock.advance(4.9)
    assert relay.aborted is None
    m.clock.advance(0.1)
    assert relay.aborted is not None and str(relay.aborted) == "tcp-fin-wait timeout"
    assert any(
        "tcp/connect ]" in x
        and x.endswith(": tcp-fin-wait timeout.  Session duration: 105s")
        for x in m.log.messages()
    )
    assert not m.clock.getDelayedCalls()


def test_global_fin_wait_applies_and_ending_cancels_the_timer() -> None:
    """The global value applies without a rule value; a normal end cancels."""
    m = relaying(conf("timeout.tcp_fin_wait: 3"))
    (relay,) = m.relays
    assert relay.fin_wait == 3.0
    relay._half_close_began()
    assert [c.getTime() for c in m.clock.getDelayedCalls()] == [3.0, 30.0]
    relay.end(EndReason("client"))
    # left: the negotiation deadlines' shared timer (it finds nothing due)
    (left,) = m.clock.getDelayedCalls()
    assert left.getTime() == 30.0
    m.clock.advance(30)
    assert not m.clock.getDelayedCalls()


def test_io_timeout_ends_an_idle_session_with_danteds_reason() -> None:
    """timeout.io in the socks-rule: idle that long -> 'i/o timeout'."""
    m = relaying(conf(socks="timeout.io: 20"))
    (relay,) = m.relays
    m.clock.advance(19)
    assert relay.aborted is None
    relay.last_active = m.clock.seconds()  # traffic at 19 s: 20 s more
    m.clock.advance(19.5)
    assert relay.aborted is None
    m.clock.advance(0.5)
    assert str(relay.aborted) == "i/o timeout"


def test_client_rule_negotiate_timeout_replaces_the_global_one() -> None:
    """A client-rule's timeout.negotiate counts from the accept."""
    m = memory_session(conf("timeout.negotiate: 30", client="timeout.negotiate: 4"))
    m.clock.advance(3.9)
    assert m.transport.connected
    m.clock.advance(0.1)
    assert not m.transport.connected
    assert any("negotiation timed out after 4s" in x for x in m.log.messages())


def test_bind_relay_gets_the_fin_wait_limit() -> None:
    """BIND's relay (after the peer came) is bounded by tcp_fin_wait too."""
    import socket as s_

    m = memory_session(
        "internal: 127.0.0.1 port = 1080\nexternal: 127.0.0.1\nsocksmethod: none\n"
        "timeout.tcp_fin_wait: 7\n"
        "client pass { from: 127.0.0.0/8 to: 0/0 }\n"
        "socks pass { from: 0/0 to: 0/0 command: bind }\n"
        "socks pass { from: 0/0 to: 127.0.0.0/8 command: bindreply }\n"
    )
    assert m.send(GREETING) == b"\x05\x00"
    # RFC 1928 §4: VER=5 CMD=2 (BIND) RSV ATYP=1 0.0.0.0 port 0
    first = m.send(b"\x05\x02\x00\x01\x00\x00\x00\x00\x00\x00")
    port = int.from_bytes(first[8:10], "big")
    (reader,) = m.clock.readers
    with s_.create_connection(("127.0.0.1", port)):
        reader.doRead()
        (relay,) = m.relays
        assert relay.fin_wait == 7.0
        relay.end(EndReason("client"))
