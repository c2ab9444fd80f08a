"""No input makes the parser raise anything but ConfigErrors (property-based)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dantex.config import ConfigErrors, parse, support
from dantex.config.keywords import KNOWN_GLOBAL, KNOWN_RULE

# Words from the language (no host names that would need DNS), numbers,
# punctuation and odd bytes, joined by spaces and newlines.
_WORDS = [
    *sorted(KNOWN_GLOBAL | KNOWN_RULE),
    "client", "socks", "hostid", "route", "monitor", "pass", "block", "redirect",
    "{", "}", ":", "=", "!=", "<", ">=", "-", "port", "in", "0/0", "10.0.0.0/8",
    "::1/128", "127.0.0.1", "lo", ".", ".example", "1-1024", "0x1f", "65536",
    "none", "username", "connect", "bind", "tcp", "udp", "socks_v5", "stderr",
    "syslog/local1", "yes", "no", "direct", "1/2", "alarm.data", "#", "\t",
    "ldap://x/", "internal.tcp.tcp_nodelay", "external.log.info.error",
    "\x00", "é", "\\", "0/33", "256.1.1.1/8", "fe80::1%lo/64", "port=80",
]  # fmt: skip
_TOKEN = st.one_of(
    st.sampled_from(_WORDS),
    st.sampled_from(_WORDS).map(lambda w: w + ":"),
    st.integers(-5, 70000).map(str),
    st.text(st.characters(codec="utf-8"), max_size=6),
)
_LINE = st.lists(_TOKEN, max_size=8).map(" ".join)
_FILE = st.lists(_LINE, max_size=12).map("\n".join)


@settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(_FILE)
def test_parser_raises_only_config_errors(text: str) -> None:
    """Arbitrary token soup parses or fails with ConfigErrors, nothing else."""
    for supported in (None, frozenset(support.FEATURES)):
        try:
            parse(text, "fuzz.conf", supported=supported)
        except ConfigErrors as e:
            for err in e.errors:
                assert err.span.path == "fuzz.conf"
                str(err)  # renders without raising


@settings(max_examples=150, deadline=None, derandomize=True)
@given(st.text(max_size=200))
def test_parser_survives_arbitrary_text(text: str) -> None:
    """Any text at all: parsed or ConfigErrors."""
    try:
        parse(text, "fuzz.conf")
    except ConfigErrors:
        pass
