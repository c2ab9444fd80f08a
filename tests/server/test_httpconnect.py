"""HTTP CONNECT on the SOCKS port (``extension: httpconnect``), in memory.

Requests are written by hand from RFC 9110 §9.3.6 / RFC 9112 §3 and
RFC 7617 §2 (Basic: base64 of ``user:password``).
"""

from __future__ import annotations

import errno
import socket
from pathlib import Path

import pytest
from twisted.internet import defer
from twisted.python.failure import Failure

from dantex.config import ConfigErrors, parse
from dantex.server.relay import EndReason
from dantex.testing import memory_session

RULES = """
client pass { from: 127.0.0.0/8 to: 0/0
  log: connect disconnect error }
socks block { from: 0/0 to: 10.9.9.9/32
  log: connect error }
socks pass { from: 127.0.0.0/8 to: 0/0 command: connect
  log: connect disconnect error }
"""


def conf(methods: str = "none", extra: str = "", ext: bool = True) -> str:
    return (
        "internal: 127.0.0.1 port = 1080\n"
        + ("extension: httpconnect\n" if ext else "")
        + f"socksmethod: {methods}\n"
        + extra
        + RULES
    )


def user_conf(tmp_path: Path, methods: str = "username") -> str:
    path = tmp_path / "passwd"
    path.write_text("alice:{PLAIN}alicepw:staff\n")
    return conf(methods, f"username.passwordfile: {path}\n")


REQ = b"CONNECT 10.1.2.3:80 HTTP/1.1\r\nHost: 10.1.2.3:80\r\n\r\n"
# base64("alice:alicepw") = YWxpY2U6YWxpY2Vwdw==, base64("alice:guessed")
ALICE = (
    b"CONNECT 10.1.2.3:80 HTTP/1.1\r\nHost: 10.1.2.3:80\r\n"
    b"Proxy-Authorization: Basic YWxpY2U6YWxpY2Vwdw==\r\n\r\n"
)
ALICE_BAD = (
    b"CONNECT 10.1.2.3:80 HTTP/1.1\r\nHost: 10.1.2.3:80\r\n"
    b"Proxy-Authorization: Basic YWxpY2U6Z3Vlc3NlZA==\r\n\r\n"
)


def connected_socket() -> socket.socket:
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        server.accept()[0].close()
    return client


def test_connect_answers_200_and_relays_the_bytes_after_the_head() -> None:
    """A permitted CONNECT is connected, answered 200, early bytes go on."""
    m = memory_session(conf())
    assert m.send(REQ + b"early") == b""
    (call,) = m.connector.calls
    assert call.sockaddr == ("10.1.2.3", 80)
    sock = connected_socket()
    m.transport.clear()
    call.deferred.callback(sock)
    (relay,) = m.relays
    assert relay.leftover == b"early"
    assert m.transport.value() == b"HTTP/1.1 200 Connection established\r\n\r\n"
    relay.end(EndReason("client"))
    assert any("tcp/connect ]" in line for line in m.log.messages())
    sock.close()


def test_head_split_into_single_bytes_is_read() -> None:
    """The request head may arrive one byte at a time."""
    m = memory_session(conf())
    for i in range(len(REQ)):
        m.send(REQ[i : i + 1])
    assert len(m.connector.calls) == 1


def test_host_name_target_is_resolved() -> None:
    """CONNECT to a name resolves it like a SOCKS v5 domain request."""
    m = memory_session(conf(), forward={"example.test": ("10.1.2.4",)})
    m.send(b"CONNECT example.test:443 HTTP/1.1\r\nHost: example.test:443\r\n\r\n")
    assert m.connector.calls[0].sockaddr == ("10.1.2.4", 443)


