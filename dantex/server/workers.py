"""Several worker processes: the supervisor side of ``twistd dante --workers N``.

The supervisor (the twistd process) binds one listening socket per
``internal:`` address and every worker accepts from it: whichever worker is
free takes the next connection, so a busy worker is not handed more (with a
``SO_REUSEPORT`` socket per worker, the kernel's hash decides, queues build
up behind a busy worker, and a dead worker's queue waits for its restart;
bench/RESULTS.md: setups p99 11.5 -> 7.9 ms with 2 workers).  Workers are
fresh interpreters (fork + exec, each with its own reactor and epoll) that
adopt the sockets.  The supervisor restarts a worker that dies, forwards
SIGHUP (after checking the new file itself) and, on shutdown, forwards
SIGTERM and waits for every worker to drain its sessions and exit.  A
worker whose supervisor is gone (killed) stops as on SIGTERM: it notices
the end of a pipe only the supervisor held open.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from collections.abc import Sequence
from types import FrameType
from typing import Any

from twisted.application import service
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.error import ProcessDone
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

from dantex import __version__
from dantex._interfaces import IServerReactor
from dantex.config import ConfigErrors, load
from dantex.config.model import Config, InternalAddress
from dantex.limits._shared import SharedLimits
from dantex.log.format import dante_addr
from dantex.log.output import DanteLog
from dantex.protocol.address import Address
from dantex.server.lean import listening_socket
from dantex.server.rlimits import raise_open_files
from dantex.server.service import InheritedSocket

__all__ = ["AUTH_ENV", "SupervisorService", "default_worker_count"]

#: Environment variable carrying ``--auth`` descriptions to workers.
AUTH_ENV = "DANTEX_AUTH_CHECKERS"

#: Seconds before restarting a worker that died; doubles while it keeps dying.
_RESTART_DELAY = 0.5
_RESTART_MAX = 30.0
#: A worker that lived this long resets the back-off.
_HEALTHY_AFTER = 10.0
#: Seconds after ``timeout.shutdown`` before a worker that has not exited is killed.
_KILL_AFTER = 10.0


def default_worker_count() -> int:
    """One worker per CPU this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


class _Worker(ProcessProtocol):
    """One worker process; tells the supervisor when it ends."""

    def __init__(self, supervisor: SupervisorService, index: int) -> None:
        self.supervisor = supervisor
        self.index = index
        self.started = 0.0
        self.pid = 0
        self.ended: Deferred[None] = Deferred()

    def processEnded(self, reason: Failure) -> None:
        metrics_dir = self.supervisor.metrics_dir
        if metrics_dir is not None and self.pid:
            from dantex.metrics.serve import forget_process

            forget_process(metrics_dir, self.pid)
        self.ended.callback(None)
        self.supervisor._worker_ended(self, reason)


