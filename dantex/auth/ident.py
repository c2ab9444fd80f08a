"""Ident (RFC 1413) as a credentials checker: Dante's ``rfc931`` method.

:class:`IdentChecker` connects to the identd on the client's host, *from*
the address the client connected to (identd looks the connection up with the
querier's address as the far end, so any other source gets ``NO-USER``),
sends one query for the client's connection and reads one reply line with
:class:`~dantex.protocol.ident.IdentClientCodec`.  A ``USERID`` answer is
the avatar id; ``ERROR`` answers, malformed replies, refused connections and
the timeout are refusals (``UnauthorizedLogin`` naming why).

Our own client: ``twisted.protocols.ident`` does not work on Python 3.
Unlike Dante, the name is not required to exist in the local password
database (it names a user on the *client's* host).
"""

from __future__ import annotations

from typing import Any, cast

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.interfaces import IReactorTCP, IReactorTime
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from dantex.auth._base import AvatarId, IConnectionCredentials
from dantex.protocol._buffer import NEED_DATA
from dantex.protocol.errors import RemoteProtocolError
from dantex.protocol.ident import IDENT_PORT, IdentClientCodec, IdentUserId

__all__ = ["IdentChecker", "IdentQuery"]


class IdentQuery(Protocol):
    """One RFC 1413 query on a fresh connection; fires ``result`` once."""

    def __init__(self, codec: IdentClientCodec) -> None:
        self.codec = codec
        self.result: Deferred[str] = Deferred()

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(self.codec.query())

    def dataReceived(self, data: bytes) -> None:
        if self.result.called:
            return
        self.codec.feed(data)
        try:
            event = self.codec.next_event()
        except RemoteProtocolError as e:
            self._done(Failure(UnauthorizedLogin(f"ident: {e}")))
            return
        if event is NEED_DATA:
            return
        answer = event.result  # type: ignore[union-attr]
        if isinstance(answer, IdentUserId):
            self._done(answer.user_id)
        else:
            self._done(Failure(UnauthorizedLogin(f"ident: {answer.error}")))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        # RFC 1413 §5: closing without a reply means UNKNOWN-ERROR.
        self._done(Failure(UnauthorizedLogin("ident: connection closed, no reply")))

    def _done(self, value: str | Failure) -> None:
        if self.result.called:
            return
        transport = self.transport
        if transport is not None:
            transport.loseConnection()
        if isinstance(value, Failure):
            self.result.errback(value)
        else:
            self.result.callback(value)


@implementer(ICredentialsChecker)
class IdentChecker:
    """``ICredentialsChecker`` for :class:`~dantex.auth._base.IConnectionCredentials`.

    :param reactor: for the TCP connection and the timeout.
    :param port: the identd port (113; tests use another).
    :param timeout: seconds for connect, query and reply together.
    """

    credentialInterfaces = (IConnectionCredentials,)

    def __init__(
        self, reactor: Any, *, port: int = IDENT_PORT, timeout: float = 10.0
    ) -> None:
        self._reactor = reactor
        self.port = port
        self.timeout = timeout

    def requestAvatarId(self, credentials: Any) -> Deferred[AvatarId]:
        return cast("Deferred[AvatarId]", self._request(credentials))

    def _request(self, credentials: Any) -> Deferred[bytes]:
        creds = IConnectionCredentials(credentials)
        tcp: IReactorTCP = self._reactor
        clock: IReactorTime = self._reactor
        try:
            codec = IdentClientCodec(creds.client_port, creds.server_port)
        except Exception:
            d: Deferred[bytes] = Deferred()
            d.errback(UnauthorizedLogin("ident: no usable port pair"))
            return d
        endpoint_type = (
            TCP6ClientEndpoint if ":" in creds.client_host else TCP4ClientEndpoint
        )
        endpoint = endpoint_type(
            tcp,
            creds.client_host,
            self.port,
            timeout=max(1, int(self.timeout)),
            bindAddress=(creds.server_host, 0),
        )
        query = IdentQuery(codec)
        connecting = endpoint.connect(Factory.forProtocol(lambda: query))
        result: Deferred[bytes] = Deferred(lambda _: connecting.cancel())

        def unreachable(f: Failure) -> None:
            if not result.called:
                why = "timed out" if f.check(CancelledError) else f.getErrorMessage()
                result.errback(UnauthorizedLogin(f"ident: cannot reach identd: {why}"))

        connecting.addErrback(unreachable)

        def answered(value: str | Failure) -> None:
            if result.called:
                return
            if isinstance(value, Failure):
                result.errback(value)
            else:
                result.callback(value.encode("utf-8"))

        query.result.addBoth(answered)

        def expire() -> None:
            if not result.called:
                connecting.cancel()
                if query.transport is not None:
                    query.transport.abortConnection()  # type: ignore[attr-defined]
                if not result.called:
                    result.errback(
                        UnauthorizedLogin(f"ident: no answer within {self.timeout:g}s")
                    )

        timer = clock.callLater(self.timeout, expire)

        def stop_timer(value: object) -> object:
            if timer.active():
                timer.cancel()
            return value

        result.addBoth(stop_timer)
        return result
