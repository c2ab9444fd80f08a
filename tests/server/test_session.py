"""The server session in memory: negotiation, rules, replies, timeouts.

Wire bytes are written by hand from RFC 1928 §3-§6 and the SOCKS 4/4A texts.
"""

from __future__ import annotations

import errno
import socket
import struct

import pytest
from twisted.internet import defer
from twisted.python.failure import Failure

from dantex.server.relay import EndReason
from dantex.testing import MemorySession, memory_session

OPEN = """
internal: 127.0.0.1 port = 1080
socksmethod: none
client pass { from: 127.0.0.0/8 to: 0/0
  log: connect disconnect error }
socks pass { from: 127.0.0.0/8 to: 0/0
  log: connect disconnect error }
"""

# RFC 1928 §3: VER=5 NMETHODS=1 METHODS=[00]
GREETING = b"\x05\x01\x00"
# RFC 1928 §4: VER=5 CMD=1 RSV ATYP=1 10.1.2.3 port 80
CONNECT_V4 = b"\x05\x01\x00\x01\x0a\x01\x02\x03\x00\x50"


def connected_socket() -> socket.socket:
    """A real connected TCP socket to hand to the session as 'the target'."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        server.accept()[0].close()
    return client


def negotiated(config: str = OPEN, **kw: object) -> MemorySession:
    m = memory_session(config, **kw)  # type: ignore[arg-type]
    assert m.send(GREETING) == b"\x05\x00"
    return m


def test_no_auth_selected_and_connect_goes_to_ipv4_target() -> None:
    """A v5 CONNECT to an IPv4 address is connected with the global timeout."""
    m = negotiated()
    assert m.send(CONNECT_V4) == b""
    (call,) = m.connector.calls
    assert call.family == socket.AF_INET
    assert call.sockaddr == ("10.1.2.3", 80)
    assert call.source is None
    assert call.timeout == 30.0


def test_success_reply_carries_bound_address_and_relay_gets_early_bytes() -> None:
    """BND is the outbound socket's address; bytes after the request reach the relay."""
    m = negotiated()
    m.send(CONNECT_V4 + b"early data")
    sock = connected_socket()
    m.transport.clear()
    m.connector.calls[0].deferred.callback(sock)
    (relay,) = m.relays
    assert relay.started
    assert relay.leftover == b"early data"
    # VER=5 REP=0 RSV=0 ATYP=1 BND.ADDR=127.0.0.1 BND.PORT=<the socket's port>
    port = sock.getsockname()[1]
    expected = b"\x05\x00\x00\x01\x7f\x00\x00\x01" + port.to_bytes(2, "big")
    assert m.transport.value() == expected
    relay.end(EndReason("client"))
    assert any(
        "tcp/connect ]" in line and "local client closed" in line
        for line in m.log.messages()
    )


def test_greeting_without_no_auth_gets_ff_and_close() -> None:
    """RFC 1928 §3: no acceptable method -> X'FF' and the connection closes."""
    m = memory_session(OPEN)
    assert m.send(b"\x05\x01\x02") == b"\x05\xff"
    assert not m.transport.connected


def test_unknown_version_is_closed_without_reply() -> None:
    """A first byte other than 4 or 5 closes the connection without a reply."""
    m = memory_session(OPEN)
    assert m.send(b"\x06\x01\x00") == b""
    assert not m.transport.connected
    assert any("unknown SOCKS version 6" in line for line in m.log.messages())


def test_unknown_command_gets_07() -> None:
    """RFC 1928 §6: an unknown CMD is answered X'07' (Dante closes silently)."""
    m = negotiated()
    reply = m.send(b"\x05\x09\x00\x01\x0a\x01\x02\x03\x00\x50")
    assert reply[:2] == b"\x05\x07"
    assert not m.transport.connected


def test_unknown_address_type_gets_08() -> None:
    """RFC 1928 §6: an unknown ATYP is answered X'08'."""
    m = negotiated()
    reply = m.send(b"\x05\x01\x00\x09\x0a\x01\x02\x03\x00\x50")
    assert reply[:2] == b"\x05\x08"
    assert not m.transport.connected


def test_port_zero_is_refused_with_08() -> None:
    """CONNECT to port 0 is refused with X'08' as danted does."""
    m = negotiated()
    reply = m.send(b"\x05\x01\x00\x01\x0a\x01\x02\x03\x00\x00")
    assert reply[:2] == b"\x05\x08"
    assert m.connector.calls == []


