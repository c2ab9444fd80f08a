"""LDAP settings from Dante's keywords, and refusals decided before any I/O.

Binding and group reads are tested against a real slapd in
tests/integration/test_auth_ldap.py.
"""

from __future__ import annotations

from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.task import Clock

from dantex.auth.ldap import LdapChecker, LdapSettings


def test_url_gives_server_basedn_and_service_bind() -> None:
    """ldap[s]://user:pw@host:port/basedn, Dante's form; the pw is hidden."""
    s = LdapSettings.from_keywords(
        {
            "ldap.auth.url": (
                "ldaps://cn=svc%2Cdc=example%2Cdc=org:s3cret@127.0.0.1:1636/"
                "dc=example,dc=org",
            )
        },
        "ldap.auth.",
        filter="(uid=%s)",
        cache_ttl=300,
    )
    assert s is not None
    assert s.urls == ("ldaps://127.0.0.1:1636",)
    assert s.basedn == "dc=example,dc=org"
    assert s.bind_dn == "cn=svc,dc=example,dc=org"
    assert s.bind_password == "s3cret"
    assert "s3cret" not in repr(s)


def test_server_port_ssl_keywords_and_dantex_extras() -> None:
    """server + ssl picks port.ssl; starttls/timeout/cache are read."""
    s = LdapSettings.from_keywords(
        {
            "ldap.server": ("ldap1", "ldap2"),
            "ldap.ssl": ("yes",),
            "ldap.port.ssl": ("1636",),
            "ldap.basedn": ("dc=x",),
            "ldap.timeout": ("5",),
            "ldap.cache": ("60",),
            "ldap.certcheck": ("no",),
        },
        "ldap.",
        filter="(memberuid=%s)",
        cache_ttl=900,
    )
    assert s is not None
    assert s.urls == ("ldaps://ldap1:1636", "ldaps://ldap2:1636")
    assert (s.timeout, s.cache_ttl, s.certcheck) == (5.0, 60.0, False)
    assert s.filter == "(memberuid=%s)" and s.attribute == "cn"


def test_no_server_means_no_settings() -> None:
    """Without url/server there is no directory."""
    assert LdapSettings.from_keywords({}, "ldap.", filter="x", cache_ttl=1) is None


def test_empty_password_is_refused_before_any_bind() -> None:
    """An empty password would be an LDAP unauthenticated bind: refused."""
    settings = LdapSettings(urls=("ldap://192.0.2.1:389",), basedn="dc=x")
    checker = LdapChecker(settings, Clock())
    out: list[object] = []
    checker.requestAvatarId(UsernamePassword(b"alice", b"")).addBoth(out.append)
    assert out[0].check(UnauthorizedLogin)  # type: ignore[attr-defined]
    assert checker.binds_run == 0
