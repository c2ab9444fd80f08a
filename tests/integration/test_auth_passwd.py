"""username with a password file (bcrypt, SHA-512-crypt) through the real
server, driven by curl and python-socks; --auth from twistd; SOCKS v4."""

from __future__ import annotations

import time
from pathlib import Path

import bcrypt
import pytest
from passlib.hash import sha512_crypt

from tests.integration._auth_helpers import LOGGED_RULES, curl_user, python_socks_ok
from tests.integration.conftest import RunDantex
from tests.integration.peers.origins import INDEX_BODY, Origins

pytestmark = pytest.mark.integration

PASSWORDS = {"alice": "alice-pw", "bob": "bob-pw"}


@pytest.fixture
def passwd(tmp_path: Path) -> Path:
    """alice (bcrypt, group staff) and bob (SHA-512-crypt, group dev)."""
    path = tmp_path / "users.passwd"
    alice = bcrypt.hashpw(b"alice-pw", bcrypt.gensalt(5)).decode()
    bob = sha512_crypt.using(rounds=5000).hash("bob-pw")
    path.write_text(f"# dantex users\nalice:{alice}:staff\nbob:{bob}:dev\n")
    return path


def settings(path: Path) -> str:
    return f"socksmethod: username\nusername.passwordfile: {path}\n"


def test_curl_right_and_wrong_password_each_hash(
    dantex: RunDantex, origins: Origins, passwd: Path
) -> None:
    """Right passwords fetch the page (bcrypt and SHA-512-crypt users); a wrong
    one gets curl's 'User was rejected' (RFC 1929 status 1); the log names
    the user and never a password."""
    server = dantex(LOGGED_RULES, settings=settings(passwd))
    for user, password in PASSWORDS.items():
        ok = curl_user(server, origins.http_url(), user, password)
        assert ok.returncode == 0, ok.stderr
        assert ok.stdout == INDEX_BODY
    bad = curl_user(server, origins.http_url(), "alice", "wrong-guess")
    assert bad.returncode == 97, bad.stderr
    server.wait_for_log(r'authentication failed for user "alice"')
    server.wait_for_log(r"username%bob@127\.0\.0\.1\.\d+")
    log = server.log_text()
    assert all(p not in log for p in [*PASSWORDS.values(), "wrong-guess"])


def test_python_socks_right_and_wrong(
    dantex: RunDantex, origins: Origins, passwd: Path
) -> None:
    """python-socks tunnels with the right password and is refused otherwise."""
    server = dantex(LOGGED_RULES, settings=settings(passwd))
    assert python_socks_ok(server, origins.host, origins.echo_port, "bob", "bob-pw")
    assert not python_socks_ok(server, origins.host, origins.echo_port, "bob", "x")
    assert not python_socks_ok(server, origins.host, origins.echo_port, "eve", "x")


def test_group_rules_decide_and_socks4_is_refused(
    dantex: RunDantex, origins: Origins, passwd: Path
) -> None:
    """group: staff lets alice through and blocks bob (X'02'); a SOCKS v4
    client is refused (91) because the method list requires a password."""
    rules = LOGGED_RULES.replace(
        "socks pass {\n  from: 0/0 to: 0/0\n",
        "socks pass {\n  from: 0/0 to: 0/0\n  group: staff\n",
    )
    server = dantex(rules, settings=settings(passwd))
    assert curl_user(server, origins.http_url(), "alice", "alice-pw").returncode == 0
    bob = curl_user(server, origins.http_url(), "bob", "bob-pw")
    # RFC 1928 REP=2 (not allowed by ruleset): curl prints "(2)"
    assert bob.returncode == 97 and b"(2)" in bob.stderr, bob.stderr
    v4 = curl_user(server, origins.http_url(), "alice", "alice-pw", mode="socks4")
    assert v4.returncode == 97, v4.stderr
    server.wait_for_log("SOCKS v4 client refused: authentication required")


def test_bad_lines_are_reported_at_start_up(dantex: RunDantex, passwd: Path) -> None:
    """A weak or malformed line is logged with file and line when the server
    starts, without the hash."""
    with passwd.open("a") as f:
        f.write("carol:$apr1$salt$0123456789abcdefghijkl\n")
    server = dantex(LOGGED_RULES, settings=settings(passwd))
    server.wait_for_log(rf"{passwd}:4: user 'carol': MD5 \(apr1\) hashes are too weak")
    assert "0123456789abcdefghijkl" not in server.log_text()


def test_edited_file_applies_without_reload(
    dantex: RunDantex, origins: Origins, passwd: Path
) -> None:
    """A changed password works at once (the file is re-read on change)."""
    server = dantex(LOGGED_RULES, settings=settings(passwd))
    assert curl_user(server, origins.http_url(), "alice", "alice-pw").returncode == 0
    passwd.write_text("alice:{PLAIN}changed-pw:staff\n")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if curl_user(server, origins.http_url(), "alice", "changed-pw").returncode == 0:
            break
        time.sleep(0.3)
    else:
        pytest.fail("the edited password file was not picked up")
    assert curl_user(server, origins.http_url(), "alice", "alice-pw").returncode == 97


def test_twistd_auth_option_serves_username(
    dantex: RunDantex, origins: Origins, tmp_path: Path
) -> None:
    """twistd dante --auth memory:... (strcred) checks the username method,
    also in worker processes (they get the checker description from the
    supervisor)."""
    server = dantex(
        LOGGED_RULES,
        settings="socksmethod: username\n",
        extra_args=["--auth", "memory:carol:carol-pw"],
        workers=2,
    )
    for _ in range(4):  # the workers race for each connection
        assert (
            curl_user(server, origins.http_url(), "carol", "carol-pw").returncode == 0
        )
    assert curl_user(server, origins.http_url(), "carol", "nope").returncode == 97
