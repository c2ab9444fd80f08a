"""Origin servers for integration tests, run as a child process.

Started by :mod:`tests.integration.peers.origins` as
``python -u _origins_main.py --dir DIR [--large-size N] [--ftp]``; stdlib only
(plus pyftpdlib with ``--ftp``), so it never touches the test's reactor. Every
server binds port 0 on 127.0.0.1 (echo servers also on ::1 when available);
once all listen, the ports are written as JSON to ``DIR/ports.json``
(atomically). SIGTERM ends the process.

Protocols (each connection is served in its own thread):

- ``http``: HTTP/1.0 file server on ``DIR/www``: ``index.html`` and
  ``large.bin`` (``--large-size`` bytes of :func:`pattern`).
- ``echo`` / ``echo6``: TCP echo; closes after the client's EOF.
- ``sink``: reads to EOF, then writes ``b"<count> <sha256 hex>\\n"`` and closes.
- ``source``: reads one line ``b"<N>\\n"``, sends N bytes of :func:`pattern`,
  closes. Send nothing after the line (unread data would turn the close into
  an RST).
- ``halfclose``: echo; after the client's EOF it still sends
  :data:`TRAILER`, then closes.
- ``udp_echo`` / ``udp_echo6``: UDP echo.
- ``ftp`` (with ``--ftp``): pyftpdlib, anonymous read-only on ``DIR/ftp``
  (``hello.txt``); active mode allowed to any address.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import http.server
import json
import os
import socket
import socketserver
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: Sent by the half-close server after the client's EOF.
TRAILER = b"TRAILER-AFTER-EOF\n"
#: Content of ``index.html`` on the HTTP server.
INDEX_BODY = b"hello-from-origin\n"
#: Content of ``hello.txt`` on the FTP server.
FTP_BODY = b"ftp-file-content\n"

# Period 251 (prime): misordered or duplicated chunks of any power-of-two
# size change the digest. A block is a whole number of periods.
_PERIOD = bytes(range(251))
_BLOCK = _PERIOD * 261  # 65511 bytes


def pattern(n: int) -> bytes:
    """The first *n* bytes of the deterministic test pattern (0..250 repeated)."""
    reps = n // len(_PERIOD) + 1
    return (_PERIOD * reps)[:n]


def _blocks(n: int) -> Iterator[bytes]:
    """Yield *n* pattern bytes in blocks, without building them all at once."""
    while n > 0:
        chunk = _BLOCK[:n]
        n -= len(chunk)
        yield chunk


class _Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(socketserver.BaseRequestHandler):
    request: socket.socket

    def handle(self) -> None:
        try:
            self.serve()
        except OSError as e:  # resets are the client's business
            print(f"{type(self).__name__}: {e}", file=sys.stderr)

    def serve(self) -> None:
        raise NotImplementedError

    def read_all(self) -> Iterator[bytes]:
        while data := self.request.recv(65536):
            yield data


class _Echo(_Handler):
    def serve(self) -> None:
        for data in self.read_all():
            self.request.sendall(data)


class _HalfClose(_Handler):
    def serve(self) -> None:
        for data in self.read_all():
            self.request.sendall(data)
        self.request.sendall(TRAILER)


class _Sink(_Handler):
    def serve(self) -> None:
        count = 0
        digest = hashlib.sha256()
        for data in self.read_all():
            count += len(data)
            digest.update(data)
        self.request.sendall(f"{count} {digest.hexdigest()}\n".encode())


class _Source(_Handler):
    def serve(self) -> None:
        line = b""
        while not line.endswith(b"\n") and len(line) < 32:
            data = self.request.recv(1)
            if not data:
                return
            line += data
        for chunk in _blocks(int(line)):
            self.request.sendall(chunk)


def _udp_echo(family: int, host: str) -> socket.socket | None:
    try:
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.bind((host, 0))
    except OSError:
        return None

    def loop() -> None:
        while True:
            try:
                data, peer = sock.recvfrom(65535)
                sock.sendto(data, peer)
            except OSError as e:
                print(f"udp echo: {e}", file=sys.stderr)

    threading.Thread(target=loop, daemon=True).start()
    return sock


def _serve(server: socketserver.TCPServer) -> int:
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port: int = server.socket.getsockname()[1]
    return port


def _tcp(handler: type[_Handler], v6: bool = False) -> int | None:
    try:
        if v6:
            server: _Server = _Server6(("::1", 0), handler)
        else:
            server = _Server(("127.0.0.1", 0), handler)
    except OSError:
        return None
    return _serve(server)


def _ftp(root: Path) -> Any:
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import FTPHandler
    from pyftpdlib.servers import FTPServer

    authorizer = DummyAuthorizer()
    authorizer.add_anonymous(str(root))
    FTPHandler.authorizer = authorizer
    # The PORT address is the SOCKS server's BIND address, not the client's.
    FTPHandler.permit_foreign_addresses = True
    return FTPServer(("127.0.0.1", 0), FTPHandler)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--large-size", type=int, default=4 << 20)
    parser.add_argument("--ftp", action="store_true")
    args = parser.parse_args()
    directory: Path = args.dir

    www = directory / "www"
    www.mkdir()
    (www / "index.html").write_bytes(INDEX_BODY)
    large = pattern(args.large_size)
    (www / "large.bin").write_bytes(large)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=www)
    http_server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    http_server.daemon_threads = True

    udp4 = _udp_echo(socket.AF_INET, "127.0.0.1")
    udp6 = _udp_echo(socket.AF_INET6, "::1")
    ports: dict[str, object] = {
        "http": _serve(http_server),
        "echo": _tcp(_Echo),
        "echo6": _tcp(_Echo, v6=True),
        "sink": _tcp(_Sink),
        "source": _tcp(_Source),
        "halfclose": _tcp(_HalfClose),
        "udp_echo": None if udp4 is None else udp4.getsockname()[1],
        "udp_echo6": None if udp6 is None else udp6.getsockname()[1],
        "ftp": None,
        "large_sha256": hashlib.sha256(large).hexdigest(),
    }
    ftp_server = None
    if args.ftp:
        (directory / "ftp").mkdir()
        (directory / "ftp" / "hello.txt").write_bytes(FTP_BODY)
        ftp_server = _ftp(directory / "ftp")
        ports["ftp"] = ftp_server.address[1]

    tmp = directory / "ports.json.tmp"
    tmp.write_text(json.dumps(ports))
    os.replace(tmp, directory / "ports.json")
    if ftp_server is not None:
        ftp_server.serve_forever()
    else:
        threading.Event().wait()


if __name__ == "__main__":
    main()
