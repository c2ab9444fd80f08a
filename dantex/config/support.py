"""Which parsed Dante features dantex honours yet: the one switch per feature.

The parser understands the whole Dante 1.4 language and checks the syntax of
every keyword, including those whose behaviour another piece of work will
provide.  Each use of such a *gated* feature is recorded as a
:class:`~dantex.config.model.Use` (feature key, span, label) in
``Config.uses``, and the parsed values are stored in the model all the same
(typed fields of :class:`~dantex.config.model.Rule`, ``Rule.extras``,
``Config.routes``, ``Config.monitors``, ``Config.hostid_rules`` ...).

At the end of parsing, :func:`refusals` turns every use of a feature that is
not in :data:`SUPPORTED` into the error ``'<label>' is not supported yet``,
pointing at the keyword (file, line, column).  A configuration is therefore
never accepted with a rule silently ignored.

**Switching a feature on** (for the engineer who implements it): add its key
to :data:`SUPPORTED` below -- one line, no parser change -- and make the
server honour the values the parser already stores.  The keys, their owner
and where the values are kept are listed in :data:`FEATURES`.  A key ending
in ``.*`` covers a family of keywords (``ldap.*`` covers ``ldap.group``,
``ldap.url`` ...).  Tests may pass their own ``supported`` set to
:func:`dantex.config.parse` to exercise a feature before it is switched on.

Features marked ``never`` are outside dantex's scope (GSS-API, BSD auth,
platform-only keywords); they are refused with their own message.
"""

from __future__ import annotations

from collections.abc import Iterable, Set

from attrs import frozen

from dantex.config.errors import ConfigError
from dantex.config.model import Use

__all__ = [
    "FEATURES",
    "SUPPORTED",
    "Feature",
    "feature_of",
    "is_supported",
    "refusals",
]


@frozen
class Feature:
    """A gated feature: who implements it and where its parsed values live."""

    owner: str
    stored: str
    #: a fixed refusal message (platform or scope limits); None: "not supported yet"
    message: str | None = None
    hint: str | None = None


_AUTH = "authentication methods"
_BINDUDP = "BIND and UDP ASSOCIATE"
_ROUTE = "server chaining (routes)"
_LIMITS = "resource control"
_CONFIG = "configuration (follow-up)"
_NEVER = "never"

#: Every gated feature key.  Keys are keyword names (``bandwidth``), keyword
#: families (``ldap.*``) or ``group:value`` for values of list keywords
#: (``method:username``, ``command:bind``, ``extension:bind``).
FEATURES: dict[str, Feature] = {
    # -- authentication methods and what depends on them ----------------------
    "method:username": Feature(_AUTH, "Config/Rule.socksmethods"),
    "method:rfc931": Feature(_AUTH, "Config/Rule.socksmethods, clientmethods"),
    "method:pam.any": Feature(_AUTH, "Config/Rule.socksmethods, clientmethods"),
    "method:pam.address": Feature(_AUTH, "Config/Rule.socksmethods, clientmethods"),
    "method:pam.username": Feature(_AUTH, "Config/Rule.socksmethods"),
    "method:ldapauth": Feature(_AUTH, "Config/Rule.socksmethods"),
    "user": Feature(_AUTH, "Rule.users"),
    "group": Feature(_AUTH, "Rule.groups"),
    "pam.servicename": Feature(_AUTH, "Config/Rule.pam_servicename"),
    # dantex checks passwords while negotiating, before any socks-rule is known
    "pam.servicename:socks": Feature(
        _AUTH,
        "Rule.pam_servicename",
        "'pam.servicename' in socks-rules is not supported yet",
        "give pam.servicename globally or in the client-rule",
    ),
    "ldap.*": Feature(_AUTH, "Config.ldap / Rule.ldap (keyword -> values)"),
    "method:gssapi": Feature(
        _NEVER,
        "",
        "GSS-API (method 'gssapi') is not supported by dantex",
        "use 'username' over TLS, or restrict by source address",
    ),
    "gssapi.*": Feature(_NEVER, "", "GSS-API keywords are not supported by dantex"),
    "clientcompatibility": Feature(
        _NEVER, "", "'clientcompatibility' (NEC GSS-API) is not supported by dantex"
    ),
    "method:bsdauth": Feature(
        _NEVER, "", "BSD authentication exists on OpenBSD only; not supported"
    ),
    "bsdauth.stylename": Feature(
        _NEVER, "", "BSD authentication exists on OpenBSD only; not supported"
    ),
    "pac.*": Feature(_NEVER, "", "Kerberos PAC keywords are not supported by dantex"),
    # -- BIND and UDP -----------------------------------------------------------
    "command:bind": Feature(_BINDUDP, "Rule.commands"),
    "command:bindreply": Feature(_BINDUDP, "Rule.commands"),
    "command:udpassociate": Feature(_BINDUDP, "Rule.commands"),
    "command:udpreply": Feature(_BINDUDP, "Rule.commands"),
    "extension:bind": Feature(_BINDUDP, "Config.extensions"),
    "extension:httpconnect": Feature("operations", "Config.extensions"),
    "udp.portrange": Feature(_BINDUDP, "Rule.udp_portrange"),
    "udp.connectdst": Feature(_BINDUDP, "Config.udp_connectdst"),
    "compatibility:draft-5.05": Feature(_BINDUDP, "Config.compatibility"),
    # -- routes ---------------------------------------------------------------------
    "route": Feature(_ROUTE, "Config.routes"),
    "route.maxfail": Feature(_ROUTE, "Config.route_maxfail"),
    "route.badexpire": Feature(_ROUTE, "Config.route_badexpire"),
    # -- resource control -------------------------------------------------------
    "bandwidth": Feature(_LIMITS, "Rule.bandwidth"),
    "session.max": Feature(_LIMITS, "Rule.session.max"),
    "session.throttle": Feature(_LIMITS, "Rule.session.throttle"),
    "session.state.key": Feature(_LIMITS, "Rule.session.state_key"),
    "session.state.key.hostindex": Feature(_LIMITS, "Rule.session.state_hostindex"),
    "session.state.max": Feature(_LIMITS, "Rule.session.state_max"),
    "session.state.throttle": Feature(_LIMITS, "Rule.session.state_throttle"),
    "session.inheritable": Feature(_LIMITS, "Rule.session.inheritable"),
    "session.state.key:hostid": Feature(
        _LIMITS,
        "Rule.session.state_key",
        "session.state.key: hostid is not supported on this system",
        "Linux has no TCP_IPA host-id option; use 'from' or 'user'",
    ),
    "bandwidth.state.key": Feature(_LIMITS, "Rule.bandwidth_key"),
    "redirect from": Feature(_LIMITS, "Rule.redirect_from"),
    "redirect to": Feature(_LIMITS, "Rule.redirect_to"),
    "redirect from:route": Feature(_LIMITS, "Route.redirect_from"),
    "monitor": Feature(_LIMITS, "Config.monitors"),
    "alarm.test": Feature(_LIMITS, "Monitor.alarms (kind test.mtu-error)"),
    # -- host ids (TCP_IPA): no such kernel option on Linux ----------------------
    "hostid": Feature(
        "PROXY protocol / host ids",
        "Config.hostid_rules, Rule.hostid, Rule.hostindex",
        "hostid is not supported on this system",
        "Linux has no TCP_IPA host-id option; behind a load balancer use "
        "'internal.proxyprotocol' (PROXY protocol, see README)",
    ),
    # -- configuration keywords (those in SUPPORTED below are honoured) ------------
    "srchost:checkreplyauth": Feature(_CONFIG, "Config.srchost"),
    "compatibility:sameport": Feature(_CONFIG, "Config.compatibility"),
    "libwrap": Feature(_CONFIG, "Rule.libwrap"),
    "libwrap.hosts_access": Feature(_CONFIG, "Config.libwrap_hosts_access"),
    "socket options": Feature(_CONFIG, "Config/Rule.socket_options"),
    "log levels": Feature(_CONFIG, "Config/Rule.log_levels"),
    "timeout.tcp_fin_wait": Feature(_CONFIG, "Config/Rule timeouts"),
}

