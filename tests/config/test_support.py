"""The one switch for gated features: registry, families, refusal messages."""

from __future__ import annotations

from dantex.config import parse, support
from dantex.config.errors import Span
from dantex.config.model import Use

SPAN = Span("t.conf", 3, 1, 4, "bandwidth: 1")


def test_every_gated_feature_has_an_owner() -> None:
    """Each key says who implements it and where its values are stored."""
    for key, feature in support.FEATURES.items():
        assert feature.owner, key
        assert feature.stored or feature.owner == "never", key


def test_only_known_in_scope_features_are_switched_on() -> None:
    """Every switched-on key is a registered feature (or a keyword of a
    registered family, such as the honoured ldap.* keywords) that dantex can
    provide."""
    for key in support.SUPPORTED:
        feature = support.feature_of(key)
        assert feature is not None, key
        assert feature.owner != "never", key


def test_authentication_is_switched_on_selectively() -> None:
    """Every method but gssapi/bsdauth, user/group, PAM and the honoured LDAP
    keywords are on; AD/Kerberos LDAP keywords and socks-rule PAM names stay
    refused."""
    for key in ("method:username", "method:rfc931", "method:pam.any",
                "method:pam.address", "method:pam.username", "method:ldapauth",
                "user", "group", "pam.servicename", "ldap.auth.url",
                "ldap.group"):  # fmt: skip
        assert support.is_supported(key), key
    assert not support.is_supported("ldap.auth.keytab")
    assert not support.is_supported("ldap.group.hex")
    assert not support.is_supported("pam.servicename:socks")
    assert not support.is_supported("method:gssapi")


def test_family_keys_cover_their_keywords() -> None:
    """'ldap.*' covers ldap.group and ldap.auth.url; exact keys win."""
    assert support.feature_of("ldap.auth.url") is support.FEATURES["ldap.*"]
    assert support.is_supported("ldap.group", {"ldap.*"})
    assert not support.is_supported("ldap.group", {"bandwidth"})


def test_refusal_names_the_label_at_the_span() -> None:
    """Refused uses read "'<keyword>' is not supported yet" at their span."""
    (err,) = support.refusals([Use("bandwidth", SPAN, "'bandwidth'")], set())
    assert err.headline() == "t.conf:3:1: error: 'bandwidth' is not supported yet"
    assert (
        support.refusals([Use("bandwidth", SPAN, "'bandwidth'")], {"bandwidth"}) == []
    )


def test_parse_takes_a_supported_set() -> None:
    """A caller (a test, a feature branch) can switch features on per parse."""
    text = (
        "internal: 127.0.0.1\nsocksmethod: none\n"
        "socks pass { from: 0/0 to: 0/0\n bandwidth: 100\n}\n"
    )
    cfg = parse(text, "t.conf", supported={"bandwidth"})
    assert cfg.socks_rules[0].bandwidth == 100
    assert [u.feature for u in cfg.uses] == ["bandwidth"]
