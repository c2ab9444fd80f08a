"""A bounded receive buffer and the ``NEED_DATA`` sentinel shared by the codecs."""

from __future__ import annotations

from typing import Final, final

from dantex.protocol.errors import RemoteProtocolError

__all__ = ["NEED_DATA", "ReceiveBuffer"]

#: RFC 1928 §6 "general SOCKS server failure", the default error reply.
_GENERAL_FAILURE = 0x01


@final
class _NeedData:
    """Type of :data:`NEED_DATA`."""

    _instance: _NeedData | None = None

    def __new__(cls) -> _NeedData:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NEED_DATA"


#: Returned by ``next_event()`` when more bytes must be fed first.
NEED_DATA: Final = _NeedData()


class ReceiveBuffer:
    """Bytes received but not yet consumed, with a hard upper bound.

    :param max_size: feeding more than this many unconsumed bytes raises
        :class:`RemoteProtocolError` (a peer cannot make us buffer without bound).
    """

    def __init__(self, max_size: int) -> None:
        self._data = bytearray()
        self._max = max_size

    def feed(self, data: bytes, *, bounded: bool = True) -> None:
        """Append ``data``; raise if the buffer would exceed its bound.

        :param bounded: ``False`` for bytes that belong to the stream after the
            handshake (the caller pauses reading, so at most one read arrives).
        """
        if bounded and len(self._data) + len(data) > self._max:
            raise RemoteProtocolError(
                f"peer sent more than {self._max} bytes before we could answer"
            )
        self._data += data

    def enforce_bound(self, *, reply: int | None = _GENERAL_FAILURE) -> None:
        """Raise if more than ``max_size`` bytes are still unconsumed.

        Codecs call this when they return :data:`NEED_DATA`, so only an
        *incomplete* message is bounded (h11's rule): bytes a peer pipelines
        after a complete message are kept, whatever their size.

        :param reply: the ``reply`` of the error (``None`` where no RFC 1928
            §6 reply fits the phase, e.g. before method selection).
        """
        if len(self._data) > self._max:
            raise RemoteProtocolError(
                f"peer sent more than {self._max} bytes before we could answer",
                reply=reply,
            )

    def __len__(self) -> int:
        return len(self._data)

    def peek(self) -> bytes:
        """All buffered bytes, without consuming them."""
        return bytes(self._data)

    def view(self) -> memoryview:
        """A read-only view of the buffer; release it before the next feed/consume."""
        return memoryview(self._data).toreadonly()

    def consume(self, n: int) -> bytes:
        """Remove and return the first ``n`` bytes."""
        out = bytes(self._data[:n])
        del self._data[:n]
        return out

    def take_all(self) -> bytes:
        """Remove and return everything buffered."""
        out = bytes(self._data)
        self._data.clear()
        return out
