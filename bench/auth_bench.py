"""Connection setups per second with username/password authentication.

    python3 bench/auth_bench.py --seconds 5 --concurrency 16

One setup = TCP connect to the proxy, RFC 1928 greeting offering X'02',
RFC 1929 user/password, CONNECT to a local echo server, one byte there and
back, close.  Targets, all on 127.0.0.1 in this run:

* ``dantex-passwd-cached``   -- password file (bcrypt cost 5, ``htpasswd -B``'s
  default), one user: after the first login every check is a cache hit;
* ``dantex-passwd-uncached`` -- the same file with one user per setup, so
  every check runs bcrypt in the thread pool;
* ``dantex-ldap``            -- ``ldapauth`` against a private slapd (LDAPS),
  one user: cache hits after the first bind (``--ldap-uncached`` sets
  ``ldap.auth.cache: 0``);
* ``danted-username``        -- danted 1.4 with ``socksmethod: username``
  (system account, crypt of /etc/shadow on every setup).

dantex runs with ``--workers 1`` unless ``--workers`` says otherwise.  The
machine is shared (2 cores, other engineers' jobs): numbers are noisy; the
load generator runs on the same cores.  Needs root (danted's shadow access),
bcrypt, the test extra's peers (danted, slapd).

Not a test: a tool.  Stops its processes by PID when done.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the peers' start functions live in tests/

from bench._pytargets import run_load  # noqa: E402

RULES = """\
client pass { from: 127.0.0.0/8 to: 0/0 }
socks pass { from: 0/0 to: 0/0 }
"""


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass  # danted resets connections it closes
    finally:
        writer.close()


def echo_server_main(port_file: str) -> None:
    """Child process: an asyncio echo server on 127.0.0.1, port written out."""

    async def main() -> None:
        server = await asyncio.start_server(_echo, "127.0.0.1", 0, backlog=1024)
        Path(port_file).write_text(str(server.sockets[0].getsockname()[1]))
        async with server:
            await server.serve_forever()

    asyncio.run(main())


@contextmanager
def echo_server() -> Iterator[int]:
    with tempfile.TemporaryDirectory() as d:
        port_file = Path(d) / "port"
        proc = subprocess.Popen(
            [sys.executable, __file__, "--echo-server", str(port_file)]
        )
        try:
            for _ in range(100):
                if port_file.exists() and port_file.read_text():
                    break
                time.sleep(0.05)
            yield int(port_file.read_text())
        finally:
            proc.terminate()
            proc.wait(5)


@contextmanager
def dantex(config: str, workers: int) -> Iterator[int]:
    """twistd dante with ``config`` (internal port 0); yields the port."""
    from tests.integration.dantex_server import start_dantex

    text = f"internal: 127.0.0.1 port = 0\n{config}\n{RULES}"
    with (
        tempfile.TemporaryDirectory() as d,
        start_dantex(text, Path(d), extra_args=["--workers", str(workers)]) as server,
    ):
        yield server.port


async def one_setup(proxy: int, echo: int, user: bytes, password: bytes) -> bool:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy)
    try:
        writer.write(b"\x05\x01\x02")
        if await reader.readexactly(2) != b"\x05\x02":
            return False
        writer.write(bytes((1, len(user))) + user + bytes((len(password),)) + password)
        if await reader.readexactly(2) != b"\x01\x00":
            return False
        writer.write(b"\x05\x01\x00\x01\x7f\x00\x00\x01" + echo.to_bytes(2, "big"))
        reply = await reader.readexactly(10)
        if reply[1] != 0:
            return False
        writer.write(b"x")
        return await reader.readexactly(1) == b"x"
    finally:
        writer.close()


async def load(
    proxy: int, echo: int, users: list[tuple[bytes, bytes]], seconds: float, conc: int
) -> tuple[int, int]:
    """:func:`bench._pytargets.run_load` logging in as ``users`` in turn."""
    turn = itertools.count()

    def setup() -> Awaitable[bool]:
        user, password = users[next(turn) % len(users)]
        return one_setup(proxy, echo, user, password)

    return await run_load(setup, seconds, conc)


def measure(
    name: str,
    proxy: int,
    echo: int,
    users: list[tuple[bytes, bytes]],
    a: argparse.Namespace,
) -> None:
    asyncio.run(load(proxy, echo, users[:1], 1.0, 2))  # warm-up (first login)
    done, failed = asyncio.run(load(proxy, echo, users, a.seconds, a.concurrency))
    print(f"{name:26s} {done / a.seconds:8.0f} setups/s  ({failed} failed)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--users", type=int, default=4000, help="uncached run")
    parser.add_argument("--ldap-uncached", action="store_true")
    parser.add_argument("--echo-server", help=argparse.SUPPRESS)
    a = parser.parse_args()
    if a.echo_server:
        echo_server_main(a.echo_server)
        return
    import bcrypt

    from tests.integration.peers import run_danted, run_slapd
    from tests.integration.peers.danted import SOCKS_PASSWORD, SOCKS_USER

    with ExitStack() as stack, tempfile.TemporaryDirectory() as d:
        echo = stack.enter_context(echo_server())
        salt = bcrypt.gensalt(5)
        one = Path(d) / "one.passwd"
        one.write_text(f"bench:{bcrypt.hashpw(b'bench-pw', salt).decode()}\n")
        print(f"hashing {a.users} bcrypt entries for the uncached run ...", flush=True)
        many = Path(d) / "many.passwd"
        users = [(f"u{i}".encode(), f"pw{i}".encode()) for i in range(a.users)]
        many.write_text(
            "".join(
                f"{u.decode()}:{bcrypt.hashpw(p, salt).decode()}\n" for u, p in users
            )
        )
        with dantex(
            f"socksmethod: username\nusername.passwordfile: {one}", a.workers
        ) as port:
            measure("dantex-passwd-cached", port, echo, [(b"bench", b"bench-pw")], a)
        with dantex(
            f"socksmethod: username\nusername.passwordfile: {many}", a.workers
        ) as port:
            measure("dantex-passwd-uncached", port, echo, users, a)
        slapd = stack.enter_context(run_slapd(tls=True))
        cache = "ldap.auth.cache: 0\n" if a.ldap_uncached else ""
        ldap_conf = (
            f"socksmethod: ldapauth\nldap.auth.url: {slapd.ldaps_url}{slapd.base_dn}\n"
            f"ldap.auth.certfile: {slapd.ca_cert}\n{cache}"
        )
        with dantex(ldap_conf, a.workers) as port:
            measure("dantex-ldap", port, echo, [(b"alice", b"alicepw")], a)
        if os.geteuid() == 0:
            danted = stack.enter_context(run_danted(auth="username"))
            measure(
                "danted-username",
                danted.port,
                echo,
                [(SOCKS_USER.encode(), SOCKS_PASSWORD.encode())],
                a,
            )
    socket.setdefaulttimeout(None)


if __name__ == "__main__":
    main()