def test_connect_to_our_own_listening_address_is_refused() -> None:
    """A CONNECT back to the proxy's own listening socket is refused with X'02'."""
    m = negotiated()
    reply = m.send(b"\x05\x01\x00\x01\x7f\x00\x00\x01\x04\x38")  # 127.0.0.1:1080
    assert reply[:2] == b"\x05\x02"
    assert m.connector.calls == []


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (OSError(errno.ECONNREFUSED, "Connection refused"), 0x05),
        (OSError(errno.ENETUNREACH, "Network is unreachable"), 0x03),
        (OSError(errno.EHOSTUNREACH, "No route to host"), 0x04),
        (OSError(errno.ETIMEDOUT, "Connection timed out"), 0x06),
        (defer.TimeoutError(), 0x06),
        (OSError(errno.EACCES, "Permission denied"), 0x01),
    ],
)
def test_connect_failures_map_to_rfc1928_replies(exc: Exception, code: int) -> None:
    """Each connect failure gets the RFC 1928 §6 reply Dante's errno map gives."""
    m = negotiated()
    m.send(CONNECT_V4)
    m.transport.clear()
    m.connector.calls[0].deferred.errback(Failure(exc))
    assert m.transport.value()[:2] == bytes((5, code))
    assert not m.transport.connected


def test_unresolvable_name_gets_04() -> None:
    """A host name that does not resolve is answered X'04' (host unreachable)."""
    m = negotiated()
    name = b"nowhere.invalid"
    reply = m.send(b"\x05\x01\x00\x03" + bytes((len(name),)) + name + b"\x00\x50")
    assert reply[:2] == b"\x05\x04"
    assert ("forward", "nowhere.invalid") in m.resolver.asked


def test_hostname_is_resolved_and_first_address_connected() -> None:
    """A domain target is resolved without blocking and its first address used."""
    m = negotiated(forward={"www.example.test": ("192.0.2.7", "2001:db8::7")})
    name = b"www.example.test"
    m.send(b"\x05\x01\x00\x03" + bytes((len(name),)) + name + b"\x01\xbb")
    assert m.connector.calls[0].sockaddr == ("192.0.2.7", 443)


def test_socks_rule_block_answers_02_and_logs_both_levels() -> None:
    """A socks block rule answers X'02' and logs the block and the accept end."""
    config = OPEN.replace(
        "socks pass {",
        "socks block { from: 0/0 to: 10.0.0.0/8\n log: connect }\nsocks pass {",
    )
    m = negotiated(config)
    reply = m.send(CONNECT_V4)
    assert reply[:2] == b"\x05\x02"
    lines = m.log.messages()
    assert any(line.startswith("block(1): tcp/connect ]:") for line in lines)
    assert any("blocked by higher-level socks-rule #1" in line for line in lines)


def test_default_rule_blocks_and_says_so() -> None:
    """No socks rule matching means the implicit block #0, logged with its reason."""
    config = OPEN.replace(
        "socks pass { from: 127.0.0.0/8 to: 0/0",
        "socks pass { from: 127.0.0.0/8 to: 192.168.0.0/16",
    )
    m = negotiated(config)
    assert m.send(CONNECT_V4)[:2] == b"\x05\x02"
    assert any(
        line.startswith("block(0): tcp/connect ]:") and "no rules matched" in line
        for line in m.log.messages()
    )


def test_client_rule_block_closes_without_reply() -> None:
    """A client-rule block closes the connection at once, before any SOCKS byte."""
    m = memory_session(OPEN, client=("10.9.9.9", 5555))
    assert m.transport.value() == b""
    assert m.send(GREETING) == b""
    assert any(
        line.startswith("block(0): tcp/accept ]: 10.9.9.9.5555")
        for line in m.log.messages()
    )


def test_negotiation_timeout_closes_silent_client() -> None:
    """A client that sends nothing is closed after timeout.negotiate seconds."""
    m = memory_session(
        OPEN.replace("socksmethod: none", "socksmethod: none\ntimeout.negotiate: 5")
    )
    m.clock.advance(4.9)
    assert m.transport.connected
    m.clock.advance(0.2)
    assert not m.transport.connected
    assert any("negotiation timed out after 5s" in line for line in m.log.messages())


def test_connect_timeout_is_the_rule_value() -> None:
    """A per-rule timeout.connect overrides the global one."""
    config = OPEN.replace(
        "log: connect disconnect error }\n",
        "log: connect disconnect error\n timeout.connect: 7 }\n",
        2,
    )
    m = negotiated(config)
    m.send(CONNECT_V4)
    assert m.connector.calls[0].timeout == 7.0


# SOCKS 4: VN=4 CD=1 DSTPORT=80 DSTIP=10.1.2.3 USERID="" NUL
SOCKS4_CONNECT = b"\x04\x01\x00\x50\x0a\x01\x02\x03\x00"


