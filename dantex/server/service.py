"""The long-running service: listeners, the current policy, reload, shutdown."""

from __future__ import annotations

import gc
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

from attrs import frozen
from twisted.application import service
from twisted.cred.checkers import ICredentialsChecker
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger

from dantex import __version__
from dantex._interfaces import IServerReactor
from dantex.config import ConfigErrors, load
from dantex.config.model import Config
from dantex.log.format import dante_addr
from dantex.log.output import DanteLog
from dantex.protocol.address import Address
from dantex.server import sockopts
from dantex.server._metrics import ProcessMetrics
from dantex.server.context import Policy, Runtime
from dantex.server.drain import Drain
from dantex.server.factory import SocksFactory
from dantex.server.lean import LeanPort, listening_socket
from dantex.server.privileges import drop_effective
from dantex.server.rlimits import raise_open_files

__all__ = ["DanteService", "InheritedSocket"]


@frozen
class InheritedSocket:
    """A listening socket handed to a worker: its descriptor and address."""

    fd: int
    family: int
    host: str
    port: int


class DanteService(service.Service):
    """Serves SOCKS on every ``internal:`` address of the configuration.

    :param config_path: the file to re-read on SIGHUP (None: embedded default).
    :param config: the configuration already parsed from it.
    """

    log = Logger()

    def __init__(
        self,
        config_path: str | None,
        config: Config,
        reactor: IServerReactor,
        *,
        relay_mode: str = "auto",
        inherited: Sequence[InheritedSocket] = (),
        announce: bool = True,
        checkers: Sequence[ICredentialsChecker] = (),
    ) -> None:
        self.config_path = config_path
        self.inherited = tuple(inherited)
        self.announce = announce
        self.reactor = reactor
        #: ``--auth`` checkers: they serve the ``username`` method
        self.checkers = tuple(checkers)
        self.runtime = Runtime(reactor, relay_mode=relay_mode)
        self.policy = self._policy(config)
        #: the worker number when run by a supervisor (for the state dump)
        self.worker_index: int | None = None
        self.factory = SocksFactory(self.policy, self.runtime)
        self.ports: list[IListeningPort] = []
        self.metrics: ProcessMetrics | None = None
        if config.metrics is not None:
            self.metrics = ProcessMetrics(self.runtime, config.metrics)
        self._old_hup: Any = None
        self._old_usr1: Any = None

    def _policy(self, config: Config, generation: int = 1) -> Policy:
        log = DanteLog(
            config.logoutput, config.errorlog, self.reactor, debug=config.debug
        )
        auth = self.runtime.authenticator(config, log.warning, self.checkers)
        methods = set(config.socksmethods)
        for rule in config.client_rules:
            methods.update(rule.socksmethods or ())
        auth.prepare(methods)
        return Policy(config, log, generation, auth=auth)

    def privilegedStartService(self) -> None:
        """Bind every listener (before twistd drops privileges)."""
        self._listen()
        super().privilegedStartService()  # type: ignore[no-untyped-call]

    def _listen(self) -> None:
        if self.metrics is not None:
            self.metrics.listen(self.reactor, self.policy.log.info)
        if self.inherited:
            self._adopt()
            return
        dlog = self.policy.log
        for internal in self.policy.config.internals:
            try:
                sock = listening_socket(internal.host, internal.port)
            except OSError as e:
                where = f"{internal.host}.{internal.port}"
                message = f"cannot listen on {where} ({internal.span}): {e.strerror}"
                dlog.error(message)
                dlog.flush()
                print(f"dantex: {message}", file=sys.stderr)
                for p in self.ports:
                    p.stopListening()
                raise SystemExit(1) from None
            self._set_listening_options(sock)
            port = LeanPort(self.reactor, sock, self.factory)
            port.startListening()
            self.ports.append(port)
            actual = int(sock.getsockname()[1])
            self.runtime.listening.add((internal.host, actual))
            bound = Address.from_host(internal.host, actual)
            dlog.info(f"listening on {dante_addr(bound)}")

    def _adopt(self) -> None:
        """Serve listening sockets a supervisor bound for this worker."""
        for inherited in self.inherited:
            sock = socket.socket(inherited.family, socket.SOCK_STREAM, 0, inherited.fd)
            sock.setblocking(False)
            self._set_listening_options(sock)
            port = LeanPort(self.reactor, sock, self.factory)
            port.startListening()
            self.ports.append(port)
            self.runtime.listening.add((inherited.host, inherited.port))

    def _set_listening_options(self, sock: socket.socket) -> None:
        """The global ``internal.*`` socket options, which the connections
        accepted on ``sock`` inherit."""
        policy = self.policy
        sockopts.apply(sock, policy.socket_options("internal"), policy.log.warning)

    def startService(self) -> None:
        """Drop privileges if asked, install signal handlers, announce."""
        if not self.ports:  # runners such as twist skip privilegedStartService
            self._listen()
        raised = raise_open_files()
        if raised is not None:
            self.policy.log.info(
                f"open files limit raised from {raised[0]} to {raised[1]}"
            )
        self._drop_privileges()
        self.runtime.auth_pool.start()
        if self.metrics is not None:
            self.metrics.start(lambda: self.policy)
        self._old_hup = signal.signal(signal.SIGHUP, self._on_sighup)
        # SIGUSR1 dumps state, as in Dante; this replaces twistd's own log
        # rotation on SIGUSR1 (installed only with a log file; see README).
        self._old_usr1 = signal.signal(signal.SIGUSR1, self._on_sigusr1)
        super().startService()  # type: ignore[no-untyped-call]
        self._configure_monitors()
        # Everything made so far (modules, configuration, compiled rules)
        # lives as long as the process: out of the cyclic collector's sight,
        # its full collections stop walking it (setups p99 29.5 -> 13.2 ms
        # with one worker in bench/run.py).  Only here, before any session
        # exists: frozen objects are never collected.
        gc.collect()
        gc.freeze()
        if self.announce:
            self.policy.log.info(f"dantex/server v{__version__} running")
        elif self.worker_index is not None:
            self.policy.log.info(f"worker {self.worker_index} running")

    def _configure_monitors(self) -> None:
        """Serve the ``monitor { }`` blocks of the configuration in force."""
        policy = self.policy
        self.runtime.monitors.configure(
            policy.config.monitors, policy.log.warning, self.runtime.resolver
        )

    def _drop_privileges(self) -> None:
        user = self.policy.config.user_unprivileged
        if drop_effective(user):
            self.policy.log.info(f"running as user {user} (user.unprivileged)")

    def _on_sighup(self, signum: int, frame: FrameType | None) -> None:
        self.reactor.callFromThread(self.reload)

    def _on_sigusr1(self, signum: int, frame: FrameType | None) -> None:
        self.reactor.callFromThread(self.dump_state)

    def dump_state(self) -> None:
        """Log counters and one line per live session (SIGUSR1)."""
        from dantex.log.dump import state_lines

        runtime = self.runtime
        dlog = self.policy.log
        for line in state_lines(
            runtime.sessions,
            now=runtime.clock.seconds(),
            started=runtime.started,
            accepted=runtime.accepted,
            generation=self.policy.generation,
            worker=self.worker_index,
        ):
            dlog.info(line)
        dlog.flush()

    def reload(self) -> bool:
        """Re-read the configuration; keep the old one if the new one is bad.

        :returns: whether the new configuration is now in force.
        """
        old = self.policy
        old.log.info("SIGHUP [: reloading config")
        try:
            config = load(self.config_path)
        except ConfigErrors as e:
            for err in e.errors:
                old.log.error(err.headline())
            old.log.error("config reload failed; keeping the configuration in force")
            return False
        if {(i.host, i.port) for i in config.internals} != {
            (i.host, i.port) for i in old.config.internals
        }:
            old.log.warning("internal: addresses changed; they apply after a restart")
        old.log.reopen()
        self.policy = self._policy(config, old.generation + 1)
        new_log = self.policy.log
        self.factory.policy = self.policy
        for w in config.warnings:
            new_log.warning(w.headline("warning"))
        self._configure_monitors()
        for port in self.ports:  # changed values reach connections to come
            sock = getattr(port, "sock", None)
            if isinstance(sock, socket.socket):
                self._set_listening_options(sock)
        new_log.info("SIGHUP ]: config reloaded")
        return True

    def stopService(self) -> Deferred[None]:
        """Stop listening, let live sessions drain (``timeout.shutdown``),
        close the rest (:mod:`dantex.server.drain`)."""
        if self._old_hup is not None:
            signal.signal(signal.SIGHUP, self._old_hup)
        if self._old_usr1 is not None:
            signal.signal(signal.SIGUSR1, self._old_usr1)
        for port in self.ports:
            port.stopListening()
        self.ports = []
        dlog = self.policy.log
        dlog.info("dantex/server shutting down")
        waiting = Drain(
            self.runtime.sessions,
            self.runtime.clock,
            self.policy.timeouts.shutdown,
            dlog.info,
        )
        d = waiting.done
        if not d.called:  # a second SIGTERM/SIGINT: stop waiting
            hurry = _hurry(self.reactor, waiting)
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, hurry)

        def stopped(_: None) -> None:
            self.runtime.monitors.stop()
            if self.metrics is not None:
                self.metrics.stop()
            if self.runtime.auth_pool.started:
                self.runtime.auth_pool.stop()
            self.policy.log.flush()
            super(DanteService, self).stopService()  # type: ignore[no-untyped-call]

        return d.addCallback(stopped)


def _hurry(reactor: IServerReactor, waiting: Drain) -> Callable[[int, Any], None]:
    def handler(signum: int, frame: Any) -> None:
        reactor.callFromThread(waiting.close_now)

    return handler
