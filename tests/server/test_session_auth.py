"""Authentication in the session: RFC 1929 (RFC 1928 §3 + RFC 1929 §2 bytes
written by hand), rule semantics of Dante §2.2, SOCKS v4 refusal, pausing,
slowing down, and passwords kept out of logs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from dantex.auth import Authenticator
from dantex.testing import MemorySession, memory_session

# RFC 1928 §3: VER=5 NMETHODS=1 METHODS=[02]; NMETHODS=2 [00 02]
GREET_USERPASS = b"\x05\x01\x02"
GREET_BOTH = b"\x05\x02\x00\x02"
# RFC 1929 §2: VER=1 ULEN=5 "alice" PLEN=7 "alicepw"
ALICE_OK = b"\x01\x05alice\x07alicepw"
ALICE_BAD = b"\x01\x05alice\x07guessed"
BOB_OK = b"\x01\x03bob\x05bobpw"
# RFC 1928 §4: CONNECT 10.1.2.3:80
CONNECT = b"\x05\x01\x00\x01\x0a\x01\x02\x03\x00\x50"
# SOCKS 4: VN=4 CD=1 DSTPORT=80 DSTIP=10.1.2.3 USERID="" NUL
V4_CONNECT = b"\x04\x01\x00\x50\x0a\x01\x02\x03\x00"


def config(tmp_path: Path, methods: str = "username", rules: str = "") -> str:
    path = tmp_path / "passwd"
    path.write_text("alice:{PLAIN}alicepw:staff\nbob:{PLAIN}bobpw:dev\n")
    rules = rules or "socks pass { from: 0/0 to: 0/0\n log: connect error\n}\n"
    return (
        "internal: 127.0.0.1 port = 1080\n"
        f"username.passwordfile: {path}\n"
        f"socksmethod: {methods}\n"
        "client pass { from: 0/0 to: 0/0\n log: connect disconnect error\n}\n" + rules
    )


def test_right_password_answers_0100_and_the_request_goes_on(tmp_path: Path) -> None:
    """RFC 1929 success is X'01 00'; the CONNECT then proceeds as alice."""
    m = memory_session(config(tmp_path))
    assert m.send(GREET_USERPASS) == b"\x05\x02"
    assert m.send(ALICE_OK) == b"\x01\x00"
    m.send(CONNECT)
    assert m.connector.calls[0].sockaddr == ("10.1.2.3", 80)
    assert m.session.user == "alice"
    assert m.session.groups == frozenset({"staff"})


def test_request_sent_with_the_password_is_handled_after_the_check(
    tmp_path: Path,
) -> None:
    """A client pipelining its request after RFC 1929 is served once verified."""
    m = memory_session(config(tmp_path))
    m.send(GREET_USERPASS)
    assert m.send(ALICE_OK + CONNECT) == b"\x01\x00"
    assert len(m.connector.calls) == 1


def test_wrong_password_answers_0101_closes_and_logs_no_password(
    tmp_path: Path,
) -> None:
    """RFC 1929 failure is X'01 01' then close; the log names the user only."""
    m = memory_session(config(tmp_path))
    m.send(GREET_USERPASS)
    assert m.send(ALICE_BAD) == b"\x01\x01"
    assert not m.transport.connected
    text = "\n".join(m.log.messages())
    assert 'username authentication failed for user "alice"' in text
    assert "guessed" not in text and "alicepw" not in text
    assert m.connector.calls == []


def test_dante_picks_username_when_offered_both(tmp_path: Path) -> None:
    """socksmethod: username none, client offers 00 02: the server picks 02."""
    m = memory_session(config(tmp_path, "username none"))
    assert m.send(GREET_BOTH) == b"\x05\x02"


def test_no_acceptable_method_is_ff(tmp_path: Path) -> None:
    """username required, client offers only 00: X'FF' and close."""
    m = memory_session(config(tmp_path))
    assert m.send(b"\x05\x01\x00") == b"\x05\xff"
    assert not m.transport.connected


def test_socks4_is_refused_when_authentication_is_required(tmp_path: Path) -> None:
    """CVE-2024-54662: a v4 client gets 91 and a log line when the method
    list has no password-less method."""
    m = memory_session(config(tmp_path))
    reply = m.send(V4_CONNECT)
    assert reply[:2] == b"\x00\x5b"
    assert m.connector.calls == []
    assert any("SOCKS v4 client refused" in line for line in m.log.messages())


def test_socks4_allowed_when_none_is_also_listed(tmp_path: Path) -> None:
    """With 'username none' a v4 client is method none, like a v5 00 client."""
    m = memory_session(config(tmp_path, "username none"))
    m.send(V4_CONNECT)
    assert len(m.connector.calls) == 1


def test_socks4_refused_by_client_rule_socksmethod(tmp_path: Path) -> None:
    """A client-rule's socksmethod: username applies to v4 clients too."""
    text = config(tmp_path, "none username").replace(
        "client pass { from: 0/0 to: 0/0\n",
        "client pass { from: 0/0 to: 0/0\n socksmethod: username\n",
    )
    m = memory_session(text)
    assert m.send(V4_CONNECT)[:2] == b"\x00\x5b"


