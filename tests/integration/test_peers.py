"""The peer fixtures work: each real daemon serves a real client on loopback."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import socks
from ldap3 import Connection, Server, Tls

from tests.integration.conftest import PROXY_PASSWORD, PROXY_USER, StartPeer
from tests.integration.peers import (
    Danted,
    Microsocks,
    Oidentd,
    Origins,
    Slapd,
    Squid,
    Tinyproxy,
    free_port,
    run_haproxy,
)
from tests.integration.peers.origins import (
    FTP_BODY,
    INDEX_BODY,
    TRAILER,
    pattern,
    sink_reply,
)

pytestmark = pytest.mark.integration

Program = Callable[[str, str], str]
TIMEOUT = 20.0


def run(
    argv: list[str], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run a client program, bounded in time, capturing its output."""
    return subprocess.run(
        argv, env=env, capture_output=True, timeout=TIMEOUT, check=False
    )


def curl(program: Program, *args: str) -> subprocess.CompletedProcess[bytes]:
    """curl, silent, with bounded timeouts."""
    return run([program("curl", "curl"), "-sS", "--max-time", "10", *args])


def recv_all(sock: socket.socket, limit: int = 64 << 20) -> bytes:
    """Read until EOF (bounded by *limit* bytes and the socket timeout)."""
    chunks = []
    total = 0
    while total <= limit and (chunk := sock.recv(65536)):
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def connect(host: str, port: int) -> socket.socket:
    """A TCP connection with a timeout on every operation."""
    return socket.create_connection((host, port), timeout=TIMEOUT)


# --- SOCKS servers ----------------------------------------------------------


