"""Dante-format log text: I/O records, payload encoding, TCP_INFO, state dump."""

from __future__ import annotations

import socket
import struct

from dantex.log.dump import state_lines
from dantex.log.format import io_text, vis
from dantex.log.tcpinfo import describe, read
from dantex.testing import memory_session

OPEN = """
internal: 127.0.0.1 port = 1080
socksmethod: none
client pass { from: 127.0.0.0/8 to: 0/0 }
socks pass { from: 127.0.0.0/8 to: 0/0
  log: iooperation data }
"""


def test_vis_keeps_printables_and_escapes_the_rest() -> None:
    """Payload bytes become one printable line."""
    assert vis(b"GET / HTTP/1.0\r\n\x00\xff\\") == "GET / HTTP/1.0\\r\\n\\x00\\xff\\\\"


def test_io_text_has_size_and_optional_payload() -> None:
    """`<src> -> <dst> (n)`, and `: payload` with log: data."""
    assert (
        io_text("a.1 b.2", "c.3 d.4", b"hi", payload=False) == "a.1 b.2 -> c.3 d.4 (2)"
    )
    assert io_text("a", "b", b"hi\n", payload=True) == "a -> b (3): hi\\n"


def test_tcpinfo_describes_the_kernel_struct() -> None:
    """The fields are read from Linux's struct tcp_info layout."""
    values = [0] * 32
    values[0] = 1  # TCP_ESTABLISHED
    values[23] = 31  # tcpi_rtt
    values[26] = 10  # tcpi_snd_cwnd
    text = describe(struct.pack("=8B24I", *values))
    assert text.startswith("state: established")
    assert "rtt: 31us" in text and "snd_cwnd: 10" in text
    assert describe(None) == "unavailable"


def test_tcpinfo_of_a_real_socket() -> None:
    """TCP_INFO of a connected loopback socket reads as established."""
    with (
        socket.create_server(("127.0.0.1", 0)) as server,
        socket.create_connection(server.getsockname()) as c,
    ):
        assert describe(read(c)).startswith("state: established")


def test_io_record_lines_name_both_directions() -> None:
    """Client->target lines list the client first; replies list the target first."""
    m = memory_session(OPEN)
    m.send(b"\x05\x01\x00")
    m.send(b"\x05\x01\x00\x01\x0a\x01\x02\x03\x00\x50")
    with socket.create_server(("127.0.0.1", 0)) as server:
        sock = socket.create_connection(server.getsockname())
    m.connector.calls[0].deferred.callback(sock)
    m.session.io_record(True, b"abc")
    m.session.io_record(False, b"xy")
    up, down = m.log.messages()[-2:]
    assert up.startswith("pass(1): tcp/connect -: 127.0.0.1.40000 127.0.0.1.1080 -> ")
    assert up.endswith(" 10.1.2.3.80 (3): abc")
    assert down.startswith("pass(1): tcp/connect -: 10.1.2.3.80 ")
    assert down.endswith(" 127.0.0.1.1080 127.0.0.1.40000 (2): xy")
    sock.close()


def test_state_dump_lists_negotiating_sessions() -> None:
    """The dump has a header, a counter line and one line per session."""
    m = memory_session(OPEN)
    lines = state_lines(
        [m.session], now=m.clock.seconds() + 3, started=0.0, accepted=7, generation=2
    )
    assert lines[0].startswith("info dump [: server pid ")
    assert "config generation 2" in lines[0]
    assert lines[1] == "sessions: a: 7 c: 1 (negotiating: 1, relaying: 0)"
    assert (
        lines[2] == "tcp: 127.0.0.1.40000 127.0.0.1.1080: age: 3s, state: negotiating"
    )
    assert lines[3] == "info dump ]: 1 session"
