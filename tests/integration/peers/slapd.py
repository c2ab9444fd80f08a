"""A private OpenLDAP slapd 2.5 instance (own slapd.conf, mdb, temp dir).

Directory tree under ``dc=example,dc=org``::

    ou=people   uid=alice (password "alicepw"), uid=bob ("bobpw")
                inetOrgPerson + posixAccount
    ou=groups   cn=proxyusers   groupOfNames, member: alice
                cn=proxyposix   posixGroup, memberUid: alice
                cn=staff        groupOfNames, member: bob

``memberOf``: the real attribute comes from the ``memberof`` overlay, which
maintains it on-line and is not used here. Instead a private schema defines
``memberOf`` (same OID and syntax as the overlay's, DN equality) plus an
auxiliary class ``dantexMemberOf``, and the LDIF stores it statically on each
person. Filters like ``(memberOf=cn=proxyusers,...)`` and reading
``memberOf`` by name behave as with the overlay; the difference is that here
it is a user attribute (also returned for ``*``) and is not updated when a
group changes.

TLS (optional): a throwaway CA and a server certificate for
``IP:127.0.0.1, DNS:localhost`` signed by it, made with ``openssl`` in the
temp dir; StartTLS on the plain port and LDAPS on a second port. Clients
verify with :attr:`Slapd.ca_cert`.
"""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.integration.peers._process import (
    Daemon,
    free_port,
    fresh_dir,
    listening,
    require_binary,
    retry_on_bind_failure,
)

__all__ = ["BASE_DN", "USERS", "Slapd", "run_slapd", "ssha"]

BASE_DN = "dc=example,dc=org"
ADMIN_DN = f"cn=admin,{BASE_DN}"
ADMIN_PASSWORD = "secret"
#: uid -> password of the people in ``ou=people``.
USERS: Mapping[str, str] = {"alice": "alicepw", "bob": "bobpw"}

_SCHEMA = """\
attributetype ( 1.2.840.113556.1.2.102 NAME 'memberOf'
  DESC 'static stand-in for the memberof overlay attribute'
  EQUALITY distinguishedNameMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.12 )
objectclass ( 1.3.6.1.4.1.4203.666.11.99.1 NAME 'dantexMemberOf'
  DESC 'dantex tests: lets a person carry memberOf' AUXILIARY MAY memberOf )
"""


def ssha(password: str) -> str:
    """``{SSHA}`` hash as ``slappasswd -s`` makes it (salted SHA-1, RFC 2307)."""
    salt = os.urandom(8)
    digest = hashlib.sha1(password.encode() + salt).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


@dataclass(frozen=True)
class Slapd:
    """A running slapd.

    :ivar users: uid -> password for ``uid=<uid>,ou=people,<base_dn>``.
    :ivar ldaps_port: ``None`` unless started with TLS.
    :ivar ca_cert: PEM file of the CA that signed the server certificate
        (``None`` without TLS).
    """

    host: str
    port: int
    pid: int
    dir: Path
    base_dn: str
    admin_dn: str
    admin_password: str = field(repr=False)
    users: Mapping[str, str] = field(repr=False)
    ldaps_port: int | None = None
    ca_cert: Path | None = None
    daemon: Daemon = field(repr=False, compare=False, kw_only=True)

    @property
    def url(self) -> str:
        """``ldap://host:port/``."""
        return f"ldap://{self.host}:{self.port}/"

    @property
    def ldaps_url(self) -> str | None:
        """``ldaps://host:port/``, or ``None`` without TLS."""
        if self.ldaps_port is None:
            return None
        return f"ldaps://{self.host}:{self.ldaps_port}/"

    def user_dn(self, uid: str) -> str:
        """DN of person *uid*."""
        return f"uid={uid},ou=people,{self.base_dn}"

    def group_dn(self, cn: str) -> str:
        """DN of group *cn*."""
        return f"cn={cn},ou=groups,{self.base_dn}"

    def log_text(self) -> str:
        """slapd's stderr (``-d stats``: one line per operation)."""
        return self.daemon.log_text()

    def stop(self) -> None:
        """Stop it now (also done when the context exits)."""
        self.daemon.stop()


def _person(uid: str, cn: str, sn: str, number: int, groups: list[str]) -> str:
    member_of = "".join(f"memberOf: cn={g},ou=groups,{BASE_DN}\n" for g in groups)
    return (
        f"dn: uid={uid},ou=people,{BASE_DN}\n"
        "objectClass: inetOrgPerson\n"
        "objectClass: posixAccount\n"
        "objectClass: dantexMemberOf\n"
        f"uid: {uid}\ncn: {cn}\nsn: {sn}\n"
        f"uidNumber: {number}\ngidNumber: {number}\n"
        f"homeDirectory: /nonexistent\n"
        f"userPassword: {ssha(USERS[uid])}\n"
        f"{member_of}\n"
    )


def _ldif() -> str:
    people = f"uid=%s,ou=people,{BASE_DN}"
    return (
        f"dn: {BASE_DN}\nobjectClass: dcObject\nobjectClass: organization\n"
        "dc: example\no: Example\n\n"
        f"dn: ou=people,{BASE_DN}\nobjectClass: organizationalUnit\nou: people\n\n"
        f"dn: ou=groups,{BASE_DN}\nobjectClass: organizationalUnit\nou: groups\n\n"
        + _person("alice", "Alice", "Liddell", 10001, ["proxyusers", "proxyposix"])
        + _person("bob", "Bob", "Builder", 10002, ["staff"])
        + f"dn: cn=proxyusers,ou=groups,{BASE_DN}\nobjectClass: groupOfNames\n"
        f"cn: proxyusers\nmember: {people % 'alice'}\n\n"
        f"dn: cn=proxyposix,ou=groups,{BASE_DN}\nobjectClass: posixGroup\n"
        "cn: proxyposix\ngidNumber: 20001\nmemberUid: alice\n\n"
        f"dn: cn=staff,ou=groups,{BASE_DN}\nobjectClass: groupOfNames\n"
        f"cn: staff\nmember: {people % 'bob'}\n\n"
    )


