"""``dantex probe`` arguments: where the server comes from, usage errors (exit 2)."""

from __future__ import annotations

import pytest

from dantex.__main__ import main as dantex_main
from dantex.probe.cli import UsageError, parse_args, run
from dantex.protocol.address import Address


def test_host_port_arguments() -> None:
    """HOST PORT give the server; the default is SOCKS 5, negotiation only."""
    spec, _ = parse_args(["127.0.0.1", "1080"], {})
    assert (spec.host, spec.port, spec.version, spec.target) == (
        "127.0.0.1",
        1080,
        5,
        None,
    )


def test_haproxy_external_check_arguments() -> None:
    """HAProxy's four arguments: the server is the last pair (proxy pair ignored)."""
    spec, _ = parse_args(["NOT_USED", "NOT_USED", "10.0.0.2", "1081"], {})
    assert (spec.host, spec.port) == ("10.0.0.2", 1081)


def test_haproxy_environment() -> None:
    """With no arguments, HAPROXY_SERVER_ADDR/PORT name the server."""
    env = {"HAPROXY_SERVER_ADDR": "::1", "HAPROXY_SERVER_PORT": "1082"}
    spec, _ = parse_args(["--target", "[::1]:80"], env)
    assert (spec.host, spec.port) == ("::1", 1082)
    assert spec.target == Address.from_host("::1", 80)


def test_credentials_from_file_and_environment(tmp_path: object) -> None:
    """The password comes from a file or DANTEX_PROBE_PASSWORD, never argv,
    and is not in the spec's repr."""
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    pw = tmp_path / "pw"
    pw.write_text("s3cret\nignored\n")
    spec, _ = parse_args(
        ["--user", "u", "--password-file", str(pw), "127.0.0.1", "1"], {}
    )
    assert spec.credentials is not None
    assert spec.credentials.encoded() == (b"u", b"s3cret")
    assert "s3cret" not in repr(spec)
    env = {"DANTEX_PROBE_USER": "v", "DANTEX_PROBE_PASSWORD": "pw2"}
    spec, _ = parse_args(["127.0.0.1", "1"], env)
    assert spec.credentials is not None
    assert spec.credentials.encoded() == (b"v", b"pw2")


def test_escapes_in_payloads() -> None:
    """--send/--expect take backslash escapes."""
    spec, _ = parse_args(
        ["--target", "h:1", "--send", "a\\r\\n\\x00", "--expect", "b", "h", "2"], {}
    )
    assert spec.send == b"a\r\n\x00"
    assert spec.expect == b"b"


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["127.0.0.1"],
        ["127.0.0.1", "port"],
        ["a", "b", "c"],
        ["--server", "nohost", "x"],
        ["--server", "h:1", "h", "1"],
        ["-4", "h", "1"],
        ["--target", "nocolon", "h", "1"],
        ["--send", "x", "h", "1"],
        ["--sessions", "0", "--target", "h:1", "h", "1"],
        ["--min", "3", "h", "1"],
        ["--timeout", "0", "h", "1"],
        ["--password-file", "/nonexistent/pw", "--user", "u", "h", "1"],
    ],
)
def test_usage_errors(argv: list[str]) -> None:
    """Bad arguments raise UsageError."""
    with pytest.raises(UsageError):
        parse_args(argv, {})


@pytest.mark.parametrize(
    "argv", [[], ["--nonsense", "h", "1"], ["--send-proxy", "v3", "h", "1"]]
)
def test_usage_exit_status_is_2(argv: list[str]) -> None:
    """A usage error exits 2 (argparse's own errors too), printing nothing to out."""
    lines: list[str] = []
    assert run(argv, {}, lines.append) == 2
    assert lines == []


def test_dantex_dispatcher() -> None:
    """``dantex`` without a known sub-command exits 2; --help exits 0."""
    assert dantex_main([]) == 2
    assert dantex_main(["frobnicate"]) == 2
    assert dantex_main(["--help"]) == 0
    assert dantex_main(["probe", "--help"]) == 0


def test_console_scripts_resolve() -> None:
    """pyproject's console scripts name functions that exist."""
    import importlib
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    scripts = tomllib.loads((root / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(scripts) >= {"dantex", "dantex-probe"}
    for target in scripts.values():
        module, _, name = target.partition(":")
        assert callable(getattr(importlib.import_module(module), name))
