"""Session limits through a real SocksSession in memory: replies, log lines,
slots given back however a session ends, inheritance client -> socks rule."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from dantex.limits._table import LimitTable
from dantex.server.relay import EndReason
from dantex.testing import MemorySession, memory_session

# RFC 1928 §3: VER=5 NMETHODS=1 METHODS=[00]
GREETING = b"\x05\x01\x00"
# RFC 1928 §4: VER=5 CMD=1 RSV ATYP=1 10.1.2.3 port 80
CONNECT = b"\x05\x01\x00\x01\x0a\x01\x02\x03\x00\x50"
# RFC 1928 §6: VER=5 REP=2 (not allowed by ruleset) RSV ATYP=1 10.1.2.3 port 80
NOT_ALLOWED = b"\x05\x02\x00\x01\x0a\x01\x02\x03\x00\x50"
# SOCKS 4: VN=4 CD=1 DSTPORT=80 DSTIP=10.1.2.3 USERID="" NUL
CONNECT_V4 = b"\x04\x01\x00\x50\x0a\x01\x02\x03\x00"

HEAD = "internal: 127.0.0.1 port = 1080\nsocksmethod: none\n"
CLIENT = "client pass { from: 0/0 to: 0/0 log: error connect disconnect }\n"


def conf(socks_extra: str = "", client_extra: str = "") -> str:
    client = CLIENT.replace("log:", f"{client_extra} log:") if client_extra else CLIENT
    return (
        HEAD + client + "socks pass { from: 0/0 to: 0/0 "
        f"{socks_extra} log: error connect disconnect }}\n"
    )


def target_socket() -> socket.socket:
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        server.accept()[0].close()
    return client


@pytest.fixture(autouse=True)
def one_table(monkeypatch: pytest.MonkeyPatch) -> Iterator[LimitTable]:
    """Every memory session of a test shares one table (as one process does)."""
    table = LimitTable.anonymous(64)
    monkeypatch.setattr(LimitTable, "anonymous", lambda *_a: table)
    yield table


class Sessions:
    """Several memory sessions sharing one limits table."""

    def __init__(self, config: str) -> None:
        self.config = config
        self.table = LimitTable.anonymous()

    def new(self, client: str = "127.0.0.1") -> MemorySession:
        return memory_session(self.config, client=(client, 40000))

    def connected(self, client: str = "127.0.0.1") -> MemorySession:
        m = self.new(client)
        assert m.send(GREETING) == b"\x05\x00"
        m.send(CONNECT)
        m.connector.calls[0].deferred.callback(target_socket())
        assert m.relays and m.relays[0].started
        return m


def test_third_session_refused_with_0x02_and_dantes_log_line() -> None:
    """session.max: 2: the 3rd concurrent request gets REP=2 and the log says
    'session limit reached (2/2 slot in use)'; after one ends, one more fits."""
    s = Sessions(conf("session.max: 2"))
    first, _second = s.connected(), s.connected()
    third = s.new()
    third.send(GREETING)
    assert third.send(CONNECT) == NOT_ALLOWED
    assert not third.transport.connected
    (line,) = [x for x in third.log.messages() if "limit" in x]
    assert "block(1): tcp/connect ]:" in line
    assert line.endswith("session limit reached (2/2 slot in use)")
    first.relays[0].end(EndReason("client"))
    s.connected()


def test_socks4_refusal_is_91() -> None:
    """SOCKS 4: the refusal is CD=91 (request rejected)."""
    s = Sessions(conf("session.max: 1"))
    s.connected()
    v4 = s.new()
    # VN=0 CD=91, DSTPORT/DSTIP not meaningful
    assert v4.send(CONNECT_V4)[:2] == b"\x00\x5b"


def test_slot_given_back_when_the_connect_fails_or_client_leaves() -> None:
    """A failed connect and a client gone before the relay both free the slot."""
    s = Sessions(conf("session.max: 1"))
    m = s.new()
    m.send(GREETING)
    m.send(CONNECT)
    m.connector.calls[0].deferred.errback(ConnectionRefusedError())
    m2 = s.new()
    m2.send(GREETING)
    m2.send(CONNECT)
    m2.session.connectionLost()
    s.connected()


def test_per_address_key() -> None:
    """session.state.key: from, state.max: 1 -> one per client address."""
    s = Sessions(conf("session.state.key: from session.state.max: 1"))
    s.connected("127.0.0.1")
    s.connected("127.0.0.2")
    again = s.new("127.0.0.1")
    again.send(GREETING)
    assert again.send(CONNECT) == NOT_ALLOWED


def test_client_rule_limit_is_inherited_and_refused_at_the_request() -> None:
    """A client-rule session.max counts at accept; the refusal is REP=2 once
    the request is known; the slot stays held through the socks-rule."""
    s = Sessions(conf(client_extra="session.max: 1"))
    first = s.connected()
    late = s.new()
    assert late.send(GREETING) == b"\x05\x00"
    assert late.send(CONNECT) == NOT_ALLOWED
    assert any("session limit reached (1/1" in x for x in late.log.messages())
    first.relays[0].end(EndReason("target"))
    s.connected()


def test_client_rule_limit_not_inheritable_only_bounds_negotiation() -> None:
    """session.inheritable: no: the client-rule slot is given back when the
    socks-rule takes over, so established sessions do not count."""
    s = Sessions(conf(client_extra="session.max: 1 session.inheritable: no"))
    s.connected()
    s.connected()
    negotiating = s.new()
    assert s.table.in_use(_client_digest(), 0.0) == 1
    negotiating.session.connectionLost()
    assert s.table.in_use(_client_digest(), 0.0) == 0


def _client_digest() -> bytes:
    from dantex.limits._table import digest_of

    return digest_of("client", 1, "s")


def test_socks_rule_limit_replaces_the_client_rule_slot() -> None:
    """A socks-rule with its own session.max frees the client-rule's slot."""
    s = Sessions(conf("session.max: 5", client_extra="session.max: 1"))
    s.connected()
    s.connected()