#: Gated features that dantex honours.  Add a key here to switch it on.
SUPPORTED: frozenset[str] = frozenset(
    {
        # authentication (dantex.auth): every method but gssapi/bsdauth
        "method:username",
        "method:rfc931",
        "method:pam.any",
        "method:pam.address",
        "method:pam.username",
        "method:ldapauth",
        "user",
        "group",
        "pam.servicename",
        # the LDAP keywords dantex honours (others stay refused)
        *(
            f"ldap.{prefix}{name}"
            for prefix in ("", "auth.")
            for name in (
                "url server port port.ssl ssl basedn filter certcheck certfile "
                "certpath starttls timeout cache"
            ).split()
        ),
        "ldap.attribute",
        "ldap.group",
        # BIND and UDP ASSOCIATE (dantex/server/bind.py, udp.py)
        "command:bind",
        "command:bindreply",
        "command:udpassociate",
        "command:udpreply",
        "udp.portrange",
        "udp.connectdst",
        # server chaining (dantex/server/route.py)
        "route",
        "route.maxfail",
        "route.badexpire",
        # resource control, part 2 (dantex/limits/redirect.py, monitors.py,
        # timeouts.py): redirect, monitors and alarms, FIN-WAIT limit
        "redirect from",
        "redirect from:route",
        "redirect to",
        "monitor",
        "timeout.tcp_fin_wait",
        # compatibility: sameport (dantex/server/connect.py, bind.py)
        "compatibility:sameport",
        # -- operations (ops-b): HTTP CONNECT on the SOCKS port
        # (dantex/server/httpconnect.py); timeout.shutdown and
        # metrics.internal are dantex keywords, not gated
        "extension:httpconnect",
        # resource control, bandwidth and session limits (dantex/limits/)
        "bandwidth",
        "bandwidth.state.key",
        "session.max",
        "session.throttle",
        "session.state.key",
        "session.state.max",
        "session.state.throttle",
        "session.inheritable",
    }
)


def feature_of(key: str) -> Feature | None:
    """The registry entry for ``key`` (exact, or its ``family.*``)."""
    found = FEATURES.get(key)
    if found is not None:
        return found
    head = key
    while "." in head:
        head = head.rsplit(".", 1)[0]
        found = FEATURES.get(head + ".*")
        if found is not None:
            return found
    return None


def is_supported(key: str, supported: Set[str] | None = None) -> bool:
    """Whether the gated feature ``key`` is switched on."""
    allowed = SUPPORTED if supported is None else supported
    if key in allowed:
        return True
    head = key
    while "." in head:
        head = head.rsplit(".", 1)[0]
        if head + ".*" in allowed:
            return True
    return False


def refusals(
    uses: Iterable[Use], supported: Set[str] | None = None
) -> list[ConfigError]:
    """One error per use of a feature that is not switched on."""
    out: list[ConfigError] = []
    for use in uses:
        if is_supported(use.feature, supported):
            continue
        feature = feature_of(use.feature)
        if feature is not None and feature.message is not None:
            out.append(ConfigError(use.span, feature.message, feature.hint))
        else:
            out.append(ConfigError(use.span, f"{use.label} is not supported yet"))
    return out