def test_danted_relays_curl_socks5(
    danted: Danted, origins: Origins, program: Program
) -> None:
    """danted without auth relays curl --socks5 to the HTTP origin and logs it."""
    result = curl(
        program, "--socks5", f"{danted.host}:{danted.port}", origins.http_url()
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == INDEX_BODY
    assert f"127.0.0.1.{origins.http_port}" in danted.log_text()


def test_danted_username_accepts_right_password_only(
    danted_userpass: Danted, origins: Origins, program: Program
) -> None:
    """danted's username method accepts the system user's password, rejects others."""
    proxy = f"{danted_userpass.host}:{danted_userpass.port}"
    good = f"{danted_userpass.username}:{danted_userpass.password}"
    ok = curl(program, "--socks5", proxy, "--proxy-user", good, origins.http_url())
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == INDEX_BODY
    bad = f"{danted_userpass.username}:wrong"
    refused = curl(program, "--socks5", proxy, "--proxy-user", bad, origins.http_url())
    assert refused.returncode == 97, refused.stderr  # CURLE_PROXY


def test_danted_udp_associate_with_pysocks(danted: Danted, origins: Origins) -> None:
    """danted's default rules let PySocks' UDP ASSOCIATE reach the UDP echo."""
    with socks.socksocket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.set_proxy(socks.SOCKS5, danted.host, danted.port)
        s.settimeout(TIMEOUT)
        s.sendto(b"udp-through-danted", (origins.host, origins.udp_echo_port))
        data, peer = s.recvfrom(2048)
    assert data == b"udp-through-danted"
    assert peer == (origins.host, origins.udp_echo_port)


def test_danted_bind_serves_active_ftp_through_socksify(
    danted: Danted, origins: Origins, program: Program, tmp_path: Path
) -> None:
    """socksify ftp -A through danted gets the file, its data via SOCKS BIND."""
    conf = tmp_path / "socks.conf"
    conf.write_text(
        f"logoutput: {tmp_path}/socksify.log\n"
        "route {\n"
        f"  from: 0.0.0.0/0 to: 0.0.0.0/0 via: {danted.host} port = {danted.port}\n"
        "  proxyprotocol: socks_v5\n"
        "  command: connect bind\n"
        "  method: none\n"
        "}\n"
    )
    out = tmp_path / "hello.txt"
    # Without SOCKS_AUTOADD_LANROUTES=no loopback targets bypass the proxy.
    env = {**os.environ, "SOCKS_CONF": str(conf), "SOCKS_AUTOADD_LANROUTES": "no"}
    result = run(
        [program("socksify", "dante-client"), program("ftp", "tnftp"), "-A", "-o",
         str(out), origins.ftp_url()],
        env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == FTP_BODY
    log = danted.log_text()
    assert "tcp/bind [" in log, log
    assert "tcp/bindreply [" in log, log


def test_microsocks_relays_curl_socks5(
    microsocks: Microsocks, origins: Origins, program: Program
) -> None:
    """microsocks without auth relays curl --socks5 to the HTTP origin."""
    proxy = f"{microsocks.host}:{microsocks.port}"
    result = curl(program, "--socks5", proxy, origins.http_url())
    assert result.returncode == 0, result.stderr
    assert result.stdout == INDEX_BODY


def test_microsocks_userpass_requires_credentials(
    microsocks_userpass: Microsocks, origins: Origins, program: Program
) -> None:
    """microsocks with a user relays for the right credentials, refuses without."""
    proxy = f"{microsocks_userpass.host}:{microsocks_userpass.port}"
    creds = f"{PROXY_USER}:{PROXY_PASSWORD}"
    ok = curl(program, "--socks5", proxy, "-U", creds, origins.http_url())
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == INDEX_BODY
    refused = curl(program, "--socks5", proxy, origins.http_url())
    assert refused.returncode == 97, refused.stderr


# --- HTTP CONNECT proxies ---------------------------------------------------


def connect_via(
    program: Program, proxy_url: str, target: str, *creds: str
) -> tuple[subprocess.CompletedProcess[bytes], str]:
    """curl -p (CONNECT) through *proxy_url*; returns the result and CONNECT status."""
    result = curl(
        program, "-p", "-x", proxy_url, *creds, "-w", "\n%{http_connect}", target
    )
    body, _, status = result.stdout.rpartition(b"\n")
    stripped = subprocess.CompletedProcess(
        result.args, result.returncode, body, result.stderr
    )
    return stripped, status.decode()


@pytest.mark.parametrize("name", ["tinyproxy", "squid"])
def test_http_proxy_tunnels_connect(
    name: str, request: pytest.FixtureRequest, origins: Origins, program: Program
) -> None:
    """tinyproxy and squid without auth tunnel CONNECT to a non-443 origin port."""
    proxy: Tinyproxy | Squid = request.getfixturevalue(name)
    result, status = connect_via(program, proxy.url, origins.http_url())
    assert result.returncode == 0, result.stderr
    assert status == "200"
    assert result.stdout == INDEX_BODY


@pytest.mark.parametrize("name", ["tinyproxy_auth", "squid_auth"])
def test_http_proxy_auth_407_without_credentials(
    name: str, request: pytest.FixtureRequest, origins: Origins, program: Program
) -> None:
    """tinyproxy and squid with auth answer CONNECT 407 without creds, tunnel with."""
    proxy: Tinyproxy | Squid = request.getfixturevalue(name)
    refused, status = connect_via(program, proxy.url, origins.http_url())
    assert refused.returncode != 0
    assert status == "407"
    creds = ("-U", f"{PROXY_USER}:{PROXY_PASSWORD}")
    ok, status = connect_via(program, proxy.url, origins.http_url(), *creds)
    assert ok.returncode == 0, ok.stderr
    assert status == "200"
    assert ok.stdout == INDEX_BODY


# --- LDAP -------------------------------------------------------------------


def test_slapd_binds_and_finds_groups(slapd: Slapd) -> None:
    """alice binds with her password only; all three kinds of membership resolve."""
    server = Server(slapd.host, port=slapd.port)
    alice = slapd.user_dn("alice")
    assert not Connection(server, user=alice, password="wrong").bind()
    conn = Connection(server, user=alice, password=slapd.users["alice"])
    assert conn.bind(), conn.result
    groups = f"ou=groups,{slapd.base_dn}"

    def cns(base: str, query: str) -> set[str]:
        assert conn.search(base, query, attributes=["cn"]), conn.result
        return {str(e.cn.value) for e in conn.entries}

    assert cns(groups, f"(&(objectClass=groupOfNames)(member={alice}))") == {
        "proxyusers"
    }
    assert cns(groups, "(&(objectClass=posixGroup)(memberUid=alice))") == {"proxyposix"}
    member_of = f"(memberOf={slapd.group_dn('proxyusers')})"
    assert conn.search(slapd.base_dn, member_of, attributes=["uid"])
    assert [str(e.uid.value) for e in conn.entries] == ["alice"]
    conn.unbind()


def test_slapd_starttls_and_ldaps_verify_with_test_ca(slapd: Slapd) -> None:
    """StartTLS and LDAPS both succeed with certificate checks against slapd.ca_cert."""
    assert slapd.ca_cert is not None and slapd.ldaps_port is not None
    tls = Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(slapd.ca_cert))
    alice, password = slapd.user_dn("alice"), slapd.users["alice"]
    plain = Connection(
        Server(slapd.host, port=slapd.port, tls=tls), user=alice, password=password
    )
    plain.open()
    assert plain.start_tls(), plain.result
    assert plain.bind(), plain.result
    assert plain.extend.standard.who_am_i() == f"dn:{alice}"
    plain.unbind()
    ldaps = Connection(
        Server(slapd.host, port=slapd.ldaps_port, use_ssl=True, tls=tls),
        user=alice,
        password=password,
    )
    assert ldaps.bind(), ldaps.result
    ldaps.unbind()


# --- ident ------------------------------------------------------------------

# Run by identuser: connect, then hold the connection until stdin closes.
# ("python3" via runuser resolves in runuser's reset PATH, e.g. /usr/bin.)
_CONNECT_AND_WAIT = (
    "import socket, sys\n"
    "s = socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=20)\n"
    "sys.stdin.read()\n"
)


def test_oidentd_names_the_user_owning_a_connection(
    oidentd: Oidentd, ident_user: str, program: Program
) -> None:
    """oidentd answers USERID identuser for identuser's connection, root for ours."""
    runuser = program("runuser", "util-linux")
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(TIMEOUT)
        server_port = listener.getsockname()[1]
        client = subprocess.Popen(
            [runuser, "-u", ident_user, "--", "python3", "-c", _CONNECT_AND_WAIT,
             str(server_port)],
            stdin=subprocess.PIPE,
        )  # fmt: skip
        try:
            conn, (_, client_port) = listener.accept()
            with conn:
                mine = oidentd.query(client_port, server_port)
                theirs = oidentd.query(server_port, client_port)
                unknown = oidentd.query(client_port, 1)
        finally:
            assert client.stdin is not None
            client.stdin.close()
            client.wait(TIMEOUT)
    assert mine == f"{client_port},{server_port}:USERID:UNIX:{ident_user}"
    assert theirs == f"{server_port},{client_port}:USERID:UNIX:root"
    assert unknown == f"{client_port},1:ERROR:NO-USER"


# --- haproxy ----------------------------------------------------------------


def test_haproxy_forwards_to_echo_and_reports_states(
    start_peer: StartPeer, origins: Origins
) -> None:
    """haproxy forwards to the echo backend; wait_server_state sees UP and DOWN."""
    closed = free_port()
    haproxy = start_peer(
        run_haproxy,
        "frontend fe\n"
        "  bind 127.0.0.1:$port\n"
        "  default_backend be\n"
        "backend be\n"
        "  default-server inter 100ms fall 1 rise 1\n"
        f"  server echo 127.0.0.1:{origins.echo_port} check\n"
        f"  server closed 127.0.0.1:{closed} check\n",
    )
    haproxy.wait_server_state("be", "echo", "UP")
    haproxy.wait_server_state("be", "closed", "DOWN")
    for i in range(3):
        with connect(haproxy.host, haproxy.port) as s:
            s.sendall(b"ping %d" % i)
            s.shutdown(socket.SHUT_WR)
            assert recv_all(s) == b"ping %d" % i


def test_haproxy_send_proxy_v2_header_reaches_backend(
    start_peer: StartPeer, origins: Origins
) -> None:
    """With send-proxy-v2 the echo backend returns haproxy's PROXY v2 header first."""
    haproxy = start_peer(
        run_haproxy,
        "frontend fe\n  bind 127.0.0.1:$port\n  default_backend be\n"
        f"backend be\n  server b1 127.0.0.1:{origins.echo_port} send-proxy-v2\n",
    )
    with connect(haproxy.host, haproxy.port) as s:
        s.sendall(b"hi")
        s.shutdown(socket.SHUT_WR)
        echoed = recv_all(s)
        client_port = s.getsockname()[1]
    header = b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11, 0, 12])
    header += socket.inet_aton("127.0.0.1") * 2
    header += client_port.to_bytes(2, "big") + haproxy.port.to_bytes(2, "big")
    assert echoed == header + b"hi"


