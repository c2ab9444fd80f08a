"""System accounts through PAM, with a real system user (useradd + chpasswd):
Dante's own ``socksmethod: username`` config served unchanged, and
``pam.username``."""

from __future__ import annotations

import re

import pytest

from tests.integration._auth_helpers import LOGGED_RULES, curl_user, python_socks_ok
from tests.integration.conftest import RunDantex, under_policy
from tests.integration.peers._users import ensure_system_user
from tests.integration.peers.danted import (
    DEFAULT_RULES,
    SOCKS_PASSWORD,
    SOCKS_USER,
    _config,
)
from tests.integration.peers.origins import INDEX_BODY, Origins

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def system_user() -> str:
    """The no-login account danted's username tests use, with its password."""
    return under_policy(lambda: ensure_system_user(SOCKS_USER, SOCKS_PASSWORD))


def test_dante_username_config_works_unchanged(
    dantex: RunDantex, origins: Origins, system_user: str
) -> None:
    """The file the danted fixture serves (socksmethod: username,
    user.privileged root, user.unprivileged nobody, its CONNECT/BIND/UDP
    rules) checks system accounts: the right password passes, a wrong one
    gets RFC 1929 status 1."""
    config = _config(0, "username", "127.0.0.1", DEFAULT_RULES, "")
    header, _, rest = config.partition("external:")
    internal = re.search(r"internal: .*", header)
    assert internal is not None
    server = dantex(
        "external:" + rest.replace("socksmethod: username\n", ""),
        internal=internal.group(0),
        settings="socksmethod: username\n",
    )
    ok = curl_user(server, origins.http_url(), system_user, SOCKS_PASSWORD)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == INDEX_BODY
    bad = curl_user(server, origins.http_url(), system_user, "not-the-password")
    assert bad.returncode == 97 and b"(1 1)" in bad.stderr, bad.stderr
    server.wait_for_log(rf"username%{system_user}@127\.0\.0\.1")
    assert "not-the-password" not in server.log_text()


def test_pam_username_with_servicename(
    dantex: RunDantex, origins: Origins, system_user: str
) -> None:
    """pam.username asks PAM service pam.servicename (here 'other', the
    fallback stack) and python-socks gets through only with the password."""
    server = dantex(
        LOGGED_RULES, settings="socksmethod: pam.username\npam.servicename: other\n"
    )
    host, port = origins.host, origins.echo_port
    assert python_socks_ok(server, host, port, system_user, SOCKS_PASSWORD)
    assert not python_socks_ok(server, host, port, system_user, "wrong")
    server.wait_for_log(r"pam\.username authentication failed .*pam_authenticate")
