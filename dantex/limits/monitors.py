"""Dante's monitors (§1.7): data and disconnect alarms over matching sessions.

A ``monitor { from: .. to: .. }`` block watches the sessions it matches
(the first matching monitor owns a session) and raises its alarms:

* **data** ``[internal.|external.][alarm.data[.recv|.send]]: BYTES in SECONDS``
  -- at the end of every period of SECONDS, if no more than BYTES moved
  (on that side, in that direction; all four counters without side and
  direction) the alarm is raised and logged with ``[``; it stays raised
  until a period moves more, then the clear is logged with ``]`` and the
  alarm's duration.  Periods run from start-up, with or without sessions.
* **disconnect** ``[internal.|external.]alarm.disconnect: MIN/RATIO [in S]``
  -- at the end of every period of S seconds (default 5), with D the
  sessions closed by that side's peer (internal: the client, external: the
  target; timeouts are ours, not the peer's) and E the sessions that ended,
  the alarm is logged when ``D >= MIN`` and ``D * RATIO >= E`` (at least
  one ended session in RATIO was closed by the peer).  This reading of
  MIN/RATIO is dantex's: danted's manual does not spell it out.

The log lines are danted's, at level warning (each on one line)::

    monitor(1): alarm/data [: 0/0 -> 0/0 internal.recv: 0/0 in 2s.
      Session count: 0
    monitor(1): alarm/data ]: 0/0 -> 0/0 internal.recv: 5/0 in 2s.
      Session count: 0.  Alarm duration: 4s
    monitor(1): alarm/disconnect ]: 0/0 -> 0/0 external: 3/3 disconnects
      during last 5s.  Session count: 0

Bytes are sampled from the relays' own counters when a period ends (no
work per relayed chunk).  A reload (SIGHUP) replaces the monitors and drops
raised alarms silently, as danted does.  With ``--workers N`` every worker
publishes its monitors' counters twice a second in a shared table
(:mod:`dantex.limits._monshare`) and worker 0 raises the alarms over the
sum.  Watched: CONNECT; BIND once its peer has connected (``command: bind``
or ``bindreply``); UDP ASSOCIATE from the first of its destinations a
monitor takes, as ``to:`` (``protocol: udp``, ``command: udpassociate`` or
``udpreply``; each new destination is tried until one matches).  Not
implemented: ``alarm.test.*`` (refused at start-up).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from dantex.config.model import Alarm, Monitor
from dantex.limits._monshare import SLOTS, MonitorShare, Snapshot, digest_of
from dantex.protocol.address import Address
from dantex.rules.addresses import Answers, Matcher, NeedLookup, compile_address

__all__ = ["Counted", "Member", "MonitorSet"]

#: indices into a relay's counts(): (read from client, written to client,
#: read from target, written to target)
_INDICES = {
    ("internal", "recv"): (0,),
    ("internal", "send"): (1,),
    ("external", "recv"): (2,),
    ("external", "send"): (3,),
    ("internal", None): (0, 1),
    ("external", None): (2, 3),
    (None, "recv"): (0, 2),
    (None, "send"): (1, 3),
    (None, None): (0, 1, 2, 3),
}

#: the commands of a UDP association (matched by ``protocol: udp``)
_UDP_COMMANDS = frozenset({"udpassociate", "udpreply"})

Warn = Callable[[str], None]
#: seconds between two publications of a worker's counters (--workers N)
PUBLISH_EVERY = 0.5


class Counted(Protocol):
    """What a monitor samples: a relay's byte counters."""

    def counts(self) -> tuple[int, int, int, int]: ...


class Member:
    """A session watched by a monitor; tell it when the session ends."""

    __slots__ = ("_monitor", "relay")

    def __init__(self, monitor: _Running, relay: Counted) -> None:
        self._monitor = monitor
        self.relay = relay

    def ended(self, closed_by: str) -> None:
        """The session ended; ``closed_by`` is ``client``, ``target`` or
        anything else for our own close (timeouts, errors of ours)."""
        self._monitor.ended(self, closed_by)


def _label(side: str | None, direction: str | None) -> str:
    if side is None and direction is None:
        return "internal/external"
    return ".".join(x for x in (side, direction) if x)