def _config(directory: Path, tls: bool) -> str:
    tls_lines = ""
    if tls:
        tls_lines = (
            f"TLSCACertificateFile {directory}/ca.pem\n"
            f"TLSCertificateFile {directory}/server.pem\n"
            f"TLSCertificateKeyFile {directory}/server.key\n"
        )
    return (
        "include /etc/ldap/schema/core.schema\n"
        "include /etc/ldap/schema/cosine.schema\n"
        "include /etc/ldap/schema/nis.schema\n"
        "include /etc/ldap/schema/inetorgperson.schema\n"
        f"include {directory}/dantex.schema\n"
        "modulepath /usr/lib/ldap\n"
        "moduleload back_mdb\n"
        f"pidfile {directory}/slapd.pid\n"
        f"argsfile {directory}/slapd.args\n"
        f"{tls_lines}"
        "database mdb\n"
        "maxsize 10485760\n"
        f'suffix "{BASE_DN}"\n'
        f'rootdn "{ADMIN_DN}"\n'
        f"rootpw {ssha(ADMIN_PASSWORD)}\n"
        f"directory {directory}/db\n"
        "index objectClass,uid,member,memberUid,memberOf eq\n"
        "access to attrs=userPassword by self write by anonymous auth by * none\n"
        "access to * by * read\n"
    )


def make_test_ca(directory: Path, server_name: str = "127.0.0.1") -> Path:
    """Write a throwaway CA and a server cert/key signed by it into *directory*.

    Files: ``ca.pem``, ``ca.key``, ``server.pem``, ``server.key`` (EC P-256,
    unencrypted: GnuTLS cannot prompt). SAN = ``IP:127.0.0.1, DNS:localhost``.

    :returns: the CA certificate's path.
    """
    openssl = require_binary("openssl", "openssl")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    (directory / "server.ext").write_text(
        "basicConstraints = critical, CA:FALSE\n"
        "keyUsage = critical, digitalSignature, keyEncipherment\n"
        "extendedKeyUsage = serverAuth\n"
        "subjectAltName = IP:127.0.0.1, DNS:localhost\n"
    )
    commands = [
        [openssl, "req", "-x509", *ec, "-days", "2", "-subj", "/CN=dantex test CA",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign",
         "-keyout", "ca.key", "-out", "ca.pem"],
        [openssl, "req", *ec, "-subj", f"/CN={server_name}",
         "-keyout", "server.key", "-out", "server.csr"],
        [openssl, "x509", "-req", "-in", "server.csr", "-CA", "ca.pem",
         "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
         "-extfile", "server.ext", "-out", "server.pem"],
    ]  # fmt: skip
    for argv in commands:
        subprocess.run(argv, cwd=directory, capture_output=True, timeout=30, check=True)
    return directory / "ca.pem"


def _root_dse_answers(host: str, port: int) -> bool:
    # Imported here: only this readiness probe needs ldap3.
    from ldap3 import BASE, NONE, Connection, Server
    from ldap3.core.exceptions import LDAPException

    try:
        server = Server(host, port=port, get_info=NONE, connect_timeout=1)
        with Connection(server, receive_timeout=2) as conn:
            ok: bool = conn.search(
                "", "(objectClass=*)", BASE, attributes=["namingContexts"]
            )
            return ok
    except (LDAPException, OSError):
        return False


@contextmanager
def run_slapd(*, tls: bool = False) -> Iterator[Slapd]:
    """Run a private slapd on 127.0.0.1 on a free port (loaded with slapadd).

    :param tls: also offer StartTLS and LDAPS (second free port), with a
        throwaway CA (:attr:`Slapd.ca_cert`).
    :raises PeerMissingError: slapd/slapadd (or openssl, for TLS) is not installed.
    """
    slapd = require_binary("slapd", "slapd")
    slapadd = require_binary("slapadd", "slapd")

    def start() -> Slapd:
        port = free_port()
        ldaps_port = free_port() if tls else None
        with fresh_dir("slapd") as directory:
            (directory / "db").mkdir()
            (directory / "dantex.schema").write_text(_SCHEMA)
            ca_cert = make_test_ca(directory) if tls else None
            (directory / "slapd.conf").write_text(_config(directory, tls))
            (directory / "data.ldif").write_text(_ldif())
            subprocess.run(
                [slapadd, "-q", "-f", "slapd.conf", "-l", "data.ldif"],
                cwd=directory,
                capture_output=True,
                timeout=30,
                check=True,
            )
            urls = f"ldap://127.0.0.1:{port}/"
            if ldaps_port is not None:
                urls += f" ldaps://127.0.0.1:{ldaps_port}/"
            daemon = Daemon(
                "slapd",
                [slapd, "-f", str(directory / "slapd.conf"), "-h", urls, "-d", "stats"],
                directory,
            )
            daemon.start(
                lambda: (
                    listening(daemon.pid, port) and _root_dse_answers("127.0.0.1", port)
                ),
                what="listening and root DSE search answered",
            )
            return Slapd(
                host="127.0.0.1",
                port=port,
                pid=daemon.pid,
                dir=directory,
                base_dn=BASE_DN,
                admin_dn=ADMIN_DN,
                admin_password=ADMIN_PASSWORD,
                users=USERS,
                ldaps_port=ldaps_port,
                ca_cert=ca_cert,
                daemon=daemon,
            )

    peer = retry_on_bind_failure(start)
    try:
        yield peer
    finally:
        peer.stop()
