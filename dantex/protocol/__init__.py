"""Sans-IO codecs for the protocols dantex speaks.  Stdlib only: no Twisted.

Implemented: SOCKS 4/4A, SOCKS 5 (RFC 1928, without GSS-API), RFC 1929.
"""

from dantex.protocol._buffer import NEED_DATA, ReceiveBuffer
from dantex.protocol.address import UNSPECIFIED, Address, AddressType, decode_address
from dantex.protocol.errors import (
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
)

__all__ = [
    "NEED_DATA",
    "UNSPECIFIED",
    "Address",
    "AddressType",
    "LocalProtocolError",
    "ProtocolError",
    "ReceiveBuffer",
    "RemoteProtocolError",
    "decode_address",
]