class _Running:
    """One monitor block at work: its sessions, counters and alarm timers."""

    def __init__(
        self,
        monitor: Monitor,
        clock: IReactorTime,
        warn: Warn,
        answers: Answers,
        shared: tuple[MonitorShare, int, int] | None = None,
        alarms: bool = True,
    ) -> None:
        self.monitor = monitor
        self.clock = clock
        self.warn = warn
        self._src: Matcher = compile_address(monitor.src)
        self._dst: Matcher = compile_address(monitor.dst)
        self._answers = answers
        #: (table, digest of the monitor set, this monitor's slot) with workers
        self.shared = shared
        self.live: set[Member] = set()
        #: bytes of sessions that have ended, per counter
        self.ended_bytes = [0, 0, 0, 0]
        #: sessions ended so far, and how many of them each peer closed
        self.ended_count = 0
        self.closed_by = {"client": 0, "target": 0}
        self.where = f"{monitor.src} -> {monitor.dst}"
        self.alarms: list[_DataAlarm | _DisconnectAlarm] = []
        for alarm in monitor.alarms if alarms else ():
            if alarm.kind == "data":
                self.alarms.append(_DataAlarm(self, alarm))
            elif alarm.kind == "disconnect":
                self.alarms.append(_DisconnectAlarm(self, alarm))

    def matches(self, client: Address, target: Address, command: str) -> bool:
        mon = self.monitor
        udp = command in _UDP_COMMANDS
        if mon.protocols is not None and ("udp" if udp else "tcp") not in mon.protocols:
            return False
        commands = mon.commands
        if (
            commands is not None
            and command not in commands
            # a BIND session's relayed connection is its bindreply, and a UDP
            # association relays the replies (udpreply) with the requests
            and not (command == "bind" and "bindreply" in commands)
            and not (udp and "udpreply" in commands)
        ):
            return False
        try:
            return (
                self._src(client, self._answers) is not None
                and self._dst(target, self._answers) is not None
            )
        except NeedLookup:  # monitors never wait for DNS
            return False

    def snapshot(self) -> Snapshot:
        """This process's sessions so far: bytes per counter (ended and
        alive sessions), sessions alive, ended, closed by client, by target."""
        out = list(self.ended_bytes)
        for member in self.live:
            for i, n in enumerate(member.relay.counts()):
                out[i] += n
        closed = self.closed_by
        return (
            out[0],
            out[1],
            out[2],
            out[3],
            len(self.live),
            self.ended_count,
            closed["client"],
            closed["target"],
        )

    def rows(self) -> list[Snapshot]:
        """:meth:`snapshot`, then each other worker's (``--workers N``)."""
        own = self.snapshot()
        if self.shared is None:
            return [own]
        share, digest, slot = self.shared
        return [own, *share.rows(digest, slot)]

    def publish(self) -> None:
        """Write this process's counters into the shared table."""
        if self.shared is not None:
            share, digest, slot = self.shared
            share.publish(digest, slot, self.snapshot())

    def ended(self, member: Member, closed_by: str) -> None:
        if member not in self.live:
            return
        self.live.discard(member)
        for i, n in enumerate(member.relay.counts()):
            self.ended_bytes[i] += n
        self.ended_count += 1
        if closed_by in self.closed_by:
            self.closed_by[closed_by] += 1

    def log(self, kind: str, mark: str, text: str) -> None:
        number = self.monitor.number
        self.warn(f"monitor({number}): alarm/{kind} {mark}: {self.where} {text}")

    def stop(self) -> None:
        for alarm in self.alarms:
            alarm.stop()


