"""``dantex probe`` as a process, against dantex and danted (exit 0/1/2)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import RunDantex
from tests.integration.dantex_server import REPO
from tests.integration.peers import Danted, Origins, free_port

pytestmark = pytest.mark.integration


def probe(
    *args: str, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m dantex probe ARGS`` from the checkout (bounded)."""
    full = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    for key in ("DANTEX_PROBE_USER", "DANTEX_PROBE_PASSWORD"):
        if env is None or key not in env:
            full.pop(key, None)
    return subprocess.run(
        [sys.executable, "-m", "dantex", "probe", "--timeout", "5", *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_dantex_healthy_checks(dantex: RunDantex, origins: Origins) -> None:
    """Negotiation, CONNECT with a payload echoed, SOCKS 4 and BIND: all exit 0."""
    s = dantex()
    echo = f"127.0.0.1:{origins.echo_port}"
    for args in (
        [],
        ["--target", echo, "--send", "ping\\n", "--expect", "ping"],
        ["-4", "--target", echo],
        ["--bind"],
    ):
        r = probe(*args, s.host, str(s.port))
        assert r.returncode == 0, (args, r.stdout, r.stderr)
        assert r.stdout.startswith("OK socks"), r.stdout


def test_dantex_failures_exit_1(dantex: RunDantex, origins: Origins) -> None:
    """A refused target, a blocked request, a wrong echo, a dead server: exit 1."""
    s = dantex(
        "client pass { from: 127.0.0.0/8 to: 0/0 }\n"
        f"socks block {{ from: 0/0 to: 0/0 port = {origins.sink_port} }}\n"
        "socks pass { from: 0/0 to: 0/0 }\n"
    )
    cases = [
        (["--target", f"127.0.0.1:{free_port()}"], "connection refused"),
        (["--target", f"127.0.0.1:{origins.sink_port}"], "not allowed by ruleset"),
        (
            [
                "--target",
                f"127.0.0.1:{origins.echo_port}",
                "--send",
                "a",
                "--expect",
                "b",
            ],
            "expected response",
        ),
    ]
    for args, why in cases:
        r = probe(*args, "--timeout", "2", s.host, str(s.port))
        assert r.returncode == 1, (args, r.stdout)
        assert r.stdout.startswith("FAIL") and why in r.stdout, r.stdout
    r = probe("127.0.0.1", str(free_port()))
    assert r.returncode == 1 and "cannot connect" in r.stdout


def test_capacity_mode(dantex: RunDantex, origins: Origins) -> None:
    """--sessions N holds N sessions; fewer than --min served exits 1."""
    s = dantex()
    echo = f"127.0.0.1:{origins.echo_port}"
    r = probe("--sessions", "40", "--target", echo, s.host, str(s.port))
    assert r.returncode == 0, r.stdout
    assert "40/40 sessions" in r.stdout
    blocked = dantex("client pass { from: 127.0.0.0/8 to: 0/0 }\n")  # no socks-rule
    r = probe(
        "--sessions",
        "5",
        "--min",
        "1",
        "--target",
        echo,
        blocked.host,
        str(blocked.port),
    )
    assert r.returncode == 1, r.stdout
    assert "0/5 sessions" in r.stdout and "not allowed by ruleset" in r.stdout


def test_haproxy_calling_convention(dantex: RunDantex) -> None:
    """HAProxy's four arguments, or its environment alone, name the server."""
    s = dantex()
    r = probe("NOT_USED", "NOT_USED", s.host, str(s.port))
    assert r.returncode == 0, r.stdout
    env = {"HAPROXY_SERVER_ADDR": s.host, "HAPROXY_SERVER_PORT": str(s.port)}
    assert probe(env=env).returncode == 0
    assert probe().returncode == 2  # no server at all: usage


def test_danted(danted: Danted, origins: Origins) -> None:
    """The same checks pass against danted."""
    echo = f"127.0.0.1:{origins.echo_port}"
    for args in ([], ["--target", echo, "--send", "x\\n", "--expect", "x"], ["--bind"]):
        r = probe(*args, danted.host, str(danted.port))
        assert r.returncode == 0, (args, r.stdout, danted.log_text()[-2000:])


def test_danted_username(
    danted_userpass: Danted, origins: Origins, tmp_path: Path
) -> None:
    """RFC 1929 against danted: right password (file) 0, wrong (env) 1; the
    password is never printed."""
    d = danted_userpass
    assert d.username is not None and d.password is not None
    pw = tmp_path / "pw"
    pw.write_text(d.password + "\n")
    echo = f"127.0.0.1:{origins.echo_port}"
    ok = probe(
        "--user",
        d.username,
        "--password-file",
        str(pw),
        "--target",
        echo,
        d.host,
        str(d.port),
    )
    assert ok.returncode == 0, ok.stdout
    wrong = "not-the-password-42"
    bad = probe(
        "--target",
        echo,
        d.host,
        str(d.port),
        env={"DANTEX_PROBE_USER": d.username, "DANTEX_PROBE_PASSWORD": wrong},
    )
    assert bad.returncode == 1
    assert "rejected" in bad.stdout
    for r in (ok, bad):
        assert d.password not in r.stdout + r.stderr
        assert wrong not in r.stdout + r.stderr
    none = probe("--target", echo, d.host, str(d.port))
    assert none.returncode == 1 and "no acceptable" in none.stdout
