"""ldapauth against a real slapd (the session fixture: alice/bob, groups
proxyusers (groupOfNames), proxyposix (posixGroup), staff; TLS on): LDAPS and
StartTLS with certificate checks, group rules, ldap.group, a dead server."""

from __future__ import annotations

import time
from pathlib import Path

import bcrypt
import pytest

from tests.integration._auth_helpers import LOGGED_RULES, curl_user, python_socks_ok
from tests.integration.conftest import RunDantex
from tests.integration.peers import free_port
from tests.integration.peers.origins import INDEX_BODY, Origins
from tests.integration.peers.slapd import Slapd

pytestmark = pytest.mark.integration


def ldaps_settings(slapd: Slapd, *extra: str) -> str:
    assert slapd.ldaps_url is not None and slapd.ca_cert is not None
    lines = [
        "socksmethod: ldapauth",
        f"ldap.auth.url: {slapd.ldaps_url}{slapd.base_dn}",
        f"ldap.auth.certfile: {slapd.ca_cert}",
        *extra,
    ]
    return "\n".join(lines) + "\n"


def with_socks_line(line: str) -> str:
    return LOGGED_RULES.replace(
        "socks pass {\n  from: 0/0 to: 0/0\n",
        f"socks pass {{\n  from: 0/0 to: 0/0\n  {line}\n",
    )


def test_ldaps_right_and_wrong_password(
    dantex: RunDantex, origins: Origins, slapd: Slapd
) -> None:
    """Over LDAPS with the test CA: alice and bob get through with their
    passwords; a wrong password is RFC 1929 status 1; no password is logged."""
    server = dantex(LOGGED_RULES, settings=ldaps_settings(slapd))
    ok = curl_user(server, origins.http_url(), "alice", slapd.users["alice"])
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == INDEX_BODY
    host, port = origins.host, origins.echo_port
    assert python_socks_ok(server, host, port, "bob", slapd.users["bob"])
    bad = curl_user(server, origins.http_url(), "alice", "bobpw")
    assert bad.returncode == 97 and b"(1 1)" in bad.stderr
    server.wait_for_log(r'ldapauth authentication failed for user "alice"')
    server.wait_for_log(r"ldapauth%alice@127\.0\.0\.1")
    assert not any(pw in server.log_text() for pw in slapd.users.values())


def test_starttls_and_group_rules(
    dantex: RunDantex, origins: Origins, slapd: Slapd
) -> None:
    """StartTLS on the plain port; group: proxyposix (a posixGroup) admits
    alice and not bob."""
    assert slapd.ca_cert is not None
    settings = (
        "socksmethod: ldapauth\n"
        f"ldap.auth.url: {slapd.url}{slapd.base_dn}\n"
        "ldap.auth.starttls: yes\n"
        f"ldap.auth.certfile: {slapd.ca_cert}\n"
    )
    server = dantex(with_socks_line("group: proxyposix"), settings=settings)
    alice = curl_user(server, origins.http_url(), "alice", slapd.users["alice"])
    assert alice.returncode == 0, alice.stderr
    bob = curl_user(server, origins.http_url(), "bob", slapd.users["bob"])
    assert bob.returncode == 97 and b"(2)" in bob.stderr, bob.stderr


def test_ldap_group_keyword_uses_group_of_names(
    dantex: RunDantex, origins: Origins, slapd: Slapd
) -> None:
    """ldap.group: staff (a groupOfNames with bob) admits bob, not alice."""
    server = dantex(
        with_socks_line("ldap.group: staff"), settings=ldaps_settings(slapd)
    )
    assert curl_user(server, origins.http_url(), "bob", "bobpw").returncode == 0
    alice = curl_user(server, origins.http_url(), "alice", "alicepw")
    assert alice.returncode == 97 and b"(2)" in alice.stderr


def test_certificate_is_verified(
    dantex: RunDantex, origins: Origins, slapd: Slapd
) -> None:
    """Without the test CA the server certificate is not trusted: refused,
    and the log says why (TLS), not a hang."""
    assert slapd.ldaps_url is not None
    settings = (
        f"socksmethod: ldapauth\nldap.auth.url: {slapd.ldaps_url}{slapd.base_dn}\n"
    )
    server = dantex(LOGGED_RULES, settings=settings)
    bad = curl_user(server, origins.http_url(), "alice", "alicepw")
    assert bad.returncode == 97 and b"(1 1)" in bad.stderr
    server.wait_for_log(r"ldapauth authentication failed .*ldap: .*(?i:cert|ssl|tls)")


def test_dead_server_is_a_quick_clear_refusal(
    dantex: RunDantex, origins: Origins
) -> None:
    """A directory nobody listens on: refused within the timeout, logged."""
    settings = (
        "socksmethod: ldapauth\n"
        f"ldap.auth.url: ldap://127.0.0.1:{free_port()}/dc=example,dc=org\n"
        "ldap.auth.timeout: 2\n"
    )
    server = dantex(LOGGED_RULES, settings=settings)
    started = time.monotonic()
    bad = curl_user(server, origins.http_url(), "alice", "alicepw")
    assert bad.returncode == 97 and b"(1 1)" in bad.stderr
    assert time.monotonic() - started < 5
    server.wait_for_log(r"ldapauth authentication failed .*ldap: ldap://127\.0\.0\.1")


def test_ldap_group_for_password_file_users(
    dantex: RunDantex, origins: Origins, slapd: Slapd, tmp_path: Path
) -> None:
    """username from a password file, groups from the directory (ldap.url):
    ldap.group: proxyposix (a posixGroup with memberUid alice) admits alice,
    not bob -- the rule sees the groups the search found for this session."""
    users = tmp_path / "users.passwd"
    alice = bcrypt.hashpw(b"alice-pw", bcrypt.gensalt(5)).decode()
    bob = bcrypt.hashpw(b"bob-pw", bcrypt.gensalt(5)).decode()
    users.write_text(f"alice:{alice}\nbob:{bob}\n")
    settings = (
        f"socksmethod: username\nusername.passwordfile: {users}\n"
        f"ldap.url: {slapd.url}{slapd.base_dn}\n"
    )
    server = dantex(with_socks_line("ldap.group: proxyposix"), settings=settings)
    ok = curl_user(server, origins.http_url(), "alice", "alice-pw")
    assert ok.returncode == 0, ok.stderr
    refused = curl_user(server, origins.http_url(), "bob", "bob-pw")
    assert refused.returncode == 97 and b"(2)" in refused.stderr, refused.stderr
