"""Command line of ``dantex probe`` (also the ``dantex-probe`` script).

Exit status: 0 healthy, 1 not healthy, 2 usage error -- what relayd's
``check script`` and HAProxy's ``external-check`` expect.  HAProxy runs the
command as ``CMD <proxy_addr> <proxy_port> <server_addr> <server_port>``
with ``HAPROXY_SERVER_ADDR``/``HAPROXY_SERVER_PORT`` in the environment; the
probe takes the server from the last two arguments (or from the environment
when none are given).  Passwords come from ``--password-file`` or
``DANTEX_PROBE_PASSWORD``, never from the command line, and are never printed.
"""

from __future__ import annotations

import argparse
import codecs
import os
import resource
import sys
import time
from collections.abc import Callable, Mapping, Sequence

from dantex.client._handshake import UserPass
from dantex.probe._check import (
    PROXY_HEADERS,
    ProbeFailed,
    ProbeSpec,
    open_session,
    run_check,
)
from dantex.protocol.address import Address

__all__ = ["main", "parse_args"]

OK, FAIL, USAGE = 0, 1, 2
_ENV_USER = "DANTEX_PROBE_USER"
_ENV_PASSWORD = "DANTEX_PROBE_PASSWORD"


class UsageError(Exception):
    """Bad arguments: exit status 2."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dantex probe",
        description="Check a SOCKS server: negotiate, CONNECT or BIND, optionally "
        "exchange data. Exit 0 healthy, 1 not, 2 usage error.",
        epilog="Server: HOST PORT, or HAProxy's four external-check arguments "
        "(proxy_addr proxy_port server_addr server_port), or --server, or "
        "HAPROXY_SERVER_ADDR/HAPROXY_SERVER_PORT. Password: --password-file "
        f"or {_ENV_PASSWORD}; user: --user or {_ENV_USER}.",
    )
    p.add_argument("address", nargs="*", help="HOST PORT, or HAProxy's 4 arguments")
    p.add_argument("--server", metavar="HOST:PORT", help="the SOCKS server")
    version = p.add_mutually_exclusive_group()
    version.add_argument("-4", "--socks4", action="store_true", help="SOCKS 4")
    version.add_argument(
        "-5", "--socks5", action="store_true", help="SOCKS 5 (default)"
    )
    p.add_argument(
        "--target",
        metavar="HOST:PORT",
        help="CONNECT to this (BIND: the expected peer); none: only negotiate",
    )
    p.add_argument("--bind", action="store_true", help="BIND instead of CONNECT")
    p.add_argument(
        "--user", help=f"RFC 1929 user name (SOCKS 4: USERID); env {_ENV_USER}"
    )
    p.add_argument("--password-file", metavar="FILE", help="first line: the password")
    p.add_argument("--send", metavar="TEXT", help="send TEXT (\\r \\n \\xNN escapes)")
    p.add_argument("--expect", metavar="TEXT", help="TEXT must come back (escapes too)")
    p.add_argument(
        "--send-proxy",
        choices=sorted(PROXY_HEADERS),
        help="send a PROXY protocol LOCAL/UNKNOWN header first (nodes behind a "
        "balancer with internal.proxyprotocol)",
    )
    p.add_argument("--timeout", type=float, default=5.0, help="seconds (default 5)")
    p.add_argument("--sessions", type=int, metavar="N", help="hold N sessions at once")
    p.add_argument(
        "--min", type=int, metavar="M", help="with --sessions: needed (default N)"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing")
    return p


def _hostport(text: str, what: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 0xFFFF:
        raise UsageError(f"{what} must be HOST:PORT, not {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def _port(text: str, what: str) -> int:
    if not text.isdigit() or not 0 < int(text) <= 0xFFFF:
        raise UsageError(f"bad {what} {text!r}")
    return int(text)


def _escaped(text: str | None) -> bytes | None:
    if text is None:
        return None
    try:
        return codecs.escape_decode(text.encode("utf-8"))[0]
    except ValueError as e:
        raise UsageError(f"bad escape in {text!r}: {e}") from None


def _server(ns: argparse.Namespace, env: Mapping[str, str]) -> tuple[str, int]:
    args: list[str] = ns.address
    if ns.server is not None:
        if args:
            raise UsageError("give the server either as --server or as arguments")
        return _hostport(ns.server, "--server")
    if len(args) == 2:
        return args[0], _port(args[1], "server port")
    if len(args) == 4:  # HAProxy external-check: the server is the last pair
        return args[2], _port(args[3], "server port")
    if not args and "HAPROXY_SERVER_ADDR" in env:
        return env["HAPROXY_SERVER_ADDR"], _port(
            env.get("HAPROXY_SERVER_PORT", ""), "HAPROXY_SERVER_PORT"
        )
    raise UsageError("which server? give HOST PORT (or --server HOST:PORT)")


def _credentials(ns: argparse.Namespace, env: Mapping[str, str]) -> UserPass | None:
    user = ns.user if ns.user is not None else env.get(_ENV_USER)
    password: str | None = env.get(_ENV_PASSWORD)
    if ns.password_file is not None:
        try:
            with open(
                ns.password_file, encoding="utf-8", errors="surrogateescape"
            ) as f:
                password = f.readline().rstrip("\r\n")
        except OSError as e:
            raise UsageError(f"cannot read {ns.password_file}: {e.strerror}") from None
    if user is None:
        if password is not None and ns.password_file is not None:
            raise UsageError("--password-file needs a user (--user)")
        return None
    return UserPass(user, password or "")


def parse_args(
    argv: Sequence[str], env: Mapping[str, str]
) -> tuple[ProbeSpec, argparse.Namespace]:
    """The probe to run for ``argv``.

    :raises UsageError: bad arguments.
    :raises SystemExit: ``--help``, or an argparse error (status 2).
    """
    ns = _parser().parse_args(list(argv))
    host, port = _server(ns, env)
    version = 4 if ns.socks4 else 5
    target: Address | None = None
    if ns.target is not None:
        t_host, t_port = _hostport(ns.target, "--target")
        try:
            target = Address.from_host(t_host, t_port)
        except ValueError as e:
            raise UsageError(f"bad --target: {e}") from None
    elif ns.bind:
        target = Address.from_host("0.0.0.0", 0)
    if target is None and version == 4:
        raise UsageError("SOCKS 4 has no negotiation of its own: give --target")
    if ns.timeout <= 0:
        raise UsageError("--timeout must be positive")
    send, expect = _escaped(ns.send), _escaped(ns.expect)
    if (send or expect is not None) and target is None:
        raise UsageError("--send/--expect need a --target")
    if ns.sessions is not None and ns.sessions < 1:
        raise UsageError("--sessions must be at least 1")
    if ns.min is not None and ns.sessions is None:
        raise UsageError("--min goes with --sessions")
    spec = ProbeSpec(
        host,
        port,
        version=version,
        target=target,
        bind=ns.bind,
        credentials=_credentials(ns, env),
        send=send or b"",
        expect=expect,
        send_proxy=ns.send_proxy,
        timeout=ns.timeout,
    )
    return spec, ns


def _capacity(
    spec: ProbeSpec, count: int, now: Callable[[], float]
) -> tuple[int, str | None]:
    """Open ``count`` sessions and hold them; how many succeeded, first error."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = count * 2 + 32
    if soft != resource.RLIM_INFINITY and soft < want:
        limit = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    end = now() + spec.timeout
    held = []
    first_error: str | None = None
    try:
        for _ in range(count):
            left = end - now()
            if left <= 0:
                first_error = first_error or f"out of time after {spec.timeout:g}s"
                break
            try:
                held.append(open_session(_with_timeout(spec, left), now))
            except ProbeFailed as e:
                first_error = first_error or str(e)
        return len(held), first_error
    finally:
        for session in held:
            session.close()


