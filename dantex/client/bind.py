"""BIND through a SOCKS 5 (RFC 1928 §4, §6) or SOCKS 4 proxy, as a client API.

The proxy listens for one incoming connection on our behalf: :func:`bind`
fires once the proxy has bound (first reply) with a :class:`PendingBind`
holding the address the peer must connect to, and ``PendingBind.connected``
fires with the :class:`~dantex.client.Tunnel` once the peer has connected
(second reply; ``tunnel.bound`` is the peer's address).  Data then flows
over the same connection to the proxy.

Not implemented: Dante's bind extension (many incoming connections).
"""

from __future__ import annotations

from typing import Any, Literal

from attrs import define, field
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IProtocolFactory,
    IReactorTime,
    IStreamClientEndpoint,
)

from dantex.client._handshake import (
    Handshake,
    Replied,
    Socks4Handshake,
    Socks5Handshake,
    UserPass,
)
from dantex.client._negotiate import Tunnel, negotiate
from dantex.client.endpoints import describe_endpoint
from dantex.protocol.address import Address
from dantex.protocol.socks5 import Command

__all__ = ["PendingBind", "bind"]


@define
class PendingBind:
    """The proxy is listening for the peer.

    :ivar bound: where the peer must connect (the first reply's BND; a
        wildcard such as ``0.0.0.0`` means "the proxy's own address").
    :ivar connected: fires with the :class:`~dantex.client.Tunnel` when the
        peer has connected (``tunnel.bound`` = the peer's address), or fails
        as :func:`bind` lists.
    """

    bound: Address
    connected: Deferred[Tunnel] = field(repr=False)

    def cancel(self) -> None:
        """Stop waiting: the connection to the proxy is aborted."""
        self.connected.cancel()


def bind(
    proxy: IStreamClientEndpoint,
    host: str,
    port: int,
    factory: IProtocolFactory,
    *,
    version: Literal[4, 5] = 5,
    credentials: UserPass | tuple[str, str] | None = None,
    userid: str = "",
    reactor: Any = None,
    connect_timeout: float | None = None,
    negotiate_timeout: float | None = None,
    accept_timeout: float | None = None,
    name: str | None = None,
) -> Deferred[PendingBind]:
    """Ask the proxy to accept one connection from ``host``:``port`` for us.

    :param host: the peer expected to connect (RFC 1928 §4: DST.ADDR of the
        BIND request; servers may check it, Dante ignores the port).
    :param factory: builds the protocol that talks to the peer.
    :param version: 5 (RFC 1929 ``credentials`` allowed) or 4 (``userid``).
    :param accept_timeout: seconds to wait for the peer after the first reply.
    :param reactor: clock for the timeouts.
    :returns: fires with the :class:`PendingBind` after the first reply; it
        and ``PendingBind.connected`` fail as
        :meth:`dantex.client.Socks5ClientEndpoint.connect` lists
        (``ProxyTimeoutError`` with phase ``"accept"`` for ``accept_timeout``).
        Cancelling either aborts the connection to the proxy.
    """
    where = describe_endpoint(proxy)
    desc = name or (f"socks{version} {where}" if where else f"socks{version} proxy")
    target = Address.from_host(host, port)
    handshake: Handshake
    if version == 5:
        if isinstance(credentials, tuple):
            credentials = UserPass(*credentials)
        handshake = Socks5Handshake(
            desc, target, command=Command.BIND, credentials=credentials
        )
    else:
        handshake = Socks4Handshake(
            desc, target, userid=userid.encode("utf-8"), bind=True
        )
    first: Deferred[PendingBind] = Deferred(lambda _d: final.cancel())

    def first_reply(step: Replied) -> None:
        assert step.bound is not None
        first.callback(PendingBind(step.bound, final))

    final = negotiate(
        proxy,
        handshake,
        factory,
        clock=reactor if IReactorTime.providedBy(reactor) else None,
        connect_timeout=connect_timeout,
        negotiate_timeout=negotiate_timeout,
        accept_timeout=accept_timeout,
        on_first_reply=first_reply,
    )

    def failed_early(failure: Any) -> Any:
        if not first.called:
            first.errback(failure)
            return None
        return failure

    final.addErrback(failed_early)
    return first
