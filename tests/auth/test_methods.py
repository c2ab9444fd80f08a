"""Dante's method names: wire choice (§1.4), v4 handling, backends, --auth."""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.task import Clock

from dantex.auth import Authenticator, SocksCredentials, SocksUser
from dantex.auth._base import inline
from dantex.auth.methods import ChainedChecker, choose_method, v4_method


@pytest.mark.parametrize(
    ("ours", "offered", "expected"),
    [
        # observed on danted: socksmethod username none, client 00 02 -> 02
        (("username", "none"), (0x00, 0x02), ("username", 0x02)),
        (("username", "none"), (0x00,), ("none", 0x00)),
        (("none", "username"), (0x00, 0x02), ("none", 0x00)),
        (("username",), (0x00,), None),
        (("rfc931",), (0x02,), ("rfc931", 0x02)),
        (("rfc931",), (0x00, 0x02), ("rfc931", 0x00)),
        (("pam.any",), (0x00, 0x02), ("pam.any", 0x02)),
        (("pam.address",), (0x00,), ("pam.address", 0x00)),
        (("pam.username",), (0x00,), None),
        (("ldapauth", "none"), (0x02,), ("ldapauth", 0x02)),
        ((), (0x00,), None),
    ],
)
def test_choose_walks_our_list_and_dante_wire_mapping(
    ours: tuple[str, ...], offered: tuple[int, ...], expected: object
) -> None:
    """The first of our methods whose wire mapping the client offered wins."""
    assert choose_method(ours, offered) == expected


@pytest.mark.parametrize(
    ("ours", "expected"),
    [
        (("none",), "none"),
        (("username", "none"), "none"),
        (("username",), None),
        (("ldapauth", "pam.username"), None),
        (("username", "rfc931"), "rfc931"),
    ],
)
def test_v4_gets_only_a_password_less_method(
    ours: tuple[str, ...], expected: str | None
) -> None:
    """SOCKS v4 cannot authenticate: refused when every method needs a password."""
    assert v4_method(ours) == expected


def login(auth: Authenticator, method: str, user: bytes, pw: bytes) -> object:
    out: list[object] = []
    auth.login(method, SocksCredentials(user, pw)).addBoth(out.append)
    return out[0]


def test_username_uses_the_password_file_with_its_groups(tmp_path: Path) -> None:
    """username + username.passwordfile: the file decides, groups from it."""
    path = tmp_path / "passwd"
    path.write_text("alice:{PLAIN}pw:staff\n")
    auth = Authenticator(Clock(), passwordfile=str(path))
    assert login(auth, "username", b"alice", b"pw") == SocksUser(
        "alice", frozenset({"staff"})
    )
    assert login(auth, "username", b"alice", b"no").check(UnauthorizedLogin)  # type: ignore[attr-defined]


def test_auth_checkers_serve_username_in_order() -> None:
    """--auth checkers replace the file; the first that accepts wins."""
    first = InMemoryUsernamePasswordDatabaseDontUse(alice=b"one")
    second = InMemoryUsernamePasswordDatabaseDontUse(bob=b"two")
    auth = Authenticator(Clock(), checkers=[first, second], run=inline)
    assert isinstance(auth.checker("username"), ChainedChecker)
    user = login(auth, "username", b"bob", b"two")
    assert isinstance(user, SocksUser) and user.name == "bob"
    assert login(auth, "username", b"bob", b"one").check(UnauthorizedLogin)  # type: ignore[attr-defined]


def test_ldapauth_without_a_server_is_a_clear_refusal() -> None:
    """ldapauth with no ldap.auth.url/server refuses, naming what is missing."""
    result = login(Authenticator(Clock()), "ldapauth", b"a", b"b")
    assert result.check(UnauthorizedLogin)  # type: ignore[attr-defined]
    assert "ldap.auth.url" in result.getErrorMessage()  # type: ignore[attr-defined]