def test_blocked_target_answers_403_and_closes() -> None:
    """A socks-rule block is 403 Forbidden with Connection: close."""
    m = memory_session(conf())
    out = m.send(b"CONNECT 10.9.9.9:80 HTTP/1.1\r\nHost: 10.9.9.9:80\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert b"Connection: close\r\n" in out
    assert not m.transport.connected
    assert m.connector.calls == []
    assert any("block(1): tcp/connect ]" in line for line in m.log.messages())


@pytest.mark.parametrize(
    ("err", "status"),
    [
        (OSError(errno.ECONNREFUSED, "refused"), b"502 Bad Gateway"),
        (OSError(errno.EHOSTUNREACH, "unreachable"), b"502 Bad Gateway"),
        (defer.TimeoutError(), b"504 Gateway Timeout"),
    ],
)
def test_connect_failure_is_502_or_504(err: Exception, status: bytes) -> None:
    """Refused/unreachable targets are 502, a connect timeout is 504."""
    m = memory_session(conf())
    m.send(REQ)
    m.transport.clear()
    m.connector.calls[0].deferred.errback(Failure(err))
    assert m.transport.value().startswith(b"HTTP/1.1 " + status + b"\r\n")
    assert not m.transport.connected


def test_no_credentials_when_username_is_required_is_407(tmp_path: Path) -> None:
    """socksmethod: username and no Proxy-Authorization: 407 with a challenge."""
    m = memory_session(user_conf(tmp_path))
    out = m.send(REQ)
    assert out.startswith(b"HTTP/1.1 407 Proxy Authentication Required\r\n")
    assert b'Proxy-Authenticate: Basic realm="dantex"\r\n' in out
    assert not m.transport.connected
    assert m.connector.calls == []


def test_right_basic_credentials_connect_as_the_user(tmp_path: Path) -> None:
    """Proxy-Authorization: Basic is checked by the username backend."""
    m = memory_session(user_conf(tmp_path))
    assert m.send(ALICE) == b""
    assert m.connector.calls[0].sockaddr == ("10.1.2.3", 80)
    assert m.session.user == "alice"
    assert m.session.method == "username"


def test_wrong_basic_credentials_are_407_and_no_password_is_logged(
    tmp_path: Path,
) -> None:
    """A refused password is 407 and closes; the log names the user only."""
    m = memory_session(user_conf(tmp_path))
    out = m.send(ALICE_BAD)
    assert out.startswith(b"HTTP/1.1 407 ")
    assert not m.transport.connected
    text = "\n".join(m.log.messages())
    assert 'username authentication failed for user "alice"' in text
    assert "guessed" not in text and "alicepw" not in text


def test_username_none_takes_password_when_sent_none_otherwise(
    tmp_path: Path,
) -> None:
    """socksmethod: username none: with credentials username, without none."""
    m = memory_session(user_conf(tmp_path, "username none"))
    m.send(REQ)
    assert m.session.method == "none"
    assert len(m.connector.calls) == 1
    m = memory_session(user_conf(tmp_path, "username none"))
    m.send(ALICE)
    assert m.session.method == "username" and m.session.user == "alice"


@pytest.mark.parametrize(
    ("request_", "status"),
    [
        (b"GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n", b"405"),
        (b"CONNECT nohostport HTTP/1.1\r\n\r\n", b"400"),
        (b"CONNECT 10.1.2.3:80 HTTP/2.0\r\n\r\n", b"505"),
    ],
)
def test_unreadable_requests_get_the_codecs_status(
    request_: bytes, status: bytes
) -> None:
    """Not CONNECT is 405, a bad target 400, HTTP/2 505; then the close."""
    m = memory_session(conf())
    out = m.send(request_)
    assert out.startswith(b"HTTP/1.1 " + status + b" ")
    assert not m.transport.connected


def test_without_the_extension_http_is_an_unknown_socks_version() -> None:
    """A Dante config (no extension) treats HTTP like danted: closed, no reply."""
    m = memory_session(conf(ext=False))
    assert m.send(REQ) == b""
    assert not m.transport.connected
    assert any("unknown SOCKS version 67" in line for line in m.log.messages())


def test_proxyprotocol_socks_only_rule_does_not_match_http() -> None:
    """A socks-rule limited to proxyprotocol socks_v5 does not pass HTTP."""
    text = (
        "internal: 127.0.0.1 port = 1080\nextension: httpconnect\n"
        "socksmethod: none\nclient pass { from: 0/0 to: 0/0 }\n"
        "socks pass { from: 0/0 to: 0/0 proxyprotocol: socks_v5 }\n"
    )
    m = memory_session(text)
    assert m.send(REQ).startswith(b"HTTP/1.1 403 ")


def test_extension_word_is_checked() -> None:
    """Unknown extension words are config errors pointing at the word."""
    with pytest.raises(ConfigErrors) as e:
        parse("internal: 127.0.0.1 port=1\nextension: httpconect\n", "x.conf")
    assert "x.conf:2:12" in e.value.render()
    assert (
        "httpconnect"
        in parse(
            "internal: 127.0.0.1 port=1\nextension: httpconnect\n", "x.conf"
        ).extensions
    )


def test_block_without_credentials_asks_for_them_when_username_is_offered(
    tmp_path: Path,
) -> None:
    """socksmethod: username none and a user: rule: no credentials -> 407,
    so the client can retry with them; with credentials the rule passes."""
    path = tmp_path / "passwd"
    path.write_text("alice:{PLAIN}alicepw:staff\n")
    text = (
        "internal: 127.0.0.1 port = 1080\nextension: httpconnect\n"
        f"socksmethod: username none\nusername.passwordfile: {path}\n"
        "client pass { from: 0/0 to: 0/0 }\n"
        "socks pass { from: 0/0 to: 0/0\n user: alice\n}\n"
    )
    out = memory_session(text).send(REQ)
    assert out.startswith(b"HTTP/1.1 407 ")
    assert b"Proxy-Authenticate: Basic" in out
    m = memory_session(text)
    m.send(ALICE)
    assert len(m.connector.calls) == 1


def test_block_with_only_none_offered_stays_403() -> None:
    """Without a password method a block is a plain 403."""
    m = memory_session(conf())
    out = m.send(b"CONNECT 10.9.9.9:80 HTTP/1.1\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 403 ")