def _with_timeout(spec: ProbeSpec, seconds: float) -> ProbeSpec:
    from dataclasses import replace

    return replace(spec, timeout=min(spec.timeout, seconds))


def run(
    argv: Sequence[str],
    env: Mapping[str, str],
    out: Callable[[str], None],
    now: Callable[[], float] = time.monotonic,
) -> int:
    """Run the probe; returns the exit status."""
    try:
        spec, ns = parse_args(argv, env)
    except UsageError as e:
        print(f"dantex probe: error: {e}", file=sys.stderr)
        return USAGE
    except SystemExit as e:  # argparse: --help (0) or a usage error (2)
        return e.code if isinstance(e.code, int) else USAGE
    say = (lambda _: None) if ns.quiet else out
    what = spec.name
    if spec.target is not None:
        what += f" {'bind' if spec.bind else 'connect'} {spec.target}"
    if ns.sessions is not None:
        need = ns.min if ns.min is not None else ns.sessions
        served, error = _capacity(spec, ns.sessions, now)
        verdict = "OK" if served >= need else "FAIL"
        tail = f"; first failure: {error}" if error and served < ns.sessions else ""
        say(f"{verdict} {what}: {served}/{ns.sessions} sessions (need {need}){tail}")
        return OK if served >= need else FAIL
    try:
        done = run_check(spec, now)
    except ProbeFailed as e:
        say(f"FAIL {what}: {e}")
        return FAIL
    say(f"OK {what}: {done}")
    return OK


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point (``dantex-probe``)."""
    args = sys.argv[1:] if argv is None else list(argv)
    return run(args, os.environ, print)


if __name__ == "__main__":
    sys.exit(main())
