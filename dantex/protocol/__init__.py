"""Sans-IO codecs for the protocols dantex speaks.  Stdlib only: no Twisted.

Implemented:

- :mod:`~dantex.protocol.socks4`: SOCKS 4/4A, server and client codecs.
- :mod:`~dantex.protocol.socks5`: SOCKS 5 (RFC 1928, without GSS-API),
  server and client codecs, the §7 UDP header.
- :mod:`~dantex.protocol.userpass`: RFC 1929 username/password.
- :mod:`~dantex.protocol.http_connect`: HTTP CONNECT (RFC 9110 §9.3.6,
  RFC 9112 syntax): ``encode_connect_request``, ``HttpConnectClientCodec``,
  ``HttpConnectServerCodec``, Basic credentials (RFC 7617).
- :mod:`~dantex.protocol.ident`: RFC 1413 ident queries: ``encode_query``,
  ``parse_response``, ``IdentClientCodec``.

Not implemented: GSS-API (RFC 1961), HTTP methods other than CONNECT,
HTTP/2 extended CONNECT, the identd (answering) side of RFC 1413.
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
