"""rfc931 (ident) with a real oidentd answering for a connection made as a
test user (runuser), at the socks level and at the client level."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.integration._auth_helpers import LOGGED_RULES
from tests.integration.conftest import RunDantex
from tests.integration.dantex_server import DantexServer
from tests.integration.peers.oidentd import Oidentd
from tests.integration.peers.origins import INDEX_BODY, Origins

pytestmark = pytest.mark.integration


def curl_as(
    user: str, server: DantexServer, url: str
) -> subprocess.CompletedProcess[bytes]:
    """curl --socks5 through ``server``, run as system user ``user``."""
    runuser = shutil.which("runuser") or "runuser"
    curl = shutil.which("curl") or "curl"
    return subprocess.run(
        [runuser, "-u", user, "--", curl, "-sS", "--max-time", "20",
         "--socks5", f"{server.host}:{server.port}", url],
        capture_output=True,
        timeout=30,
        check=False,
    )  # fmt: skip


def test_socks_level_rfc931_names_the_user(
    dantex: RunDantex, origins: Origins, oidentd: Oidentd, ident_user: str
) -> None:
    """socksmethod: rfc931: oidentd names the test user; user: admits it and
    the log shows rfc931%identuser@ as danted does."""
    rules = LOGGED_RULES.replace(
        "socks pass {\n  from: 0/0 to: 0/0\n",
        f"socks pass {{\n  from: 0/0 to: 0/0\n  user: {ident_user}\n",
    )
    server = dantex(
        rules, settings=f"socksmethod: rfc931\nrfc931.port: {oidentd.port}\n"
    )
    result = curl_as(ident_user, server, origins.http_url())
    assert result.returncode == 0, result.stderr
    assert result.stdout == INDEX_BODY
    server.wait_for_log(rf"rfc931%{ident_user}@127\.0\.0\.1\.\d+")


def test_root_is_not_the_allowed_user(
    dantex: RunDantex, origins: Origins, oidentd: Oidentd, ident_user: str
) -> None:
    """The same rule refuses a connection oidentd attributes to root (X'02')."""
    rules = LOGGED_RULES.replace(
        "socks pass {\n  from: 0/0 to: 0/0\n",
        f"socks pass {{\n  from: 0/0 to: 0/0\n  user: {ident_user}\n",
    )
    server = dantex(
        rules, settings=f"socksmethod: rfc931\nrfc931.port: {oidentd.port}\n"
    )
    result = curl_as("root", server, origins.http_url())
    assert result.returncode == 97 and b"(2)" in result.stderr, result.stderr


def test_client_level_rfc931_selects_the_client_rule(
    dantex: RunDantex, origins: Origins, oidentd: Oidentd, ident_user: str
) -> None:
    """clientmethod: rfc931 asks identd before the client-rules: the test
    user matches the user: client-rule; root's connection matches no rule
    and is closed before any SOCKS reply."""
    rules = (
        "client pass {\n  from: 127.0.0.0/8 to: 0/0\n  clientmethod: rfc931\n"
        f"  user: {ident_user}\n  log: error connect disconnect\n}}\n"
        "socks pass {\n  from: 0/0 to: 0/0\n  log: error connect disconnect\n}\n"
    )
    settings = f"clientmethod: rfc931\nrfc931.port: {oidentd.port}\n"
    server = dantex(rules, settings=settings)
    ok = curl_as(ident_user, server, origins.http_url())
    assert ok.returncode == 0, ok.stderr
    refused = curl_as("root", server, origins.http_url())
    assert refused.returncode != 0
