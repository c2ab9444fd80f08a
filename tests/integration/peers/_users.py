"""System accounts for peers that authenticate against the system database.

danted's ``username`` method checks ``/etc/passwd`` + ``/etc/shadow`` and
oidentd reports the owner of a socket, so those tests need real accounts.
They are created once (``useradd -M -s /usr/sbin/nologin``: no home, no
login shell) and left in place: deleting them could break a concurrent test
run that uses the same name. Passwords are fixed per name, so concurrent runs
setting them agree.
"""

from __future__ import annotations

import pwd
import subprocess
import time

from tests.integration.peers._process import POLL_INTERVAL, require_binary

__all__ = ["ensure_system_user"]

#: useradd/chpasswd fail while another process holds the passwd/shadow lock.
_ATTEMPTS = 20


def _exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _run(argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, input=stdin, capture_output=True, text=True, timeout=10, check=False
    )


def ensure_system_user(name: str, password: str | None = None) -> str:
    """Create system user *name* if missing; set *password* if given.

    Retries a few times (100 ms apart) when the account files are locked by a
    concurrent ``useradd``/``chpasswd``.

    :returns: *name*.
    :raises RuntimeError: if the account cannot be created or updated.
    """
    useradd = require_binary("useradd", "passwd")
    chpasswd = require_binary("chpasswd", "passwd")
    error = ""
    for _ in range(_ATTEMPTS):
        if not _exists(name):
            result = _run([useradd, "-M", "-s", "/usr/sbin/nologin", name])
            if result.returncode != 0 and not _exists(name):
                error = result.stderr
                time.sleep(POLL_INTERVAL)
                continue
        if password is None:
            return name
        result = _run([chpasswd], stdin=f"{name}:{password}\n")
        if result.returncode == 0:
            return name
        error = result.stderr
        time.sleep(POLL_INTERVAL)
    raise RuntimeError(f"cannot create or update system user {name!r}: {error}")