def test_user_rule_not_matching_is_skipped_not_blocked(tmp_path: Path) -> None:
    """Dante §2.2: a user: rule for someone else is skipped; the next decides."""
    rules = (
        "socks block { from: 0/0 to: 0/0\n user: bob\n log: connect error\n}\n"
        "socks pass { from: 0/0 to: 0/0\n user: alice\n log: connect error\n}\n"
    )
    m = memory_session(config(tmp_path, rules=rules))
    m.send(GREET_USERPASS)
    m.send(ALICE_OK + CONNECT)
    assert len(m.connector.calls) == 1
    assert m.session.socks_match is not None
    assert m.session.socks_match.number == 2


def test_group_rule_decides_by_group(tmp_path: Path) -> None:
    """group: staff passes alice (staff) and not bob (dev): default block."""
    rules = "socks pass { from: 0/0 to: 0/0\n group: staff\n log: connect error\n}\n"
    m = memory_session(config(tmp_path, rules=rules))
    m.send(GREET_USERPASS)
    m.send(BOB_OK)
    reply = m.send(CONNECT)
    assert reply[:2] == b"\x05\x02"
    assert m.connector.calls == []


def test_log_lines_carry_method_and_user(tmp_path: Path) -> None:
    """Session lines show the client as username%alice@ip.port (Dante §2.12)."""
    m = memory_session(config(tmp_path))
    m.send(GREET_USERPASS)
    m.send(ALICE_OK + CONNECT)
    assert m.session._client_text() == "username%alice@127.0.0.1.40000"


