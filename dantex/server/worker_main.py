"""Entry point of one worker process (``python -m dantex.server.worker_main``).

Started by :class:`~dantex.server.workers.SupervisorService`: adopts the
listening sockets passed as file descriptors, serves them with its own
reactor, reloads on SIGHUP and exits on SIGTERM, or when the supervisor
is gone (``--lifeline``: EOF on a pipe the supervisor holds open).
"""

from __future__ import annotations

import argparse
import os
import sys

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run one worker until SIGTERM."""
    import signal

    # Until the service installs its handlers, a reload or dump request from
    # the supervisor must not kill a worker that is still starting (SIGHUP's
    # and SIGUSR1's default action); the file is read after this point anyway.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    parser = argparse.ArgumentParser(prog="dantex-worker")
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--config", default=None)
    parser.add_argument("--relay", default="auto")
    parser.add_argument("--socket", action="append", default=[])
    parser.add_argument("--limits", default=None)
    parser.add_argument("--monitors", default=None)
    parser.add_argument("--lifeline", type=int, default=None)
    args = parser.parse_args(argv)

    from dantex.server.reactor import install

    install()
    from typing import cast

    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner, textFileLogObserver

    from dantex._interfaces import IServerReactor
    from dantex.config import ConfigErrors, load
    from dantex.server.service import DanteService
    from dantex.server.workers import inherited_from_spec

    globalLogBeginner.beginLoggingTo(
        [textFileLogObserver(sys.stderr)], redirectStandardIO=False
    )
    try:
        config = load(args.config)
    except ConfigErrors as e:
        print(e.render(), file=sys.stderr)
        return 1
    from twisted.cred.strcred import makeChecker

    from dantex.server.workers import AUTH_ENV

    specs = [s for s in os.environ.pop(AUTH_ENV, "").split("\n") if s]
    server = DanteService(
        args.config,
        config,
        cast(IServerReactor, reactor),
        relay_mode=args.relay,
        inherited=[inherited_from_spec(s) for s in args.socket],
        announce=False,
        checkers=[makeChecker(s) for s in specs],
    )
    server.worker_index = args.index
    if args.limits is not None:
        from dantex.limits._table import LimitTable

        server.runtime.limit_table = LimitTable.open(args.limits, args.index)
    if args.monitors is not None:
        from dantex.limits._monshare import MonitorShare

        server.runtime.monitors.share = MonitorShare.open(args.monitors, args.index)
    reactor.callWhenRunning(server.startService)
    if args.lifeline is not None:
        from dantex.server._lifeline import Lifeline

        def orphaned() -> None:
            from twisted.internet.error import ReactorNotRunning

            try:
                reactor.stop()
            except ReactorNotRunning:
                return  # stopping already (SIGTERM came first)
            print(
                f"dantex worker {args.index}: the supervisor is gone; stopping",
                file=sys.stderr,
            )

        reactor.addReader(Lifeline(args.lifeline, reactor, orphaned))
    reactor.addSystemEventTrigger("before", "shutdown", server.stopService)
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