class _Periodic:
    """An alarm checked at the end of every period."""

    def __init__(self, running: _Running, alarm: Alarm) -> None:
        self.running = running
        self.alarm = alarm
        self.call: IDelayedCall | None = None
        self.started = running.clock.seconds()
        self._schedule()

    def _schedule(self) -> None:
        self.call = self.running.clock.callLater(self.alarm.seconds, self._tick)

    def _tick(self) -> None:
        self.check()
        self._schedule()

    def check(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        if self.call is not None and self.call.active():
            self.call.cancel()
        self.call = None


class _DataAlarm(_Periodic):
    def __init__(self, running: _Running, alarm: Alarm) -> None:
        self.indices = _INDICES[(alarm.side, alarm.direction)]
        self.label = _label(alarm.side, alarm.direction)
        self.base = running.rows()
        self.raised_at: float | None = None
        super().__init__(running, alarm)

    def check(self) -> None:
        running, alarm = self.running, self.alarm
        now = running.rows()
        moved = _grown(now, self.base, self.indices)
        self.base = now
        text = (
            f"{self.label}: {moved}/{alarm.limit} in {alarm.seconds:g}s.  "
            f"Session count: {_alive(now)}"
        )
        if moved <= alarm.limit:
            if self.raised_at is None:
                self.raised_at = running.clock.seconds()
                running.log("data", "[", text)
        elif self.raised_at is not None:
            duration = int(running.clock.seconds() - self.raised_at)
            self.raised_at = None
            running.log("data", "]", f"{text}.  Alarm duration: {duration}s")


class _DisconnectAlarm(_Periodic):
    def __init__(self, running: _Running, alarm: Alarm) -> None:
        sides = ("internal", "external") if alarm.side is None else (alarm.side,)
        self.peers = {"client" if s == "internal" else "target" for s in sides}
        self.label = alarm.side or "internal/external"
        #: the counters at the last check, per worker
        self.base = running.rows()
        super().__init__(running, alarm)

    def check(self) -> None:
        running, alarm = self.running, self.alarm
        now = running.rows()
        ended = _grown(now, self.base, (5,))
        closed = (_grown(now, self.base, (6,)) if "client" in self.peers else 0) + (
            _grown(now, self.base, (7,)) if "target" in self.peers else 0
        )
        self.base = now
        ratio = alarm.ratio or 1
        if closed and closed >= alarm.limit and closed * ratio >= ended:
            running.log(
                "disconnect",
                "]",
                f"{self.label}: {closed}/{ended} disconnects during last "
                f"{alarm.seconds:g}s.  Session count: {_alive(now)}",
            )


def _grown(
    now: Sequence[Snapshot], before: Sequence[Snapshot], indices: Sequence[int]
) -> int:
    """How much the counters ``indices`` grew, summed over the workers' rows.

    A counter below its last value started over (that worker reloaded or
    was restarted): all of it is new.
    """
    total = 0
    for row, old in zip(now, before, strict=True):
        for i in indices:
            total += row[i] - old[i] if row[i] >= old[i] else row[i]
    return total


def _alive(rows: Sequence[Snapshot]) -> int:
    return sum(row[4] for row in rows)


class MonitorSet:
    """The monitors of the configuration in force.

    :param clock: drives every alarm period.
    """

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._running: list[_Running] = []
        #: the table shared with the other workers (``--workers N``)
        self.share: MonitorShare | None = None
        self._publishing: IDelayedCall | None = None

    def configure(
        self, monitors: Sequence[Monitor], warn: Warn, answers: Answers
    ) -> None:
        """Serve ``monitors`` from now on; the previous ones stop (their
        raised alarms are dropped without a line, their sessions untracked).

        With a shared table, worker 0 raises the alarms over every worker's
        counters and the others publish theirs.
        """
        self.stop()
        share = self.share
        if share is None:
            self._running = [_Running(m, self._clock, warn, answers) for m in monitors]
            return
        digest = digest_of(monitors)
        raises = share.worker == 0
        self._running = [
            _Running(
                m,
                self._clock,
                warn,
                answers,
                (share, digest, slot) if slot < SLOTS else None,
                raises or slot >= SLOTS,  # past the table: each on its own
            )
            for slot, m in enumerate(monitors)
        ]
        if self._running and not raises:
            self._publish()

    def _publish(self) -> None:
        for running in self._running:
            running.publish()
        self._publishing = self._clock.callLater(PUBLISH_EVERY, self._publish)

    def attach(
        self, client: Address, target: Address, command: str, relay: Counted
    ) -> Member | None:
        """Watch a session under the first monitor that matches it."""
        for running in self._running:
            if running.matches(client, target, command):
                member = Member(running, relay)
                running.live.add(member)
                return member
        return None

    def stop(self) -> None:
        """Stop every alarm timer."""
        for running in self._running:
            running.stop()
        self._running = []
        if self._publishing is not None:
            if self._publishing.active():
                self._publishing.cancel()
            self._publishing = None
