"""Every keyword of Dante's sockd.conf, and which ones dantex implements.

Used for "not supported yet" errors (a keyword dantex knows but does not yet
honour is refused, never silently ignored), deprecation warnings naming the
new keyword, and did-you-mean suggestions for typos.
"""

from __future__ import annotations

import difflib
import re

__all__ = [
    "DEPRECATED",
    "KNOWN_GLOBAL",
    "KNOWN_RULE",
    "LDAP",
    "is_known",
    "suggest",
]

_GLOBAL_TEXT = """
internal internal.protocol external external.protocol external.rotation
socksmethod clientmethod method user.privileged user.unprivileged
user.notprivileged user.libwrap logoutput errorlog debug
timeout.negotiate timeout.connect timeout.io timeout.io.tcp timeout.io.udp
timeout.tcp_fin_wait connecttimeout iotimeout srchost compatibility
extension udp.connectdst internal.advertise external.advertise resolveprotocol
libwrap.hosts_access libwrap.allow
libwrap.deny route.maxfail route.badexpire route.order child.maxrequests child.maxidle
child.maxlifetime localdomain pam.servicename bsdauth.stylename
gssapi.servicename gssapi.keytab gssapi.enctype pamservicename
username.passwordfile auth.failures rfc931.port rfc931.timeout
internal.proxyprotocol internal.proxyprotocol.from
timeout.shutdown metrics.internal
"""
_RULE_TEXT = """
from to via command protocol proxyprotocol socksmethod clientmethod method
user group log libwrap bandwidth bandwidth.state.key redirect pam.servicename
bsdauth.stylename
gssapi.servicename gssapi.keytab gssapi.enctype clientcompatibility
udp.portrange hostid hostindex extension maxsessions bounce
timeout.negotiate timeout.connect timeout.io timeout.io.tcp timeout.io.udp
timeout.tcp_fin_wait connecttimeout iotimeout
session.max session.throttle session.state.key session.state.key.hostindex
session.state.max session.state.throttle session.inheritable
pamservicename protocolversion
username password tls tls.cafile tls.servername
"""
_LDAP_TEXT = """
ldap.group ldap.group.hex ldap.group.hex.all ldap.url ldap.server ldap.basedn
ldap.basedn.hex ldap.basedn.hex.all ldap.filter ldap.filter.ad ldap.filter.hex
ldap.filter.ad.hex ldap.attribute ldap.attribute.ad ldap.attribute.hex
ldap.attribute.ad.hex ldap.domain ldap.port ldap.port.ssl ldap.ssl
ldap.certcheck ldap.certfile ldap.certpath ldap.keytab ldap.auto.off
ldap.keeprealm ldap.debug ldap.mdepth ldap.auth.url ldap.auth.server
ldap.auth.basedn ldap.auth.basedn.hex ldap.auth.basedn.hex.all ldap.auth.port
ldap.auth.port.ssl ldap.auth.ssl ldap.auth.certcheck ldap.auth.certfile
ldap.auth.certpath ldap.auth.domain ldap.auth.debug ldap.auth.auto.off
ldap.auth.keeprealm ldap.auth.filter ldap.auth.keytab
ldap.auth.starttls ldap.auth.timeout ldap.auth.cache ldap.starttls
ldap.timeout ldap.cache
pac.sid pac.sid.b64 pac.off
"""

#: Global settings Dante 1.4 knows (patterns below cover the families).
KNOWN_GLOBAL = frozenset(_GLOBAL_TEXT.split())

#: Keywords that may appear inside client/socks/hostid rules, routes, monitors.
KNOWN_RULE = frozenset(_RULE_TEXT.split())

#: The LDAP and PAC module keywords (Dante §1.9).
LDAP = frozenset(_LDAP_TEXT.split())

_PATTERNS = (
    re.compile(r"(internal|external)\.(socket|ip|tcp|udp)\.[a-z0-9_.]+"),
    re.compile(r"(internal|external)\.log\.[a-z]+\.(error|tcp\.disabled|tcp\.enabled)"),
    re.compile(r"cpu\.(schedule|mask)\.(mother|monitor|negotiate|request|io)"),
    re.compile(r"((internal|external)\.)?alarm\.[a-z.\-]+"),
    re.compile(r"socket\.(recvbuf|sendbuf)\.(tcp|udp)"),
)

#: Old keyword -> the 1.4 keyword a warning should name.
DEPRECATED = {
    "method": "socksmethod",
    "connecttimeout": "timeout.connect",
    "iotimeout": "timeout.io",
    "maxsessions": "session.max",
    "user.notprivileged": "user.unprivileged",
    "pamservicename": "pam.servicename",
    "protocolversion": "proxyprotocol",
}


def is_known(word: str) -> bool:
    """Whether Dante has a keyword spelled ``word``."""
    if word in KNOWN_GLOBAL or word in KNOWN_RULE or word in DEPRECATED:
        return True
    if word in LDAP:
        return True
    return any(p.fullmatch(word) for p in _PATTERNS)


def suggest(word: str, candidates: frozenset[str] | None = None) -> str | None:
    """The closest known keyword to ``word``, for "did you mean" hints."""
    pool = sorted(candidates if candidates is not None else KNOWN_GLOBAL | KNOWN_RULE)
    match = difflib.get_close_matches(word, pool, n=1, cutoff=0.7)
    return match[0] if match else None
