"""The port index: a filter that never drops a rule whose port test passes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from dantex.config.errors import Span
from dantex.config.model import AddressSpec, AddressSpecKind, PortSpec
from dantex.rules._index import PortIndex, bits

SPAN = Span("t.conf", 1, 1, 1)
OPS = ("eq", "ne", "ge", "le", "gt", "lt", "range")
PORTS = st.integers(min_value=0, max_value=65535)


def spec(port: PortSpec | None) -> AddressSpec:
    return AddressSpec(AddressSpecKind.ANY, SPAN, port=port)


@st.composite
def port_specs(draw: st.DrawFn) -> PortSpec | None:
    if draw(st.booleans()) and draw(st.booleans()):
        return None
    op = draw(st.sampled_from(OPS))
    low = draw(PORTS)
    if op == "range":
        return PortSpec(op, low, draw(st.integers(min_value=low, max_value=65535)))
    return PortSpec(op, low)


def test_port_index_by_operator() -> None:
    """Each operator selects exactly the ports it names; no test means any port."""
    index = PortIndex(
        [
            spec(PortSpec("eq", 25)),
            spec(PortSpec("ne", 25)),
            spec(PortSpec("range", 1000, 2000)),
            spec(None),
            spec(PortSpec("lt", 0)),
        ]
    )
    assert list(bits(index.mask(25))) == [0, 3]
    assert list(bits(index.mask(24))) == [1, 3]
    assert list(bits(index.mask(1000))) == [1, 2, 3]
    assert list(bits(index.mask(2000))) == [1, 2, 3]
    assert list(bits(index.mask(2001))) == [1, 3]
    assert list(bits(index.mask(0))) == [1, 3]
    assert list(bits(index.mask(65535))) == [1, 3]


@settings(max_examples=200, derandomize=True, deadline=None)
@given(st.lists(port_specs(), max_size=12), st.lists(PORTS, max_size=20))
def test_port_index_equals_each_test(
    specs: list[PortSpec | None], ports: list[int]
) -> None:
    """The mask for a port is exactly the rules whose own test passes."""
    index = PortIndex([spec(p) for p in specs])
    edges = [p.low for p in specs if p] + [p.high for p in specs if p]
    for port in ports + edges + [max(e - 1, 0) for e in edges] + [0, 65535]:
        want = {i for i, p in enumerate(specs) if p is None or p.matches(port)}
        assert set(bits(index.mask(port))) == want


def test_an_index_without_tests_has_one_fixed_mask() -> None:
    """Indexes that treat every request alike say so (the matcher then skips
    them); one that tells requests apart has no fixed mask."""
    from ipaddress import ip_network

    from dantex.rules._index import AddressIndex, ValueIndex

    assert PortIndex([spec(None), spec(None)]).fixed == 0b11
    assert PortIndex([spec(None), spec(PortSpec("eq", 25))]).fixed is None
    assert ValueIndex([None, None]).fixed == 0b11
    # a rule allowing no value at all is excluded for every value
    assert ValueIndex([None, ()]).fixed == 0b01
    assert ValueIndex([None, ("connect",)]).fixed is None
    assert AddressIndex([spec(None)]).fixed == 0b1
    net = AddressSpec(AddressSpecKind.NETWORK, SPAN, network=ip_network("10.0.0.0/8"))
    assert AddressIndex([spec(None), net]).fixed is None
