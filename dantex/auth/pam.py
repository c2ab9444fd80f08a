"""System accounts and PAM: ``username`` (default backend), ``pam.*`` methods.

Uses python-pam (``import pam``): ``pam_start`` with the service name,
``PAM_RHOST`` set to the client's address (as Dante does), then
``pam_authenticate`` and ``pam_acct_mgmt``; credentials are not established
(no session is opened).  Runs in the thread pool: PAM modules block.

* With :class:`~dantex.auth._base.SocksCredentials` (RFC 1929) the user name
  and password answer PAM's prompts (``pam.username``, ``pam.any``, and
  ``username`` on system accounts).
* With :class:`~dantex.auth._base.ConnectionCredentials` only (``pam.address``,
  ``pam.any`` without a password) the user is empty and PAM decides on
  ``PAM_RHOST`` alone (e.g. ``pam_access``, ``pam_listfile``).

Checking other users' passwords with ``pam_unix`` needs root (it reads
``/etc/shadow``), as Dante's ``username`` does: when the server has given up
root with ``user.unprivileged`` (an effective uid), it regains it only for
the duration of each PAM call, as Dante does with ``user.privileged``.

Not implemented: PAM conversations that ask more than a user name and a
password.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from dantex.auth._base import (
    AvatarId,
    Blocking,
    IConnectionCredentials,
    VerifiedCache,
    inline,
)

__all__ = ["DEFAULT_SERVICE", "USERNAME_SERVICE", "PamChecker", "pam_available"]

#: Dante's default ``pam.servicename`` (upstream; Debian's build uses "danted").
DEFAULT_SERVICE = "sockd"
#: The PAM service dantex's ``username`` method uses for system accounts.
#: Without /etc/pam.d/dantex, Linux-PAM uses /etc/pam.d/other (on Debian:
#: common-auth, i.e. pam_unix and /etc/shadow).
USERNAME_SERVICE = "dantex"

_PAM_RHOST = 4


def pam_available() -> bool:
    """Whether python-pam and libpam can be loaded."""
    try:
        import pam

        pam.PamAuthenticator()
    except Exception:
        return False
    return True


#: Serialises the effective-uid switch around PAM (process-wide state).
_EUID_LOCK = threading.Lock()


@contextmanager
def _privileged() -> Iterator[None]:
    """Run as root for the duration, if root was given up with ``seteuid``.

    Like Dante's ``user.privileged``: the server runs as
    ``user.unprivileged`` (effective uid) and regains root only around
    PAM, which reads ``/etc/shadow``.  The switch is process-wide, so it
    is serialised and kept as short as the PAM call.
    """
    if os.geteuid() == 0 or os.getuid() != 0:
        yield
        return
    with _EUID_LOCK:
        saved = os.geteuid()
        os.seteuid(0)
        try:
            yield
        finally:
            os.seteuid(saved)


def _pam_check(service: str, user: bytes, password: bytes, rhost: str) -> str | None:
    """Blocking PAM conversation; None on success, else PAM's reason."""
    with _privileged():
        return _pam_check_now(service, user, password, rhost)


def _pam_check_now(
    service: str, user: bytes, password: bytes, rhost: str
) -> str | None:
    import pam

    authenticator = pam.PamAuthenticator()
    start = authenticator.pam_start

    def start_with_rhost(*args: Any) -> int:
        rc = int(start(*args))
        if rc == 0 and rhost:
            authenticator.pam_set_item(
                authenticator.handle, _PAM_RHOST, ctypes.c_char_p(rhost.encode())
            )
        return rc

    authenticator.pam_start = start_with_rhost
    try:
        ok = authenticator.authenticate(
            user, password, service=service, resetcreds=False
        )
    except ValueError:  # NUL in a field
        return "NUL byte in user name or password"
    if ok:
        return None
    reason = authenticator.reason
    if isinstance(reason, bytes):
        reason = reason.decode("utf-8", "replace")
    return str(reason or "authentication failure")


@implementer(ICredentialsChecker)
class PamChecker:
    """``ICredentialsChecker`` asking PAM service ``service``.

    The avatar id is the user name (for address-only checks: the empty
    string).  Group membership comes from the system database
    (:class:`~dantex.auth.realm.SystemGroups`).

    :param cache_ttl: seconds a successful user/password check is reused
        (default 0: PAM is asked every time, so lock-outs apply at once).
    """

    credentialInterfaces = (IUsernamePassword, IConnectionCredentials)

    def __init__(
        self,
        service: str,
        run: Blocking = inline,
        *,
        clock: IReactorTime | None = None,
        cache_ttl: float = 0.0,
    ) -> None:
        self.service = service
        self._run = run
        self.cache = (
            VerifiedCache(clock, cache_ttl) if clock is not None and cache_ttl else None
        )

    def requestAvatarId(self, credentials: Any) -> Deferred[AvatarId]:
        return cast("Deferred[AvatarId]", self._request(credentials))

    def _request(self, credentials: Any) -> Deferred[bytes]:
        rhost = getattr(credentials, "client_host", "") or ""
        if IUsernamePassword.providedBy(credentials):
            user = bytes(credentials.username)
            password = bytes(credentials.password)
        elif IConnectionCredentials.providedBy(credentials):
            user, password = b"", b""
        else:
            return fail(UnauthorizedLogin("unsupported credentials"))
        try:
            name = user.decode("utf-8")
        except UnicodeDecodeError:
            return fail(UnauthorizedLogin("user name is not UTF-8"))
        key = f"{name}\0{rhost}"
        if self.cache is not None and self.cache.get(key, password) is not None:
            return succeed(user)

        def done(reason: str | None) -> bytes:
            if reason is not None:
                raise UnauthorizedLogin(f"pam_authenticate(): {reason}")
            if self.cache is not None:
                self.cache.put(key, password, True)
            return user

        return self._run(_pam_check, self.service, user, password, rhost).addCallback(
            done
        )