class HeldRunner:
    """A blocking runner whose jobs the test releases."""

    def __init__(self) -> None:
        self.jobs: list[tuple[Deferred[Any], Callable[..., Any], tuple[Any, ...]]] = []

    def __call__(self, fn: Callable[..., Any], /, *args: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.jobs.append((d, fn, args))
        return d

    def release(self) -> None:
        jobs, self.jobs = self.jobs, []
        for d, fn, args in jobs:
            d.callback(fn(*args))


def held_session(tmp_path: Path, **kw: Any) -> tuple[MemorySession, HeldRunner]:
    runner = HeldRunner()
    clock = Clock()
    text = config(tmp_path)
    path = str(tmp_path / "passwd")
    auth = Authenticator(clock, passwordfile=path, run=runner, **kw)
    m = memory_session(text, auth=auth)
    return m, runner


def test_reading_pauses_while_a_check_is_pending(tmp_path: Path) -> None:
    """Nothing is read from the client until the thread pool answers."""
    m, runner = held_session(tmp_path)
    m.send(GREET_USERPASS)
    runner.release()  # the password file is read in the pool too
    assert m.send(ALICE_OK) == b""
    assert m.transport.producerState == "paused"
    while runner.jobs:
        runner.release()
    assert m.transport.value() == b"\x01\x00"
    assert m.transport.producerState == "producing"


def test_close_while_pending_is_harmless(tmp_path: Path) -> None:
    """A client gone during the check: the late answer writes nothing."""
    m, runner = held_session(tmp_path)
    m.send(GREET_USERPASS)
    runner.release()
    m.send(ALICE_OK)
    m.session.connectionLost(None)  # type: ignore[arg-type]
    m.transport.clear()
    while runner.jobs:
        runner.release()
    assert m.transport.value() == b""


def test_repeated_failures_from_one_source_are_slowed_down(tmp_path: Path) -> None:
    """After auth.failures N/S from one address, the next check waits first."""
    text = config(tmp_path)
    auth = Authenticator(
        Clock(), passwordfile=str(tmp_path / "passwd"), failures=(2, 60.0)
    )
    for _ in range(2):
        m = memory_session(text, auth=auth)
        m.send(GREET_USERPASS)
        assert m.send(ALICE_BAD) == b"\x01\x01"
    m = memory_session(text, auth=auth)
    m.send(GREET_USERPASS)
    assert m.send(ALICE_OK) == b""
    assert m.transport.producerState == "paused"
    m.clock.advance(1)
    assert m.transport.value() == b"\x01\x00"
    other = memory_session(text, auth=auth, client=("127.0.0.2", 40001))
    other.send(GREET_USERPASS)
    assert other.send(ALICE_OK) == b"\x01\x00"


def test_auth_failures_keyword_reaches_the_limiter(tmp_path: Path) -> None:
    """auth.failures: N/S configures the limiter; 0 turns it off."""
    text = config(tmp_path).replace(
        "socksmethod: username\n", "socksmethod: username\nauth.failures: 7/30\n"
    )
    limiter = memory_session(text).session.policy.auth.limiter
    assert (limiter.max_failures, limiter.window) == (7, 30.0)


IDENT_CONFIG = """\
internal: 127.0.0.1 port = 1080
socksmethod: rfc931
rfc931.port: 1113
client pass { from: 0/0 to: 0/0
 log: connect disconnect error
}
socks pass { from: 0/0 to: 0/0
 log: connect disconnect error
}
"""


def answer_ident(m: MemorySession, line: bytes) -> bytes:
    """Play identd for the session's query; return the query it sent."""
    from twisted.internet.address import IPv4Address
    from twisted.internet.testing import StringTransport

    host, port, factory, _t, bind = m.clock.tcpClients[-1]
    assert (host, port) == ("127.0.0.1", 1113)
    assert bind == ("127.0.0.1", 0)  # type: ignore[comparison-overlap]
    proto: Any = factory.buildProtocol(IPv4Address("TCP", host, port))
    transport = StringTransport()
    proto.makeConnection(transport)
    proto.dataReceived(line)
    return bytes(transport.value())


def test_rfc931_user_from_identd_names_the_session() -> None:
    """socksmethod: rfc931 selects X'00', asks identd, logs rfc931%user@."""
    m = memory_session(IDENT_CONFIG)
    assert m.send(b"\x05\x01\x00") == b"\x05\x00"
    query = answer_ident(m, b"40000,1080:USERID:UNIX:identuser\r\n")
    assert query == b"40000, 1080\r\n"
    m.send(CONNECT)
    assert len(m.connector.calls) == 1
    assert m.session._client_text() == "rfc931%identuser@127.0.0.1.40000"


def test_rfc931_failure_blocks_at_the_matching_rule() -> None:
    """Dante §2.2: the rule matched but its check failed: X'02', reason logged."""
    m = memory_session(IDENT_CONFIG)
    m.send(b"\x05\x01\x00")
    answer_ident(m, b"40000,1080:ERROR:NO-USER\r\n")
    assert m.send(CONNECT)[:2] == b"\x05\x02"
    assert m.connector.calls == []
    assert any("NO-USER" in line for line in m.log.messages())


def test_client_level_rfc931_selects_the_ident_rule() -> None:
    """clientmethod: rfc931 asks identd before the client-rules; a rule for
    that user wins over a later catch-all."""
    text = (
        "internal: 127.0.0.1 port = 1080\nsocksmethod: none\n"
        "clientmethod: rfc931 none\nrfc931.port: 1113\n"
        "client block { from: 0/0 to: 0/0\n clientmethod: rfc931\n user: mallory\n}\n"
        "client pass { from: 0/0 to: 0/0\n clientmethod: rfc931\n user: identuser\n}\n"
        "client block { from: 0/0 to: 0/0\n}\n"
        "socks pass { from: 0/0 to: 0/0\n}\n"
    )
    m = memory_session(text)
    answer_ident(m, b"40000,1080:USERID:UNIX:identuser\r\n")
    assert m.session.client_match is not None
    assert m.session.client_match.number == 2
    assert m.send(b"\x05\x01\x00") == b"\x05\x00"
