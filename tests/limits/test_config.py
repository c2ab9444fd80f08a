"""The resource-control keywords as the configuration accepts or refuses them."""

from __future__ import annotations

import pytest

from dantex.config import ConfigErrors, parse
from dantex.config.model import SessionLimits

BASE = "internal: 127.0.0.1 port = 1080\nsocksmethod: none\n"


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigErrors) as info:
        parse(BASE + text, "t.conf")
    return [e.headline() for e in info.value.errors]


def test_limits_are_switched_on() -> None:
    """bandwidth, session.* and dantex's bandwidth.state.key parse and are kept."""
    cfg = parse(
        BASE + "client pass { from: 0/0 to: 0/0 session.max: 9 "
        "session.inheritable: no }\n"
        "socks pass { from: 0/0 to: 0/0 bandwidth: 1000 bandwidth.state.key: user\n"
        " session.throttle: 5/1 session.state.key: user session.state.max: 2\n"
        " session.state.throttle: 1/1 }\n",
        "t.conf",
    )
    client, socks = cfg.client_rules[0], cfg.socks_rules[0]
    assert client.session == SessionLimits(max=9, inheritable=False)
    assert (socks.bandwidth, socks.bandwidth_key) == (1000, "user")
    assert socks.session == SessionLimits(
        throttle=(5, 1), state_key="user", state_max=2, state_throttle=(1, 1)
    )


def test_hostid_key_is_refused_on_linux() -> None:
    """session.state.key: hostid is refused at its value with the reason."""
    (err,) = errors_of("socks pass { from: 0/0 to: 0/0\n session.state.key: hostid }\n")
    assert err.startswith("t.conf:4:21: error: session.state.key: hostid is not")


@pytest.mark.parametrize(
    "body",
    [
        "session.state.key: user",
        "bandwidth: 10 bandwidth.state.key: user",
    ],
)
def test_user_key_only_in_socks_rules(body: str) -> None:
    """The user is not known when client-rules are evaluated."""
    (err,) = errors_of(f"client pass {{ from: 0/0 to: 0/0\n {body} }}\n")
    assert "is for socks-rules" in err


def test_bad_key_values() -> None:
    """Unknown keys name the allowed values."""
    (err,) = errors_of("socks pass { from: 0/0 to: 0/0\n bandwidth.state.key: to }\n")
    assert "bandwidth.state.key must be from or user" in err
    (err,) = errors_of("socks pass { from: 0/0 to: 0/0\n session.state.key: to }\n")
    assert "session.state.key must be from, hostid or user" in err


def test_hostindex_stays_refused() -> None:
    """session.state.key.hostindex is meaningless without host ids."""
    errs = errors_of(
        "socks pass { from: 0/0 to: 0/0\n session.state.key: from\n"
        " session.state.key.hostindex: 1 }\n"
    )
    assert any("'session.state.key.hostindex' is not supported yet" in e for e in errs)


def test_bandwidth_key_needs_a_bandwidth() -> None:
    """bandwidth.state.key alone would do nothing: refused."""
    (err,) = errors_of("socks pass { from: 0/0 to: 0/0\n bandwidth.state.key: from }\n")
    assert "'bandwidth.state.key' needs 'bandwidth:'" in err