class SupervisorService(service.Service):
    """Binds the listeners, runs ``count`` workers, keeps them running."""

    def __init__(
        self,
        config_path: str | None,
        config: Config,
        reactor: IServerReactor,
        *,
        count: int,
        relay_mode: str = "auto",
        auth_specs: Sequence[str] = (),
    ) -> None:
        self.config_path = config_path
        self.config = config
        #: ``--auth`` descriptions, handed to workers in the environment
        #: (not argv: a ``memory:`` checker holds passwords)
        self.auth_specs = tuple(auth_specs)
        self.reactor = reactor
        self.count = count
        self.relay_mode = relay_mode
        self.log = DanteLog(
            config.logoutput, config.errorlog, reactor, debug=config.debug
        )
        #: the listening sockets every worker serves: (socket, host, port)
        self.sockets: list[tuple[socket.socket, str, int]] = []
        self.workers: dict[int, _Worker] = {}
        self.delays = [_RESTART_DELAY] * count
        self.stopping = False
        #: the workers' prometheus_client multiprocess directory (metrics on)
        self.metrics_dir: str | None = None
        self.metrics_port: IListeningPort | None = None
        self._old_hup: Any = None
        self._old_usr1: Any = None
        #: session counters and buckets shared by the workers (dantex.limits);
        #: made when the service starts
        self.limits: SharedLimits | None = None

    # -- start -------------------------------------------------------------

    def privilegedStartService(self) -> None:
        """Bind one socket, shared by the workers, for every internal address."""
        for internal in self.config.internals:
            try:
                sock = listening_socket(internal.host, internal.port)
            except OSError as e:
                where = f"{internal.host}.{internal.port}"
                message = f"cannot listen on {where} ({internal.span}): {e.strerror}"
                self.log.error(message)
                self.log.flush()
                print(f"dantex: {message}", file=sys.stderr)
                raise SystemExit(1) from None
            port = sock.getsockname()[1]
            self.sockets.append((sock, internal.host, port))
            bound = Address.from_host(internal.host, port)
            self.log.info(f"listening on {dante_addr(bound)} ({self.count} workers)")
        if self.config.metrics is not None:
            self._serve_metrics(self.config.metrics)
        super().privilegedStartService()  # type: ignore[no-untyped-call]

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self._old_hup = signal.signal(signal.SIGHUP, self._on_sighup)
        self._old_usr1 = signal.signal(signal.SIGUSR1, self._on_sigusr1)
        self.limits = SharedLimits(self.count)
        raised = raise_open_files()  # the workers inherit it
        if raised is not None:
            self.log.info(f"open files limit raised from {raised[0]} to {raised[1]}")
        for i in range(self.count):
            self._spawn(i)
        self.log.info(f"dantex/server v{__version__} running ({self.count} workers)")

    def _serve_metrics(self, where: InternalAddress) -> None:
        """Serve the sum of the workers' metrics (multiprocess files)."""
        from dantex.metrics.serve import (
            aggregate_registry,
            metrics_site,
            new_multiprocess_dir,
        )
        from dantex.server._metrics import listen_metrics

        self.metrics_dir = new_multiprocess_dir()
        site = metrics_site(aggregate_registry(self.metrics_dir))
        self.metrics_port, line = listen_metrics(self.reactor, where, site)
        self.log.info(f"{line}, summed over {self.count} workers")

    def _spawn(self, index: int) -> None:
        child_fds: dict[int, int | str] = {0: 0, 1: 1, 2: 2}
        specs = []
        for n, (sock, host, port) in enumerate(self.sockets):
            fd = 3 + n
            child_fds[fd] = sock.fileno()
            specs.append(f"{fd},{int(sock.family)},{port},{host}")
        # A pipe only we write to: when this process ends, however it ends,
        # the worker reads EOF on it and stops instead of serving on alone.
        lifeline = 3 + len(self.sockets)
        child_fds[lifeline] = "r"
        args = [
            sys.executable,
            "-m",
            "dantex.server.worker_main",
            "--index",
            str(index),
            "--relay",
            self.relay_mode,
            "--lifeline",
            str(lifeline),
        ]
        if self.config_path is not None:
            args += ["--config", self.config_path]
        if self.limits is not None:
            args += ["--limits", self.limits.path]
            args += ["--monitors", self.limits.monitors_path]
        for spec in specs:
            args += ["--socket", spec]
        worker = _Worker(self, index)
        worker.started = self.reactor.seconds()
        self.workers[index] = worker
        env = os.environ.copy()
        if self.auth_specs:
            env[AUTH_ENV] = "\n".join(self.auth_specs)
        if self.metrics_dir is not None:
            from dantex.metrics import MULTIPROC_ENV

            env[MULTIPROC_ENV] = self.metrics_dir
        process = self.reactor.spawnProcess(
            worker, sys.executable, args, env=env, childFDs=child_fds
        )
        worker.pid = process.pid or 0

    # -- life of workers ---------------------------------------------------------

    def _worker_ended(self, worker: _Worker, reason: Failure) -> None:
        if self.workers.get(worker.index) is worker:
            del self.workers[worker.index]
        if self.limits is not None:
            self.limits.worker_gone(worker.index)
        if self.stopping:
            return
        how = (
            "exited"
            if reason.check(ProcessDone)
            else f"died ({reason.getErrorMessage()})"
        )
        lived = self.reactor.seconds() - worker.started
        if lived >= _HEALTHY_AFTER:
            self.delays[worker.index] = _RESTART_DELAY
        delay = self.delays[worker.index]
        self.delays[worker.index] = min(delay * 2, _RESTART_MAX)
        self.log.warning(f"worker {worker.index} {how}; restarting it in {delay:g}s")
        self.reactor.callLater(delay, self._respawn, worker.index)

    def _respawn(self, index: int) -> None:
        if not self.stopping and index not in self.workers:
            self._spawn(index)

    def _signal_all(self, signum: int) -> None:
        for worker in list(self.workers.values()):
            try:
                worker.transport.signalProcess(signum)  # type: ignore[union-attr]
            except Exception:
                pass

    # -- reload and stop -------------------------------------------------------------

    def _on_sighup(self, signum: int, frame: FrameType | None) -> None:
        self.reactor.callFromThread(self.reload)

    def _on_sigusr1(self, signum: int, frame: FrameType | None) -> None:
        self.reactor.callFromThread(self.dump_state)

    def _on_second_term(self, signum: int, frame: FrameType | None) -> None:
        self.reactor.callFromThread(self._signal_all, signal.SIGTERM)

    def dump_state(self) -> None:
        """Log the workers, then have each dump its own sessions (SIGUSR1)."""
        pids = " ".join(
            f"{i}:{w.transport.pid}"
            for i, w in sorted(self.workers.items())
            if w.transport is not None
        )
        self.log.info(f"info dump: supervisor pid {os.getpid()}, workers {pids}")
        self.log.flush()
        self._signal_all(signal.SIGUSR1)

    def reload(self) -> bool:
        """Check the file; if good, have every worker reload it."""
        self.log.info("SIGHUP [: reloading config")
        try:
            config = load(self.config_path)
        except ConfigErrors as e:
            for err in e.errors:
                self.log.error(err.headline())
            self.log.error("config reload failed; keeping the configuration in force")
            return False
        self.config = config
        self.log.reopen()
        self._signal_all(signal.SIGHUP)
        self.log.info(
            "SIGHUP ]: config reloaded.  Broadcasting to workers to do the same"
        )
        return True

    def stopService(self) -> Deferred[Any]:
        self.stopping = True
        if self._old_hup is not None:
            signal.signal(signal.SIGHUP, self._old_hup)
        if self._old_usr1 is not None:
            signal.signal(signal.SIGUSR1, self._old_usr1)
        waits = [w.ended for w in self.workers.values()]
        # Our copies of the listening sockets go first: once the workers
        # stop listening, new connections are refused instead of queued.
        for sock, _host, _port in self.sockets:
            sock.close()
        self._signal_all(signal.SIGTERM)
        # a second SIGTERM/SIGINT is passed on: the workers stop waiting
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_second_term)
        # workers drain for timeout.shutdown; one that is still there long
        # after is killed
        grace = self.config.timeouts.shutdown + _KILL_AFTER
        killer = self.reactor.callLater(grace, self._signal_all, signal.SIGKILL)
        self.log.info("dantex/server shutting down")
        self.log.flush()
        super().stopService()  # type: ignore[no-untyped-call]
        done: Deferred[Any] = DeferredList(waits)

        def stopped(result: object) -> object:
            if killer.active():
                killer.cancel()
            if self.limits is not None:
                self.limits.close()
                self.limits = None
            if self.metrics_port is not None:
                self.metrics_port.stopListening()
            if self.metrics_dir is not None:
                from dantex.metrics.serve import remove_multiprocess_dir

                remove_multiprocess_dir(self.metrics_dir)
            self.log.info("every worker has exited")
            self.log.flush()
            return result

        return done.addBoth(stopped)


def inherited_from_spec(spec: str) -> InheritedSocket:
    """Parse ``fd,family,port,host`` as passed on a worker's command line."""
    fd, family, port, host = spec.split(",", 3)
    return InheritedSocket(int(fd), int(family), host, int(port))
