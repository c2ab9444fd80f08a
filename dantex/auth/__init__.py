"""Authentication for dantex, as ``twisted.cred`` checkers a Twisted program can reuse.

* :mod:`.passwd` -- htpasswd-style password file (bcrypt, SHA-512-crypt),
  reloaded when it changes, verified results cached;
* :mod:`.pam` -- system accounts and PAM services (python-pam);
* :mod:`.ldap` -- LDAP bind and group membership (ldap3), LDAPS/StartTLS;
* :mod:`.ident` -- RFC 1413 ident (our own client);
* :mod:`.realm` -- avatars: :class:`SocksUser` with groups;
* :mod:`.failures` -- slowing down repeated failures per source;
* :mod:`.methods` -- Dante's method names, their wire methods and backends.

Blocking work runs through a :data:`Blocking` runner (a thread pool in the
server).  Not implemented: GSS-API, BSD auth, Kerberos/AD specifics.
"""

from dantex.auth._base import (
    Blocking,
    ConnectionCredentials,
    IConnectionCredentials,
    ISocksUser,
    SocksCredentials,
    SocksUser,
    VerifiedCache,
    in_pool,
    inline,
)
from dantex.auth.failures import FailureLimiter
from dantex.auth.ident import IdentChecker
from dantex.auth.ldap import LdapChecker, LdapSettings
from dantex.auth.methods import Authenticator, choose_method, v4_method
from dantex.auth.pam import PamChecker
from dantex.auth.passwd import PasswordFile, PasswordFileChecker
from dantex.auth.realm import SocksRealm, SystemGroups

__all__ = [
    "Authenticator",
    "Blocking",
    "ConnectionCredentials",
    "FailureLimiter",
    "IConnectionCredentials",
    "ISocksUser",
    "IdentChecker",
    "LdapChecker",
    "LdapSettings",
    "PamChecker",
    "PasswordFile",
    "PasswordFileChecker",
    "SocksCredentials",
    "SocksRealm",
    "SocksUser",
    "SystemGroups",
    "VerifiedCache",
    "choose_method",
    "in_pool",
    "inline",
    "v4_method",
]