def test_unlimited_rules_never_touch_the_table() -> None:
    """Without limits no table is made and the session holds nothing."""
    m = memory_session(conf())
    m.send(GREETING)
    m.send(CONNECT)
    m.connector.calls[0].deferred.callback(target_socket())
    assert m.session.limits is None
    assert m.session.runtime.limit_table is None
    m.session.connectionLost()


def test_slot_taken_at_accept_is_freed_by_a_protocol_error() -> None:
    """A client-rule slot is given back when negotiation fails (bad version)."""
    s = Sessions(conf(client_extra="session.max: 1"))
    bad = s.new()
    assert s.table.in_use(_client_digest(), 0.0) == 1
    bad.send(b"\x06\x01\x00")  # no such SOCKS version: closed without a reply
    assert not bad.transport.connected
    assert s.table.in_use(_client_digest(), 0.0) == 0
    s.connected()


def test_client_rule_bandwidth_reaches_the_relay() -> None:
    """A client-rule's bandwidth is the session's when the socks-rule has none."""
    s = Sessions(conf(client_extra="bandwidth: 5000"))
    m = s.connected()
    held = m.session.limits
    assert held is not None and held.bandwidth is not None
    assert held.bandwidth.rate == 5000


UDP_CONF = (
    HEAD
    + "external: 127.0.0.1\n"
    + CLIENT
    + "socks pass { from: 0/0 to: 0/0 session.max: 1 log: error connect disconnect\n"
    " command: bind udpassociate\n}\n"
)
# RFC 1928 §4: VER=5 CMD=3 (UDP ASSOCIATE) RSV ATYP=1 0.0.0.0 port 0
ASSOCIATE = b"\x05\x03\x00\x01\x00\x00\x00\x00\x00\x00"
# RFC 1928 §4: VER=5 CMD=2 (BIND) RSV ATYP=1 127.0.0.1 port 0
BIND = b"\x05\x02\x00\x01\x7f\x00\x00\x01\x00\x00"


def test_udp_and_bind_count_against_their_socks_rule() -> None:
    """An association holds the rule's slot: a second one and a BIND are
    refused (REP=2) until it ends."""
    first = memory_session(UDP_CONF)
    first.send(GREETING)
    assert first.send(ASSOCIATE)[:2] == b"\x05\x00"
    second = memory_session(UDP_CONF)
    second.send(GREETING)
    assert second.send(ASSOCIATE)[:2] == b"\x05\x02"
    bind = memory_session(UDP_CONF)
    bind.send(GREETING)
    assert bind.send(BIND)[:2] == b"\x05\x02"
    first.session.connectionLost()
    again = memory_session(UDP_CONF)
    again.send(GREETING)
    assert again.send(ASSOCIATE)[:2] == b"\x05\x00"
    again.session.connectionLost()
