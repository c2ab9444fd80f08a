"""Run a codec vector three ways: whole, one byte at a time, with trailing bytes.

The idea is h11's ``tr()`` helper: a sans-IO codec must give the same events
whatever the segmentation of its input, and must hand back bytes that follow
a complete message untouched through ``leftover()``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Final, Literal, Protocol, TypeVar

import pytest
from hypothesis import settings

from dantex.protocol import NEED_DATA, ProtocolError

__all__ = [
    "BOUNDED",
    "MODES",
    "SPLIT_MODES",
    "TRAILER",
    "Codec",
    "Mode",
    "chunks",
    "expected_leftover",
    "feed",
    "feed_error",
    "prefixes_then_whole",
]

Mode = Literal["whole", "bytewise", "trailing"]
#: Parametrize a test over the three ways of feeding a vector.
MODES: Final[tuple[Mode, ...]] = ("whole", "bytewise", "trailing")
#: For vectors that are incomplete on purpose (over a size cap): trailing
#: bytes would only make them longer, or complete them.
SPLIT_MODES: Final[tuple[Mode, ...]] = ("whole", "bytewise")
#: Bytes appended in "trailing" mode; they must come back from ``leftover()``.
TRAILER: Final = b"\x00\xfftrailing bytes\r\n"

#: Hypothesis settings for every property test: bounded and reproducible.
BOUNDED: Final = settings(max_examples=200, derandomize=True, deadline=None)

E = TypeVar("E", bound=ProtocolError)
T = TypeVar("T")


class Codec(Protocol):
    """The sans-IO surface shared by every codec in :mod:`dantex.protocol`."""

    def feed(self, data: bytes) -> None: ...

    def next_event(self) -> object: ...

    def leftover(self) -> bytes: ...


def chunks(data: bytes, mode: Mode) -> Iterator[bytes]:
    """``data`` cut up as ``mode`` says (the trailer added in "trailing")."""
    if mode == "trailing":
        data += TRAILER
    if mode == "bytewise":
        yield from (data[i : i + 1] for i in range(len(data)))
    else:
        yield data


def expected_leftover(mode: Mode) -> bytes:
    """What ``leftover()`` must return after a complete vector fed in ``mode``."""
    return TRAILER if mode == "trailing" else b""


def feed(codec: Codec, data: bytes, mode: Mode) -> list[object]:
    """Feed ``data`` in ``mode``, draining events after every chunk."""
    events: list[object] = []
    for chunk in chunks(data, mode):
        codec.feed(chunk)
        while (event := codec.next_event()) is not NEED_DATA:
            events.append(event)
    return events


def feed_error(codec: Codec, data: bytes, mode: Mode, error: type[E]) -> E:
    """Feed ``data`` in ``mode`` and return the ``error`` it must raise."""
    with pytest.raises(error) as info:
        feed(codec, data, mode)
    return info.value


def prefixes_then_whole(
    parse: Callable[[bytes], T | None], data: bytes, mode: Mode
) -> T:
    """Run a buffer-parsing function (``parse(buf) -> result | None``) in ``mode``.

    "bytewise" checks that every proper prefix is reported incomplete (None)
    first; "trailing" parses ``data`` with the trailer after it.
    """
    if mode == "bytewise":
        for i in range(len(data)):
            assert parse(data[:i]) is None, f"complete after {i} bytes"
    if mode == "trailing":
        data += TRAILER
    result = parse(data)
    assert result is not None
    return result
