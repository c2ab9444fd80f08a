"""The password file: formats, refusals, reload on change, the verified cache."""

from __future__ import annotations

import os
from pathlib import Path

import bcrypt
import pytest
from passlib.hash import sha512_crypt
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.task import Clock

from dantex.auth.passwd import (
    PasswordFile,
    PasswordFileChecker,
    parse_password_file,
    verify_hash,
)

BCRYPT_ALICE = bcrypt.hashpw(b"alicepw", bcrypt.gensalt(4)).decode()
SHA512_BOB = sha512_crypt.using(rounds=1000).hash("bobpw")


def checker_for(tmp_path: Path, text: str) -> tuple[PasswordFileChecker, Clock, Path]:
    path = tmp_path / "passwd"
    path.write_text(text)
    clock = Clock()
    pw = PasswordFile(str(path), clock, warn=lambda m: None)
    return PasswordFileChecker(pw, clock), clock, path


def result_of(checker: PasswordFileChecker, user: bytes, password: bytes) -> object:
    out: list[object] = []
    checker.requestAvatarId(UsernamePassword(user, password)).addBoth(out.append)
    assert out, "the inline runner answers at once"
    return out[0]


def test_parse_reads_users_hashes_and_groups() -> None:
    """user:hash:groups lines; comments and blank lines are skipped."""
    text = f"# users\n\nalice:{BCRYPT_ALICE}:staff, dev\nbob:{SHA512_BOB}\n"
    entries = parse_password_file(text, "p", lambda m: None)
    assert set(entries) == {"alice", "bob"}
    assert entries["alice"].groups == frozenset({"staff", "dev"})
    assert entries["bob"].groups == frozenset()
    assert "alicepw" not in repr(entries["alice"])
    assert BCRYPT_ALICE not in repr(entries["alice"])


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("carol:$apr1$abc$0123456789abcdefghijkl", "MD5 (apr1) hashes are too weak"),
        ("carol:$1$abc$0123456789abcdefghijkl", "MD5-crypt hashes are too weak"),
        ("carol:secretinclear", "unknown hash format"),
        ("carol", "not 'user:hash[:groups]'"),
    ],
)
def test_bad_lines_are_skipped_with_a_warning_naming_file_and_line(
    line: str, why: str
) -> None:
    """A bad line is ignored; the warning says where and why, never the hash."""
    warnings: list[str] = []
    entries = parse_password_file(f"# c\n{line}\n", "/etc/p", warnings.append)
    assert entries == {}
    (warning,) = warnings
    assert warning.startswith("/etc/p:2: ")
    assert why in warning
    secret = line.partition(":")[2]
    assert not secret or secret not in warning


def test_plain_text_only_when_marked() -> None:
    """{PLAIN} passwords compare in constant time; groups may follow."""
    entries = parse_password_file("u:{PLAIN}pw:ops\n", "p", lambda m: None)
    assert entries["u"].groups == frozenset({"ops"})
    assert verify_hash(entries["u"].hash, b"pw")
    assert not verify_hash(entries["u"].hash, b"pw2")


@pytest.mark.parametrize(
    ("hashed", "password"),
    [(BCRYPT_ALICE, b"alicepw"), (SHA512_BOB, b"bobpw")],
)
def test_verify_hash_bcrypt_and_sha512_crypt(hashed: str, password: bytes) -> None:
    """bcrypt and SHA-512-crypt hashes verify the right password only."""
    assert verify_hash(hashed, password)
    assert not verify_hash(hashed, password + b"x")


def test_bcrypt_2y_from_htpasswd() -> None:
    """htpasswd -B writes $2y$; it verifies like $2b$."""
    hashed = "$2y$" + BCRYPT_ALICE[4:]
    assert verify_hash(hashed, b"alicepw")


def test_right_password_gives_the_user_wrong_and_unknown_refused(
    tmp_path: Path,
) -> None:
    """The avatar id is the user name; wrong and unknown users are refused."""
    checker, _, _ = checker_for(tmp_path, f"alice:{BCRYPT_ALICE}\n")
    assert result_of(checker, b"alice", b"alicepw") == b"alice"
    wrong = result_of(checker, b"alice", b"nope")
    assert wrong.check(UnauthorizedLogin)  # type: ignore[attr-defined]
    unknown = result_of(checker, b"mallory", b"alicepw")
    assert unknown.check(UnauthorizedLogin)  # type: ignore[attr-defined]


def test_unknown_user_costs_a_hash_too(tmp_path: Path) -> None:
    """An unknown user is hashed against a decoy so timing does not tell."""
    checker, _, _ = checker_for(tmp_path, f"alice:{BCRYPT_ALICE}\n")
    result_of(checker, b"mallory", b"x")
    assert checker.hashes_run == 1


def test_cache_hit_skips_the_hash_and_wrong_password_misses(tmp_path: Path) -> None:
    """A verified user/password is reused; another password is hashed again."""
    checker, _, _ = checker_for(tmp_path, f"alice:{BCRYPT_ALICE}\n")
    result_of(checker, b"alice", b"alicepw")
    result_of(checker, b"alice", b"alicepw")
    assert checker.hashes_run == 1
    result_of(checker, b"alice", b"guess")
    assert checker.hashes_run == 2


def test_changed_file_is_reread_and_invalidates_the_cache(tmp_path: Path) -> None:
    """After an edit (seen by stat after check_interval), the new hash rules."""
    checker, clock, path = checker_for(tmp_path, f"alice:{BCRYPT_ALICE}\n")
    assert result_of(checker, b"alice", b"alicepw") == b"alice"
    new = bcrypt.hashpw(b"newpw", bcrypt.gensalt(4)).decode()
    path.write_text(f"alice:{new}\n# edited\n")
    os.utime(path, ns=(1, 1))
    clock.advance(2)
    assert result_of(checker, b"alice", b"alicepw").check(UnauthorizedLogin)  # type: ignore[attr-defined]
    assert result_of(checker, b"alice", b"newpw") == b"alice"


def test_missing_file_lets_nobody_in(tmp_path: Path) -> None:
    """A deleted file empties the table (nobody can log in) with a warning."""
    warnings: list[str] = []
    path = tmp_path / "passwd"
    path.write_text("u:{PLAIN}pw\n")
    clock = Clock()
    checker = PasswordFileChecker(
        PasswordFile(str(path), clock, warn=warnings.append), clock
    )
    assert result_of(checker, b"u", b"pw") == b"u"
    path.unlink()
    clock.advance(2)
    assert result_of(checker, b"u", b"pw").check(UnauthorizedLogin)  # type: ignore[attr-defined]
    assert any("missing" in w for w in warnings)


def test_groups_come_from_the_third_field(tmp_path: Path) -> None:
    """groups_of reads the file's group list."""
    checker, _, _ = checker_for(tmp_path, "u:{PLAIN}pw:a,b\n")
    got: list[frozenset[str]] = []
    checker.groups_of("u").addCallback(got.append)
    assert got == [frozenset({"a", "b"})]
