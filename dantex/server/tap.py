"""``twistd dante``: command-line options and the service maker."""

from __future__ import annotations

import sys
from typing import cast

from twisted.application import service
from twisted.cred import strcred
from twisted.cred.credentials import IUsernamePassword
from twisted.python import usage

from dantex._interfaces import IServerReactor
from dantex.config import DEFAULT_CONFIG_NAME, ConfigErrors, load
from dantex.config.model import Config

__all__ = ["Options", "makeService"]


class Options(usage.Options, strcred.AuthOptionMixin):
    """Options of ``twistd dante``."""

    supportedInterfaces = (IUsernamePassword,)

    synopsis = "[-c sockd.conf] [--check] [--workers N|auto] [--relay MODE]"
    longdesc = (
        "A SOCKS v4/v4a/v5 server that reads Dante's configuration language "
        "(sockd.conf / danted.conf). Without -c it serves an embedded safe "
        "default: 127.0.0.1 port 1080, loopback clients only, no "
        "authentication. SIGHUP reloads the file (a bad file keeps the "
        "configuration in force) and reopens log files; SIGUSR1 logs "
        "counters and one line per live session (it replaces twistd's "
        "SIGUSR1 log rotation). SIGTERM stops accepting, lets live sessions "
        "finish for timeout.shutdown seconds, then closes them and exits. "
        "Keywords of features not implemented yet "
        "are refused with \"'<keyword>' is not supported yet\"."
    )
    optFlags = [
        [
            "check",
            None,
            "Check the configuration, print every problem and exit "
            "(0 = ok, 1 = errors); binds nothing.",
        ],
    ]
    optParameters = [
        [
            "config",
            "c",
            None,
            "Dante configuration file to serve (sockd.conf / danted.conf).",
        ],
        [
            "workers",
            None,
            "auto",
            "Worker processes: a number, or auto (one per CPU); "
            "1 serves in the twistd process itself.",
        ],
        [
            "relay",
            None,
            "auto",
            "How bytes are relayed: auto (splice(2) on Linux), splice, "
            "or copy (Twisted transports).",
        ],
    ]

    def opt_auth(self, description: str) -> None:
        super().opt_auth(description)  # type: ignore[no-untyped-call]
        self.setdefault("auth_specs", []).append(description)

    opt_auth.__doc__ = (
        "A twisted.cred checker for the 'username' method, e.g. "
        "file:/etc/dantex/users or unix (see --help-auth). It takes the place "
        "of username.passwordfile and system accounts; repeat it to try "
        "several in order. pam.*, ldapauth and rfc931 keep their backends."
    )

    def opt_f(self, path: str) -> None:
        """Same as --config (Dante's sockd -f)."""
        self["config"] = path

    def postOptions(self) -> None:
        if self["relay"] not in ("auto", "splice", "copy"):
            raise usage.UsageError("--relay must be auto, splice or copy")
        if self["workers"] == "auto":
            from dantex.server.workers import default_worker_count

            self["workers"] = default_worker_count()
        else:
            try:
                self["workers"] = int(self["workers"])
            except ValueError:
                raise usage.UsageError("--workers must be a number or auto") from None
            if not 1 <= self["workers"] <= 256:
                raise usage.UsageError("--workers must be between 1 and 256")
        name = self["config"] or DEFAULT_CONFIG_NAME
        try:
            config = load(self["config"])
        except ConfigErrors as e:
            for w in e.warnings:
                print(w.render("warning"), file=sys.stderr)
            print(e.render(), file=sys.stderr)
            raise SystemExit(1) from None
        for w in config.warnings:
            print(w.render("warning"), file=sys.stderr)
        if self["check"]:
            print(f"{name}: configuration OK")
            raise SystemExit(0)
        self.parsed: Config = config
        _install_reactor()


def _install_reactor() -> None:
    """Use dantex's epoll reactor unless one was chosen (``twistd -r``) already."""
    if "twisted.internet.reactor" in sys.modules:
        return
    try:
        from dantex.server.reactor import install
    except ImportError:  # no epoll on this platform: Twisted's default
        return
    install()


def makeService(options: Options) -> service.IService:
    """Build the service (listeners bind in ``privilegedStartService``)."""
    from twisted.internet import reactor

    from dantex.server.service import DanteService

    root = service.MultiService()
    server: service.Service
    if options["workers"] > 1:
        from dantex.server.workers import SupervisorService

        server = SupervisorService(
            options["config"],
            options.parsed,
            cast(IServerReactor, reactor),
            count=options["workers"],
            relay_mode=options["relay"],
            auth_specs=options.get("auth_specs", ()),
        )
    else:
        server = DanteService(
            options["config"],
            options.parsed,
            cast(IServerReactor, reactor),
            relay_mode=options["relay"],
            checkers=options.get("credCheckers", ()),
        )
    server.setServiceParent(root)  # type: ignore[no-untyped-call]
    return root
