"""Run a :mod:`~dantex.client._handshake` over a connection from an inner endpoint.

One :class:`_Attempt` per ``connect()``: it connects the inner endpoint (the
way to the proxy), speaks the handshake on the resulting transport, and then
hands the transport to the application's protocol.  :class:`_Negotiator` is
the protocol the inner endpoint connects; after the handshake it forwards
every event to the application's protocol (one Python call per chunk per hop).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from attrs import frozen
from twisted.internet.address import HostnameAddress
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import NoProtocol
from twisted.internet.interfaces import (
    IDelayedCall,
    IHalfCloseableProtocol,
    IProtocol,
    IProtocolFactory,
    IReactorTime,
    IStreamClientEndpoint,
    ITransport,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from dantex.client._handshake import Handshake, Replied
from dantex.client.errors import (
    ProxyClosedError,
    ProxyConnectError,
    ProxyError,
    ProxyTimeoutError,
)
from dantex.protocol.address import Address
from dantex.protocol.http_connect import HttpResponse

__all__ = ["Tunnel", "negotiate"]


@frozen
class Tunnel:
    """An established connection through a proxy hop.

    :ivar protocol: the application's protocol, already connected.
    :ivar transport: the transport the handshake ran on: the connection to
        the first hop (TCP, or TLS when the hop is reached over TLS).  Its
        ``getHandle()`` is the socket when no TLS is involved.
    :ivar proxy: the hop's description (as in errors).
    :ivar target: what the hop was asked to reach.
    :ivar bound: the SOCKS reply's BND.ADDR/BND.PORT (``None`` for HTTP).
    :ivar response: the HTTP 2xx response head (HTTP CONNECT only).
    :ivar leftover: bytes that followed the proxy's reply; they were handed
        to ``protocol.dataReceived`` right after the Deferred fired.
    """

    protocol: IProtocol
    transport: ITransport
    proxy: str
    target: Address
    bound: Address | None
    response: HttpResponse | None
    leftover: bytes


@implementer(IHalfCloseableProtocol)
class _Negotiator(Protocol):
    """Speaks the handshake, then forwards everything to the application.

    It always provides ``IHalfCloseableProtocol`` (the inner endpoint's
    wrapper decides once, at construction, before the application's protocol
    exists); when the application's protocol does not, a read EOF closes the
    connection after pending writes, as Twisted would.
    """

    def __init__(self, attempt: _Attempt) -> None:
        self._attempt = attempt
        self.app: IProtocol | None = None

    def connectionMade(self) -> None:
        self._attempt.transport_made(self)

    def dataReceived(self, data: bytes) -> None:
        app = self.app
        if app is not None:
            app.dataReceived(data)
        else:
            self._attempt.data(data)

    def readConnectionLost(self) -> None:
        app = self.app
        if app is None:
            self._attempt.lost(None)
            return
        half = IHalfCloseableProtocol(app, None)
        if half is not None:
            half.readConnectionLost()
        elif self.transport is not None:
            self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        half = IHalfCloseableProtocol(self.app, None)
        if half is not None:
            half.writeConnectionLost()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.app is not None:
            self.app.connectionLost(reason)
        else:
            self._attempt.lost(reason)


class _NegotiatorFactory(Factory):
    noisy = False  # no "Starting factory" line per connection

    def __init__(self, attempt: _Attempt) -> None:
        self._attempt = attempt

    def buildProtocol(self, addr: Any) -> _Negotiator:
        return _Negotiator(self._attempt)


class _Attempt:
    """One connect through one hop; ``result`` fires with a :class:`Tunnel`."""

    def __init__(
        self,
        handshake: Handshake,
        factory: IProtocolFactory,
        clock: IReactorTime | None,
        connect_timeout: float | None,
        negotiate_timeout: float | None,
        on_first_reply: Callable[[Replied], None] | None,
        accept_timeout: float | None = None,
    ) -> None:
        self._handshake = handshake
        self._accept_timeout = accept_timeout
        self._factory = factory
        self._clock = clock
        self._negotiate_timeout = negotiate_timeout
        self._on_first_reply = on_first_reply
        self._negotiator: _Negotiator | None = None
        self._done = False
        self._timer: IDelayedCall | None = None
        self._timed_out: ProxyTimeoutError | None = None
        self.result: Deferred[Tunnel] = Deferred(self._cancel)
        self._inner: Deferred[Any] | None = None
        if connect_timeout is not None:
            self._timer = _require(clock).callLater(
                connect_timeout, self._connect_timed_out, connect_timeout
            )

    def start(self, proxy: IStreamClientEndpoint) -> None:
        inner: Deferred[Any] = proxy.connect(_NegotiatorFactory(self))
        if not inner.called:
            self._inner = inner
        inner.addCallbacks(self._inner_connected, self._inner_failed)

    # -- reaching the proxy ---------------------------------------------------

    def _inner_connected(self, protocol: Any) -> None:
        self._inner = None

    def _inner_failed(self, failure: Failure) -> None:
        self._inner = None
        if self._done:
            return
        error: BaseException
        if self._timed_out is not None:
            error = self._timed_out
        elif isinstance(failure.value, ProxyError | CancelledError | ValueError):
            error = failure.value  # an inner hop's own error: it names that hop
        else:
            reason = failure.value or Exception("unknown failure")
            error = ProxyConnectError(reason, proxy=self._handshake.proxy)
        self._finish(Failure(error))

    def _connect_timed_out(self, seconds: float) -> None:
        self._timer = None
        self._timed_out = ProxyTimeoutError(
            "connect", seconds, proxy=self._handshake.proxy
        )
        if self._inner is not None:
            self._inner.cancel()
        elif not self._done:  # an inner endpoint that cannot be cancelled
            self._finish(Failure(self._timed_out))

    # -- the handshake --------------------------------------------------------

    def transport_made(self, negotiator: _Negotiator) -> None:
        self._negotiator = negotiator
        transport = negotiator.transport
        assert transport is not None
        if self._done:
            _abort(transport)
            return
        self._cancel_timer()
        if self._negotiate_timeout is not None:
            self._timer = _require(self._clock).callLater(
                self._negotiate_timeout,
                self._negotiate_timed_out,
                "negotiate",
                self._negotiate_timeout,
            )
        transport.write(self._handshake.start())

    def data(self, data: bytes) -> None:
        if self._done:
            return
        try:
            out, steps = self._handshake.feed(data)
        except ProxyError as e:
            self._finish(Failure(e))
            return
        negotiator = self._negotiator
        assert negotiator is not None and negotiator.transport is not None
        if out:
            negotiator.transport.write(out)
        for step in steps:
            if step.final:
                self._established(negotiator, step)
                return
            self._cancel_timer()
            if self._accept_timeout is not None:
                self._timer = _require(self._clock).callLater(
                    self._accept_timeout,
                    self._negotiate_timed_out,
                    "accept",
                    self._accept_timeout,
                )
            if self._on_first_reply is not None:
                self._on_first_reply(step)
            if self._done:  # the callback cancelled us
                return

    def lost(self, reason: Failure | None) -> None:
        if self._done:
            return
        text = "connection closed before the proxy answered"
        if reason is not None and not reason.check(CancelledError):
            text = f"connection lost before the proxy answered: {reason.value}"
        error = ProxyClosedError(
            text, proxy=self._handshake.proxy, target=self._handshake.target
        )
        self._finish(Failure(error))

    def _negotiate_timed_out(self, phase: str, seconds: float) -> None:
        self._timer = None
        error = ProxyTimeoutError(
            phase,
            seconds,
            proxy=self._handshake.proxy,
            target=self._handshake.target,
        )
        self._finish(Failure(error))

    def _established(self, negotiator: _Negotiator, step: Replied) -> None:
        transport = negotiator.transport
        assert transport is not None
        target = self._handshake.target
        self._cancel_timer()
        self._done = True
        addr = HostnameAddress(target.host.encode("utf-8"), target.port)
        app = self._factory.buildProtocol(addr)
        if app is None:
            _abort(transport)
            self.result.errback(Failure(NoProtocol()))
            return
        leftover = self._handshake.leftover()
        negotiator.app = app
        app.makeConnection(transport)
        tunnel = Tunnel(
            protocol=app,
            transport=transport,
            proxy=self._handshake.proxy,
            target=target,
            bound=step.bound,
            response=step.response,
            leftover=leftover,
        )
        self.result.callback(tunnel)
        if leftover and negotiator.connected:
            negotiator.dataReceived(leftover)

    # -- endings --------------------------------------------------------------

    def _finish(self, failure: Failure) -> None:
        self._done = True
        self._cancel_timer()
        if self._negotiator is not None and self._negotiator.transport is not None:
            _abort(self._negotiator.transport)
        self.result.errback(failure)

    def _cancel(self, d: Deferred[Tunnel]) -> None:
        """``result.cancel()``: stop at whatever stage, close what is open."""
        if self._done:
            return
        self._done = True
        self._cancel_timer()
        if self._inner is not None:
            inner, self._inner = self._inner, None
            inner.cancel()
        if self._negotiator is not None and self._negotiator.transport is not None:
            _abort(self._negotiator.transport)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None


def _require(clock: IReactorTime | None) -> IReactorTime:
    if clock is None:
        raise ValueError("a timeout needs a reactor (pass reactor=...)")
    return clock


def _abort(transport: ITransport) -> None:
    abort = getattr(transport, "abortConnection", None)
    if abort is not None:
        abort()
    else:
        transport.loseConnection()


def negotiate(
    proxy: IStreamClientEndpoint,
    handshake: Handshake,
    factory: IProtocolFactory,
    *,
    clock: IReactorTime | None = None,
    connect_timeout: float | None = None,
    negotiate_timeout: float | None = None,
    on_first_reply: Callable[[Replied], None] | None = None,
    accept_timeout: float | None = None,
) -> Deferred[Tunnel]:
    """Connect ``proxy``, run ``handshake``, connect ``factory``'s protocol.

    :param on_first_reply: called with BIND's first reply (the bound address).
    :param accept_timeout: seconds from BIND's first reply to its second.
    :returns: fires with the :class:`Tunnel`; fails as
        :meth:`dantex.client.endpoints.Socks5ClientEndpoint.connect` lists.
    """
    attempt = _Attempt(
        handshake,
        factory,
        clock,
        connect_timeout,
        negotiate_timeout,
        on_first_reply,
        accept_timeout,
    )
    attempt.start(proxy)
    return attempt.result
