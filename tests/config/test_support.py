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


def test_only_switched_on_features_are_supported() -> None:
    """What is on is authentication (methods, user/group, PAM, honoured LDAP
    keywords); everything else gated stays refused by default."""
    on = support.SUPPORTED & set(support.FEATURES)
    assert on == {
        "method:username",
        "method:rfc931",
        "method:pam.any",
        "method:pam.address",
        "method:pam.username",
        "method:ldapauth",
        "user",
        "group",
        "pam.servicename",
    }
    others = support.SUPPORTED - on
    assert others and all(k.startswith("ldap.") for k in others)
    assert not support.is_supported("ldap.auth.keytab")
    assert not support.is_supported("pam.servicename:socks")


def test_family_keys_cover_their_keywords() -> None:
    """'ldap.*' covers ldap.group and ldap.auth.url; exact keys win."""
    assert support.feature_of("ldap.auth.url") is support.FEATURES["ldap.*"]
    assert support.is_supported("ldap.group", {"ldap.*"})
    assert not support.is_supported("ldap.group", {"bandwidth"})


def test_refusal_names_the_label_at_the_span() -> None:
    """Refused uses read "'<keyword>' is not supported yet" at their span."""
    (err,) = support.refusals([Use("bandwidth", SPAN, "'bandwidth'")])
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