# --- origins ----------------------------------------------------------------


def test_sink_reports_count_and_digest_after_half_close(origins: Origins) -> None:
    """The sink answers '<count> <sha256>' for exactly the bytes sent before EOF."""
    data = pattern(3 << 20)
    with connect(origins.host, origins.sink_port) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        assert recv_all(s) == sink_reply(data)


def test_source_sends_requested_pattern_then_closes(origins: Origins) -> None:
    """The source sends exactly N pattern bytes for the line 'N' and closes."""
    n = 5_000_003
    with connect(origins.host, origins.source_port) as s:
        s.sendall(b"%d\n" % n)
        assert recv_all(s) == pattern(n)


def test_halfclose_sends_trailer_after_client_eof(origins: Origins) -> None:
    """The half-close server echoes, and after the client's EOF still sends TRAILER."""
    with connect(origins.host, origins.halfclose_port) as s:
        s.sendall(b"before-eof")
        s.shutdown(socket.SHUT_WR)
        assert recv_all(s) == b"before-eof" + TRAILER


@pytest.mark.parametrize(
    ("family", "host"), [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")]
)
def test_echo_tcp_and_udp(origins: Origins, family: int, host: str) -> None:
    """TCP and UDP echo answer on 127.0.0.1 and on ::1."""
    tcp_port = origins.echo_port if family == socket.AF_INET else origins.echo6_port
    udp_port = (
        origins.udp_echo_port if family == socket.AF_INET else origins.udp_echo6_port
    )
    assert tcp_port is not None and udp_port is not None
    with connect(host, tcp_port) as s:
        s.sendall(b"tcp-echo")
        s.shutdown(socket.SHUT_WR)
        assert recv_all(s) == b"tcp-echo"
    with socket.socket(family, socket.SOCK_DGRAM) as u:
        u.settimeout(TIMEOUT)
        u.sendto(b"udp-echo", (host, udp_port))
        assert u.recvfrom(2048)[0] == b"udp-echo"


def test_http_serves_large_file_intact(origins: Origins, program: Program) -> None:
    """The HTTP origin serves large.bin whose digest matches origins.large_sha256."""
    result = curl(program, origins.http_url("large.bin"))
    assert result.returncode == 0, result.stderr
    assert len(result.stdout) == origins.large_size
    assert result.stdout == pattern(origins.large_size)


def test_ftp_active_download(
    origins: Origins, program: Program, tmp_path: Path
) -> None:
    """tnftp in active mode (ftp -A: PORT/EPRT) downloads hello.txt from the origin."""
    out = tmp_path / "hello.txt"
    result = run(
        [program("ftp", "tnftp"), "-A", "-v", "-o", str(out), origins.ftp_url()]
    )
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == FTP_BODY
    assert b"Active data connection established" in result.stdout, result.stdout