def test_socks4_connect_success_reply_is_90() -> None:
    """SOCKS 4: a granted CONNECT is answered VN=0 CD=90."""
    m = memory_session(OPEN)
    m.send(SOCKS4_CONNECT)
    m.transport.clear()
    m.connector.calls[0].deferred.callback(connected_socket())
    assert m.transport.value()[:2] == b"\x00\x5a"


def test_socks4_failure_reply_is_91() -> None:
    """SOCKS 4: any failure is answered CD=91."""
    m = memory_session(OPEN)
    m.send(SOCKS4_CONNECT)
    m.transport.clear()
    m.connector.calls[0].deferred.errback(
        Failure(OSError(errno.ECONNREFUSED, "refused"))
    )
    assert m.transport.value() == b"\x00\x5b\x00\x00\x00\x00\x00\x00"


def test_socks4a_hostname_is_resolved_by_the_server() -> None:
    """SOCKS 4A: DSTIP 0.0.0.1 and a host name after USERID; the server resolves it."""
    m = memory_session(OPEN, forward={"host.test": ("192.0.2.9",)})
    m.send(b"\x04\x01\x00\x50\x00\x00\x00\x01user\x00host.test\x00")
    assert m.connector.calls[0].sockaddr == ("192.0.2.9", 80)


def test_request_split_one_byte_at_a_time() -> None:
    """Greeting and request arriving a byte at a time still make one CONNECT."""
    m = memory_session(OPEN)
    for byte in GREETING + CONNECT_V4:
        m.session.dataReceived(bytes((byte,)))
    assert m.transport.value() == b"\x05\x00"
    assert [c.sockaddr for c in m.connector.calls] == [("10.1.2.3", 80)]


def test_client_gone_while_connecting_cancels_the_connect() -> None:
    """If the client disconnects while we connect, the pending connect is cancelled."""
    m = negotiated()
    m.send(CONNECT_V4)
    m.session.connectionLost(Failure(ConnectionError("gone")))
    assert m.connector.calls[0].cancelled


def test_source_is_remembered_per_family_only_when_it_cannot_change() -> None:
    """external: addresses without rotation: the choice per family is made
    once, a refusal (no address of the family) each time; an interface name
    (its addresses may change) is looked at each time."""
    from dantex.server.connect import source_for
    from dantex.server.errors import ConnectFailed

    policy = memory_session("external: 127.0.0.2\n" + OPEN).session.policy
    assert source_for(policy, "10.0.0.1", "127.0.0.1") == "127.0.0.2"
    assert policy.sources == {socket.AF_INET: "127.0.0.2"}
    for _ in range(2):
        with pytest.raises(ConnectFailed):
            source_for(policy, "2001:db8::1", "127.0.0.1")
    assert policy.sources == {socket.AF_INET: "127.0.0.2"}
    by_name = memory_session("external: lo\n" + OPEN)
    assert by_name.session.policy.sources is None
    assert source_for(by_name.session.policy, "10.0.0.1", "127.0.0.1") == "127.0.0.1"


def test_external_protocol_excludes_a_family() -> None:
    """external.protocol: ipv6 leaves no IPv4 source: an IPv4 target gets X'08'."""
    from dantex.config import parse
    from dantex.server.connect import choose_source
    from dantex.server.errors import ConnectFailed

    cfg = parse(
        "internal: 127.0.0.1\nexternal: 127.0.0.1\nexternal: ::1\n"
        "external.protocol: ipv6\nsocksmethod: none\n",
        "t.conf",
    )
    assert choose_source(cfg, "::2", "127.0.0.1") == "::1"
    with pytest.raises(ConnectFailed) as info:
        choose_source(cfg, "10.0.0.1", "127.0.0.1")
    assert info.value.reply == 0x08


SAMEPORT_CONF = """\
internal: 127.0.0.1 port = 1080
external: 127.0.0.1
socksmethod: none
client pass { from: 0/0 to: 0/0 }
socks pass { from: 0/0 to: 0/0 }
"""


def test_sameport_asks_the_connector_for_the_clients_port() -> None:
    """compatibility: sameport -- the client's port (40000 in memory) is the
    source port to try; without it none is asked for."""
    for head, wanted in (("compatibility: sameport\n", 40000), ("", 0)):
        m = memory_session(head + SAMEPORT_CONF)
        assert m.send(b"\x05\x01\x00") == b"\x05\x00"  # RFC 1928 §3
        # RFC 1928 §4: CONNECT 10.1.2.3:80
        m.send(b"\x05\x01\x00\x01\x0a\x01\x02\x03" + struct.pack("!H", 80))
        (call,) = m.connector.calls
        assert call.prefer_port == wanted
