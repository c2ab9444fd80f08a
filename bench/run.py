#!/usr/bin/env python3
"""The measuring stick: dantex against danted, microsocks and direct loopback.

    python3 bench/run.py                       # every scenario, ~6 minutes
    python3 bench/run.py --quick               # the same, small counts, < 1 minute
    python3 bench/run.py --scenarios setups,rtt --rounds 5 --markdown out.md
    python3 bench/run.py --scenarios rules     # 0 vs 1000 filler rules
    python3 bench/run.py --systems dantex --dantex-dir /work/main,/work/wt-x

Builds ``bench/loadgen.c`` and ``bench/targets.c`` with gcc into
``bench/build/`` (when the sources are newer), starts the targets (echo and a
verifying sink), the proxies under test (dantex once per ``--dantex-workers``
entry, danted, microsocks when installed) and runs every scenario against
all of them in the same run, rotating the order of the systems from round
to round.  The tables give medians over the rounds and ratios to danted and
to direct; see bench/README.md for what each scenario measures.

Not a test: a tool.  Stops the processes it started, by PID.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import random
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
SCENARIOS = ("bulk", "setups", "rtt", "idle", "realistic", "rules", "micro")
DEFAULT_SCENARIOS = ("bulk", "setups", "rtt", "idle", "realistic", "rules")

#: the account danted checks for ``socksmethod: username`` (system users)
BENCH_USER = "dantexbench"
BENCH_PASSWORD = "bench-pw-1929"

Result = dict[str, Any]


# -- building -------------------------------------------------------------------


def build(build_dir: Path) -> tuple[Path, Path]:
    """Compile loadgen and targets when a source is newer than the binary."""
    build_dir.mkdir(parents=True, exist_ok=True)
    out = []
    header = BENCH / "common.h"
    for name, extra in (("loadgen", []), ("targets", ["-pthread"])):
        source = BENCH / f"{name}.c"
        binary = build_dir / name
        newest = max(source.stat().st_mtime, header.stat().st_mtime)
        if not binary.exists() or binary.stat().st_mtime < newest:
            gcc = shutil.which("gcc") or shutil.which("cc")
            if gcc is None:
                raise SystemExit("run.py: gcc is needed to build the load generator")
            cmd = [gcc, "-O2", "-Wall", "-o", str(binary), str(source), *extra]
            subprocess.run(cmd, check=True)
        out.append(binary)
    return out[0], out[1]


# -- processes ------------------------------------------------------------------


@dataclass
class Proc:
    """A process this run started (stopped by PID)."""

    name: str
    popen: subprocess.Popen[bytes]
    dir: Path
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, n: int = 3000) -> str:
        text = ""
        for path in sorted(self.dir.glob("*.log")) + sorted(self.dir.glob("*.out")):
            text += f"--- {path.name}\n" + path.read_text(errors="replace")[-n:]
        return text

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)


def spare_port() -> int:
    """A free port below the ephemeral range (no clash with outgoing connects)."""
    low = 32768
    with contextlib.suppress(OSError, ValueError):
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(200):
        port = random.randrange(20000, max(20001, low))
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


def accepts(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        try:
            s.connect(("127.0.0.1", port))
        except OSError:
            return False
        return True


def wait_until(
    what: str, proc: Proc, ready: Callable[[], bool], timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited while starting\n{proc.log_tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{proc.name}: not {what} in {timeout}s\n{proc.log_tail()}"
            )
        time.sleep(0.05)


def tree_pids(pid: int) -> list[int]:
    """``pid`` and all its descendants (from the parent links in /proc/*/stat)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out = []
    todo = [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def tree_memory(pid: int) -> tuple[int, int, int]:
    """(VmRSS KiB, Pss KiB, process count) summed over ``pid`` and its descendants.

    RSS counts pages shared between forked processes once per process; PSS
    divides them among the sharers, so its sum is the real footprint.
    """
    rss = pss = n = 0
    for p in tree_pids(pid):
        try:
            status = Path(f"/proc/{p}/status").read_text()
            m = re.search(r"^VmRSS:\s+(\d+)", status, re.M)
            rss += int(m.group(1)) if m else 0
            rollup = Path(f"/proc/{p}/smaps_rollup").read_text()
            m = re.search(r"^Pss:\s+(\d+)", rollup, re.M)
            pss += int(m.group(1)) if m else 0
            n += 1
        except OSError:
            continue
    return rss, pss, n


_TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu(pid: int) -> tuple[float, float]:
    """CPU seconds (user, system) used by ``pid``'s tree, including the
    children it has reaped."""
    user = system = 0
    for p in tree_pids(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        user += int(fields[11]) + int(fields[13])  # utime cutime
        system += int(fields[12]) + int(fields[14])  # stime cstime
    return user / _TICK, system / _TICK


# -- configurations ---------------------------------------------------------------


def filler_rules(n: int, shape: str = "net") -> str:
    """``n`` client and ``n`` socks block rules that never match a benchmark client.

    ``net``: client rules block 10.x.y.0/24 sources, socks rules block
    10.x.y.0/24 destinations on one port each (as bench/rules_bench.py); an
    engine that indexes networks skips them all.  ``port``: every rule names
    ``0.0.0.0/0`` and a port in 1..1000 (below the ephemeral range, so
    neither the client's source port nor the target's port is ever one of
    them): nothing to index on the address, each rule must be looked at.
    Either way every request must rule all of them out before it reaches
    the pass rules.
    """
    out = []
    for i in range(n):
        net = f"10.{(i >> 8) & 255}.{i & 255}.0/24"
        port = 1 + i % 1000
        if shape == "port":
            out.append(
                f"client block {{\n  from: 0.0.0.0/0 port = {port} to: 0.0.0.0/0\n}}\n"
            )
        else:
            out.append(f"client block {{\n  from: {net} to: 0.0.0.0/0\n}}\n")
    for i in range(n):
        net = f"10.{(i >> 8) & 255}.{i & 255}.0/24"
        port = 1 + i % 1000
        dest = "0.0.0.0/0" if shape == "port" else net
        out.append(f"socks block {{\n  from: 0.0.0.0/0 to: {dest} port = {port}\n}}\n")
    return "".join(out)


def rules_text(n: int, logging: bool, shape: str = "net") -> str:
    log = "  log: connect disconnect error\n" if logging else ""
    return (
        filler_rules(n, shape)
        + f"client pass {{\n  from: 127.0.0.0/8 to: 0.0.0.0/0\n{log}}}\n"
        + f"socks pass {{\n  from: 127.0.0.0/8 to: 0.0.0.0/0\n{log}}}\n"
    )


@dataclass(frozen=True)
class Flavour:
    """What a proxy is configured with."""

    rules: int = 0
    shape: str = "net"  # of the filler rules: see filler_rules()
    auth: bool = False  # RFC 1929 username/password
    logging: bool = False  # connect/disconnect lines


@dataclass
class System:
    """One system under test: ``port`` 0 is direct (no proxy)."""

    name: str
    kind: str
    port: int = 0
    proc: Proc | None = None
    auth: str | None = None  # "user:password" for the load generator
    #: starts another instance configured alike (the caller stops it)
    spawn: Callable[[], System] | None = field(default=None, repr=False)


def nice_fn(nice: int | None) -> Callable[[], None] | None:
    if nice is None:
        return None
    value = nice

    def apply() -> None:
        os.setpriority(os.PRIO_PROCESS, 0, value)

    return apply


def ensure_bench_user() -> None:
    """The system account danted's ``username`` method checks (SHA-512 crypt).

    Retried for a few seconds: useradd/chpasswd fail while another job holds
    the lock on the account files.
    """
    error = ""
    for _ in range(30):
        exists = subprocess.run(["id", BENCH_USER], capture_output=True, check=False)
        if exists.returncode:
            subprocess.run(
                ["useradd", "-M", "-s", "/usr/sbin/nologin", BENCH_USER],
                capture_output=True,
                check=False,
            )
        done = subprocess.run(
            ["chpasswd", "-c", "SHA512"],
            input=f"{BENCH_USER}:{BENCH_PASSWORD}\n".encode(),
            capture_output=True,
            check=False,
        )
        if done.returncode == 0:
            return
        error = done.stderr.decode(errors="replace").strip()
        time.sleep(0.2)
    raise RuntimeError(f"cannot set up the system account {BENCH_USER}: {error}")


def sha512_crypt(password: str) -> str:
    out = subprocess.run(
        ["openssl", "passwd", "-6", "-stdin"],
        input=password.encode(),
        capture_output=True,
        check=True,
    )
    return out.stdout.decode().strip()


def start_dantex(
    a: argparse.Namespace,
    workers: int,
    flavour: Flavour,
    tmp: Path,
    name: str,
    checkout: Path,
) -> System:
    d = Path(tempfile.mkdtemp(prefix="dantex-", dir=tmp))
    log = d / "dantex.log"
    head = f"logoutput: {log}\ninternal: 127.0.0.1 port = 0\nexternal: 127.0.0.1\n"
    if flavour.auth:
        (d / "passwd").write_text(f"{BENCH_USER}:{sha512_crypt(BENCH_PASSWORD)}\n")
        head += f"socksmethod: username\nusername.passwordfile: {d / 'passwd'}\n"
    else:
        head += "socksmethod: none\n"
    (d / "sockd.conf").write_text(
        head + rules_text(flavour.rules, flavour.logging, flavour.shape)
    )
    if a.dantex_cmd:
        cmd = shlex.split(a.dantex_cmd)
    else:
        twistd = shutil.which("twistd", path=os.path.dirname(sys.executable))
        twistd = twistd or shutil.which("twistd")
        if twistd is None:
            raise SystemExit("run.py: twistd not found (pip install twisted)")
        cmd = [sys.executable, twistd, "-n", "--pidfile=", "dante"]
    cmd += ["-c", str(d / "sockd.conf"), "--workers", str(workers)]
    env = dict(os.environ)
    env["PYTHONPATH"] = str(checkout) + os.pathsep + env.get("PYTHONPATH", "")
    with open(d / "twistd.out", "wb") as out:
        popen = subprocess.Popen(
            cmd, cwd=d, env=env, stdout=out, stderr=subprocess.STDOUT,
            preexec_fn=nice_fn(a.nice),
        )  # fmt: skip
    proc = Proc(name, popen, d, log)
    port = 0

    def ready() -> bool:
        nonlocal port
        text = log.read_text(errors="replace") if log.exists() else ""
        m = re.search(r"listening on 127\.0\.0\.1\.(\d+)", text)
        if not m or "running" not in text:
            return False
        if workers > 1 and len(re.findall(r"worker \d+ running", text)) < workers:
            return False
        port = int(m.group(1))
        return True

    wait_until("listening", proc, ready, 60)
    auth = f"{BENCH_USER}:{BENCH_PASSWORD}" if flavour.auth else None
    return System(name, "dantex", port, proc, auth)


def start_danted(
    a: argparse.Namespace, flavour: Flavour, tmp: Path, name: str
) -> System:
    danted = shutil.which("danted")
    if danted is None:
        raise SystemExit(
            "run.py: danted is not installed (apt-get install dante-server)"
        )
    if flavour.auth:
        ensure_bench_user()
    for _attempt in range(3):
        d = Path(tempfile.mkdtemp(prefix="danted-", dir=tmp))
        port = spare_port()
        conf = (
            f"logoutput: {d / 'danted.log'}\n"
            f"internal: 127.0.0.1 port = {port}\nexternal: 127.0.0.1\n"
            f"socksmethod: {'username' if flavour.auth else 'none'}\n"
            "clientmethod: none\nuser.privileged: root\nuser.unprivileged: nobody\n"
            + rules_text(flavour.rules, flavour.logging, flavour.shape)
        )
        (d / "danted.conf").write_text(conf)
        with open(d / "danted.out", "wb") as out:
            popen = subprocess.Popen(
                [danted, "-f", str(d / "danted.conf"), "-p", str(d / "danted.pid")],
                cwd=d, stdout=out, stderr=subprocess.STDOUT,
                preexec_fn=nice_fn(a.nice),
            )  # fmt: skip
        proc = Proc(name, popen, d, d / "danted.log")
        try:
            wait_until("listening", proc, lambda p=port: accepts(p), 30)  # type: ignore[misc]
        except RuntimeError:
            proc.stop()
            if _attempt == 2:
                raise
            continue
        auth = f"{BENCH_USER}:{BENCH_PASSWORD}" if flavour.auth else None
        return System(name, "danted", port, proc, auth)
    raise AssertionError("unreachable")


def start_microsocks(a: argparse.Namespace, tmp: Path) -> System:
    binary = shutil.which("microsocks")
    assert binary is not None
    for _attempt in range(3):
        d = Path(tempfile.mkdtemp(prefix="microsocks-", dir=tmp))
        port = spare_port()
        with open(d / "microsocks.out", "wb") as out:
            popen = subprocess.Popen(
                [binary, "-i", "127.0.0.1", "-p", str(port)],
                cwd=d, stdout=out, stderr=subprocess.STDOUT,
                preexec_fn=nice_fn(a.nice),
            )  # fmt: skip
        proc = Proc("microsocks", popen, d, d / "microsocks.out")
        try:
            wait_until("listening", proc, lambda p=port: accepts(p), 30)  # type: ignore[misc]
        except RuntimeError:
            proc.stop()
            if _attempt == 2:
                raise
            continue
        return System("microsocks", "microsocks", port, proc)
    raise AssertionError("unreachable")


# -- the load generator -------------------------------------------------------------


@dataclass
class Bench:
    """What every measurement needs: binaries, targets, options."""

    loadgen: Path
    echo: int
    sink: int
    a: argparse.Namespace
    #: the echo server and sink process (its CPU says when it is the bottleneck)
    targets_pid: int = 0
    log: list[str] = field(default_factory=list)
    #: the measurement being run (names the --py-spy files)
    current: str = ""
    #: (measurement, system) -> raw py-spy files of its rounds
    profiles: dict[tuple[str, str], list[Path]] = field(default_factory=dict)

    @contextlib.contextmanager
    def profiled(self, system: System) -> Iterator[None]:
        """Sample dantex with py-spy while the body runs (``--py-spy DIR``)."""
        if not self.a.py_spy or system.kind != "dantex" or system.proc is None:
            yield
            return
        key = (self.current, system.name)
        files = self.profiles.setdefault(key, [])
        self.a.py_spy.mkdir(parents=True, exist_ok=True)
        out = self.a.py_spy / f"{self.current}-{system.name}-{len(files)}.raw"
        pid = str(system.proc.pid)
        options = ["--subprocesses", "--nonblocking", "-r", "250", "-f", "raw"]
        spy = subprocess.Popen(
            ["py-spy", "record", "-p", pid, *options, "-o", str(out)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.5)  # attaching takes a moment
        try:
            yield
        finally:
            spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            try:
                spy.wait(30)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait(10)
            if out.exists():
                files.append(out)

    def run(
        self,
        system: System,
        mode: str,
        *args: str,
        label: str = "",
        to_sink: bool = False,
    ) -> Result:
        """One loadgen run against ``system``: its JSON result, with CPU figures.

        The target is the echo server, or the sink when ``to_sink``.
        """
        cmd = [str(self.loadgen), mode, "--proxy", str(system.port)]
        cmd += ["--target", str(self.sink if to_sink else self.echo)]
        if system.auth:
            cmd += ["--auth", system.auth]
        with self.profiled(system) if not label else contextlib.nullcontext():
            proxy0 = tree_cpu(system.proc.pid) if system.proc else (0.0, 0.0)
            targets0 = sum(tree_cpu(self.targets_pid)) if self.targets_pid else 0.0
            usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            wall0 = time.monotonic()
            out = subprocess.run(
                cmd + list(args), capture_output=True, check=False, timeout=600
            )
            wall = time.monotonic() - wall0
            usage1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            targets1 = sum(tree_cpu(self.targets_pid)) if self.targets_pid else 0.0
            proxy1 = tree_cpu(system.proc.pid) if system.proc else (0.0, 0.0)
        proxy_user = proxy1[0] - proxy0[0]
        proxy_cpu = proxy_user + proxy1[1] - proxy0[1]
        result = self._parse(
            out.stdout.decode(), out.stderr.decode(), system, label or mode
        )
        client_cpu = (usage1.ru_utime - usage0.ru_utime) + (
            usage1.ru_stime - usage0.ru_stime
        )
        result["client_cpu_s"] = client_cpu
        if "cpu_s" in result and float(result.get("seconds", 0)) > 0:
            # the load generator's own CPU in its timed window
            result["client_cpu_pct"] = 100 * result["cpu_s"] / float(result["seconds"])
        if self.targets_pid and wall > 0:
            # the echo server/sink over the whole run (set-up included): near
            # 100 (one thread) means the target, not the proxy, set the pace
            result["targets_cpu_pct"] = 100 * (targets1 - targets0) / wall
        if system.proc is None:
            return result  # direct: no proxy CPU to report
        result["proxy_cpu_s"] = proxy_cpu
        if proxy_cpu > 0:  # the share spent in the process itself, not the kernel
            result["proxy_user_pct"] = 100 * proxy_user / proxy_cpu
        ok = max(1, int(result.get("ok", 0)))
        if mode == "bulk":  # CPU seconds per GB (of one direction)
            if result.get("bytes"):
                result["proxy_cpu_per_op"] = proxy_cpu / (result["bytes"] / 1e9)
        elif mode == "setups" or mode == "rtt":  # CPU µs per setup
            result["proxy_cpu_per_op"] = proxy_cpu * 1e6 / ok
        return result

    def note(self, system: System, label: str, stderr: str) -> None:
        for line in stderr.strip().splitlines():
            self.log.append(f"{system.name} ({label}): {line}")

    def _parse(self, stdout: str, stderr: str, system: System, label: str) -> Result:
        self.note(system, label, stderr)
        lines = [ln for ln in stdout.splitlines() if ln.startswith("{")]
        if not lines:
            raise RuntimeError(f"loadgen printed nothing: {stderr}")
        result: Result = json.loads(lines[-1])
        return result

    def idle(self, system: System, conns: int) -> Result:
        """Open ``conns`` tunnels, measure the proxy tree, check every tunnel."""
        assert system.proc is not None
        before = tree_memory(system.proc.pid)
        cmd = [str(self.loadgen), "idle", "--proxy", str(system.port)]
        cmd += ["--target", str(self.echo), "--conns", str(conns)]
        if system.auth:
            cmd += ["--auth", system.auth]
        with subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        ) as p:
            assert p.stdin is not None and p.stdout is not None and p.stderr is not None
            ready = json.loads(p.stdout.readline() or "{}")
            time.sleep(0.5)  # let the proxy finish its bookkeeping
            after = tree_memory(system.proc.pid)
            p.stdin.write(b"check\n")
            p.stdin.flush()
            checked = json.loads(p.stdout.readline() or "{}")
            stderr = p.stderr.read().decode()
            p.wait(60)
        self.note(system, "idle", stderr)
        opened = int(ready.get("opened", 0))
        result = dict(checked)
        result["errors"] = int(ready.get("errors", 0)) + int(checked.get("errors", 0))
        result["corrupt"] = int(ready.get("corrupt", 0)) + int(
            checked.get("corrupt", 0)
        )
        result["opened"] = opened
        result["open_seconds"] = ready.get("seconds", 0)
        result["rss_kib_per_conn"] = (after[0] - before[0]) / max(1, opened)
        result["pss_kib_per_conn"] = (after[1] - before[1]) / max(1, opened)
        result["rss_base_mib"] = before[0] / 1024
        result["processes"] = after[2]
        # every tunnel must still work: a check that failed is an integrity failure
        if int(checked.get("ok", 0)) != opened or opened != conns:
            result["corrupt"] = int(result["corrupt"]) + (
                conns - int(checked.get("ok", 0))
            )
        return result


# -- scenarios -----------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    fmt: str = "{:.0f}"


@dataclass
class Measurement:
    """One line of tables: a name, how to run it on a system, its columns.

    The first column is the one the ratios are taken on.
    """

    name: str
    title: str
    run: Callable[[System], Result]
    columns: list[Column]
    systems: list[System]
    lower_is_better: bool = False
    results: dict[str, list[Result]] = field(default_factory=dict)


def measurements(
    scenario: str, bench: Bench, systems: list[System], extra: dict[str, list[System]]
) -> list[Measurement]:
    a = bench.a
    secs = str(a.seconds)
    if scenario == "bulk":
        out = []
        for mode, n in ((m, n) for m in a.bulk_modes for n in a.streams):
            per_stream = max(1, a.bulk_mib * (1 << 20) // n)
            echo = mode == "echo"

            def run(
                s: System, n: int = n, b: int = per_stream, e: bool = echo
            ) -> Result:
                args = ["--streams", str(n), "--bytes", str(b), "--echo", str(int(e))]
                return bench.run(s, "bulk", *args, to_sink=not e)

            what = "upload" if mode == "up" else "echo (both directions at once)"
            out.append(
                Measurement(
                    f"bulk-{n}" if mode == "up" else f"bulk-echo-{n}",
                    f"bulk {what}, {n} stream{'s' if n > 1 else ''} "
                    f"({a.bulk_mib} MiB in all per run"
                    + (", MB/s of one direction" if echo else "")
                    + ")",
                    run,
                    [
                        Column("mbps", "MB/s"),
                        Column("proxy_cpu_per_op", "proxy CPU s/GB", "{:.2f}"),
                        Column("client_cpu_pct", "loadgen CPU %"),
                        Column("targets_cpu_pct", "sink/echo CPU %"),
                    ],
                    systems,
                )
            )
        return out
    if scenario == "setups":
        return [
            Measurement(
                "setups",
                f"connection setups, {a.concurrency} concurrent clients"
                + (f", {a.rules} filler rules ({a.rule_shape})" if a.rules else ""),
                lambda s: bench.run(
                    s, "setups", "--concurrency", str(a.concurrency), "--duration", secs
                ),
                [
                    Column("rate", "setups/s"),
                    Column("p50_us", "p50 µs"),
                    Column("p99_us", "p99 µs"),
                    Column("proxy_cpu_per_op", "proxy CPU µs/setup"),
                    Column("proxy_user_pct", "of it user %", "{:.0f}"),
                    Column("client_cpu_pct", "loadgen CPU %"),
                    Column("targets_cpu_pct", "sink/echo CPU %"),
                ],
                systems,
            )
        ]
    if scenario == "rtt":
        return [
            Measurement(
                "rtt",
                f"64-byte round trip on a held connection ({a.rtt_count} per run)",
                lambda s: bench.run(s, "rtt", "--count", str(a.rtt_count)),
                [
                    Column("p50_us", "p50 µs", "{:.1f}"),
                    Column("p99_us", "p99 µs", "{:.1f}"),
                    Column("proxy_cpu_per_op", "proxy CPU µs/rt", "{:.1f}"),
                ],
                systems,
                lower_is_better=True,
            )
        ]
    if scenario == "idle":
        return [
            Measurement(
                "idle",
                f"memory per idle tunnel ({a.idle} tunnels, proxy process tree)",
                lambda s: fresh_idle(bench, s),
                [
                    Column("rss_kib_per_conn", "RSS KiB/tunnel", "{:.1f}"),
                    Column("pss_kib_per_conn", "PSS KiB/tunnel", "{:.1f}"),
                    Column("rss_base_mib", "RSS before MiB", "{:.1f}"),
                    Column("processes", "processes"),
                    Column("open_seconds", "open s", "{:.2f}"),
                ],
                [s for s in systems if s.port],
                lower_is_better=True,
            )
        ]
    if scenario == "realistic":
        return [
            Measurement(
                "realistic",
                f"setups with {a.realistic_rules} filler rules, RFC 1929 "
                "username/password, connect/disconnect logging",
                lambda s: bench.run(
                    s, "setups", "--concurrency", str(a.concurrency), "--duration", secs
                ),
                [
                    Column("rate", "setups/s"),
                    Column("p50_us", "p50 µs"),
                    Column("p99_us", "p99 µs"),
                    Column("proxy_cpu_per_op", "proxy CPU µs/setup"),
                    Column("client_cpu_pct", "loadgen CPU %"),
                ],
                extra["realistic"],
            )
        ]
    if scenario == "rules":
        n = a.rules or 1000
        return [
            Measurement(
                "rules",
                f"setups: plain names with {a.rules} filler rules, +{n}net and "
                f"+{n}port with {n} client + {n} socks filler rules "
                "(net: distinct networks; port: 0/0 and a port each)",
                lambda s: bench.run(
                    s, "setups", "--concurrency", str(a.concurrency), "--duration", secs
                ),
                [
                    Column("rate", "setups/s"),
                    Column("p50_us", "p50 µs"),
                    Column("p99_us", "p99 µs"),
                    Column("proxy_cpu_per_op", "proxy CPU µs/setup"),
                ],
                extra["rules"],
            )
        ]
    raise ValueError(scenario)


def fresh_idle(bench: Bench, system: System) -> Result:
    """The idle scenario on a new instance of ``system``: memory a process
    keeps from earlier tunnels (allocator caches, danted's process pool)
    would hide the cost of new ones."""
    assert system.spawn is not None
    fresh = system.spawn()
    try:
        warm_up(bench, [fresh])
        return bench.idle(fresh, bench.a.idle)
    finally:
        if fresh.proc is not None:
            fresh.proc.stop()


def summarize_profile(files: list[Path], top: int = 25) -> str:
    """The hottest functions of py-spy raw files (collapsed stacks + count):
    by own samples and by samples anywhere on the stack."""
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for path in files:
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            n = int(count)
            total += n
            frames = [
                re.sub(r" \(([^)]*):\d+\)$", r" (\1)", f) for f in stack.split(";")
            ]
            own[frames[-1]] = own.get(frames[-1], 0) + n
            for frame in set(frames):
                inclusive[frame] = inclusive.get(frame, 0) + n
    if not total:
        return "(no samples)\n"
    lines = [f"{total} samples", "", "own:"]
    for frame, n in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"  {100 * n / total:5.1f}%  {frame}")
    lines += ["", "inclusive (dantex frames):"]
    ours = [kv for kv in inclusive.items() if "dantex/" in kv[0]]
    for frame, n in sorted(ours, key=lambda kv: -kv[1])[:top]:
        lines.append(f"  {100 * n / total:5.1f}%  {frame}")
    return "\n".join(lines) + "\n"


def integrity(results: list[Result]) -> str:
    ok = sum(int(r.get("ok", 0)) for r in results)
    corrupt = sum(int(r.get("corrupt", 0)) for r in results)
    if corrupt or not ok:
        return f"FAIL ({corrupt} bad, {ok} ok)"
    return "OK"


def table(m: Measurement) -> str:
    names = [s.name for s in m.systems if s.name in m.results]
    kinds = {s.name: s.kind for s in m.systems}
    first = m.columns[0]

    def med(name: str, key: str) -> float:
        return statistics.median(float(r.get(key, 0)) for r in m.results[name])

    head = ["system", *(c.label for c in m.columns)]
    head += [f"{first.label} range", "x danted", "x direct", "errors", "integrity"]
    lines = [f"### {m.title}", "", "| " + " | ".join(head) + " |"]
    lines.append("|" + "---|" * len(head))
    ref_danted = next((n for n in names if kinds[n] == "danted"), None)
    ref_direct = next((n for n in names if kinds[n] == "direct"), None)
    for name in names:
        rs = m.results[name]
        cells = [name]
        for c in m.columns:
            present = any(c.key in r for r in m.results[name])
            cells.append(c.fmt.format(med(name, c.key)) if present else "-")
        values = [float(r.get(first.key, 0)) for r in rs]
        cells.append(
            first.fmt.format(min(values)) + ".." + first.fmt.format(max(values))
        )
        for ref in (ref_danted, ref_direct):
            base = med(ref, first.key) if ref else 0.0
            cells.append(f"{med(name, first.key) / base:.3g}" if base else "-")
        cells.append(str(sum(int(r.get("errors", 0)) for r in rs)))
        cells.append(integrity(rs))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def machine(a: argparse.Namespace) -> str:
    def sh(*cmd: str) -> str:
        try:
            out = subprocess.run(cmd, capture_output=True, check=False, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return "?"
        return (out.stdout or out.stderr).decode(errors="replace").strip()

    def git(checkout: Path, *args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", "-C", str(checkout), *args],
                capture_output=True,
                check=False,
                timeout=10,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.decode().strip() if out.returncode == 0 else None

    commits = []
    for label, checkout in a.dantex_dirs:
        commit = git(checkout, "rev-parse", "--short", "HEAD") or "(not a git checkout)"
        if git(checkout, "status", "--porcelain", "--", "dantex"):
            commit += " + uncommitted changes in dantex/"
        named = f"@{label} = " if len(a.dantex_dirs) > 1 else ""
        commits.append(f"{named}{checkout} at {commit}")
    cpu = "?"
    with contextlib.suppress(OSError):
        m = re.search(
            r"^model name\s*:\s*(.*)$", Path("/proc/cpuinfo").read_text(), re.M
        )
        cpu = m.group(1) if m else "?"
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    danted = "-"
    if shutil.which("danted"):
        m = re.search(r"v(\d[\d.]*)", sh("danted", "-v"))
        danted = f"danted {m.group(1).rstrip('.') if m else '?'}"
    return (
        f"- date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M UTC}\n"
        f"- machine: {os.cpu_count()} CPUs ({cpu}), kernel {platform.release()}, "
        f"load average at start {load}\n"
        f"- python {platform.python_version()}, {danted}, "
        f"dantex from {'; '.join(commits)}\n"
        f"- command: `{shlex.join(['bench/run.py', *sys.argv[1:]])}`\n"
        f"- rounds {a.rounds}, setups {a.seconds} s per run, "
        f"nice {'unchanged' if a.nice is None else a.nice}, "
        f"filler rules {a.rules} ({a.rule_shape})\n"
    )


def micro(a: argparse.Namespace) -> str:
    """The in-process rule matching timings (bench/rules_bench.py)."""
    n = str(max(a.rules, 1000))
    env = dict(os.environ, PYTHONPATH=str(a.dantex_dirs[0][1]))
    out = subprocess.run(
        [sys.executable, str(BENCH / "rules_bench.py"), "--rules", n],
        capture_output=True, env=env, check=False, timeout=300,
    )  # fmt: skip
    text = (out.stdout + out.stderr).decode(errors="replace").strip()
    return f"### micro: bench/rules_bench.py --rules {n}\n\n```\n{text}\n```\n"


def raise_nofile(need: int) -> None:
    """Lift the open-file limit (inherited by every process started here)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(need, soft)
    with contextlib.suppress(OSError, ValueError):
        want = min(want, int(Path("/proc/sys/fs/nr_open").read_text()))
    for limit in ((want, max(want, hard)), (hard, hard)):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, limit)
            return
        except (OSError, ValueError):
            continue


@contextlib.contextmanager
def started(procs: list[Proc]) -> Iterator[None]:
    try:
        yield
    finally:
        for p in reversed(procs):
            p.stop()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--scenarios",
        default=",".join(DEFAULT_SCENARIOS),
        help=f"comma list of {', '.join(SCENARIOS)}",
    )
    p.add_argument(
        "--systems",
        default="direct,dantex,danted,microsocks",
        help="comma list of direct, dantex, danted, microsocks",
    )
    p.add_argument("--rounds", type=int, default=None, help="default 5 (--quick 1)")
    p.add_argument("--quick", action="store_true", help="small counts, one round")
    p.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="duration of one setups run (default 2, --quick 0.5)",
    )
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--streams", default="1,8,64", help="bulk stream counts")
    p.add_argument(
        "--bulk-modes",
        default="up,echo",
        help="up: upload to the verifying sink; echo: send to the echo server "
        "and read it all back at once (both directions)",
    )
    p.add_argument(
        "--bulk-mib",
        type=int,
        default=None,
        help="MiB uploaded per bulk run, split over the streams "
        "(default 2048, --quick 32)",
    )
    p.add_argument(
        "--rtt-count",
        type=int,
        default=None,
        help="round trips per rtt run (default 5000, --quick 500)",
    )
    p.add_argument(
        "--idle",
        type=int,
        default=None,
        help="tunnels held open for the memory scenario (default 1000, --quick 200)",
    )
    p.add_argument(
        "--rules",
        type=int,
        default=0,
        help="non-matching client and socks rules before the pass "
        "rules (dantex and danted, all scenarios but realistic)",
    )
    p.add_argument(
        "--rule-shape",
        choices=("net", "port"),
        default="net",
        help="filler rules on distinct networks (indexable) or on ports of 0/0",
    )
    p.add_argument("--realistic-rules", type=int, default=100)
    p.add_argument(
        "--dantex-cmd",
        default=None,
        help="command to start dantex (default: this python's "
        "'twistd -n --pidfile= dante'); -c CONF --workers N are added",
    )
    p.add_argument(
        "--dantex-dir",
        default=str(REPO),
        help="checkout whose dantex is run (put on PYTHONPATH); a comma list "
        "runs each, named dantex-wN@DIRNAME, for before/after in one run",
    )
    p.add_argument(
        "--dantex-workers",
        default="1,2",
        help="comma list: one dantex per worker count",
    )
    p.add_argument(
        "--nice",
        type=int,
        default=None,
        help="niceness of the proxies under test (e.g. -20)",
    )
    p.add_argument("--markdown", type=Path, default=None, help="write the tables here")
    p.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="keep the configurations and logs of the proxies under this directory",
    )
    p.add_argument(
        "--py-spy",
        type=Path,
        default=None,
        metavar="DIR",
        help="sample every dantex run with py-spy (raw stacks and a summary "
        "per measurement in DIR); the sampling slows dantex: profile, do not "
        "compare numbers from such a run",
    )
    p.add_argument("--build-dir", type=Path, default=BENCH / "build")
    p.add_argument(
        "--target-threads",
        type=int,
        default=1,
        help="threads of the echo server and sink (default 1; the 'sink/echo "
        "CPU %%' column shows when one thread sets the pace)",
    )
    p.add_argument(
        "--json", type=Path, default=None, help="write every raw result here"
    )
    a = p.parse_args(argv)
    q = a.quick
    a.rounds = a.rounds or (1 if q else 5)
    a.seconds = a.seconds or (0.5 if q else 2.0)
    a.bulk_mib = a.bulk_mib or (32 if q else 2048)
    a.rtt_count = a.rtt_count or (500 if q else 5000)
    a.idle = a.idle or (200 if q else 1000)
    a.streams = [int(x) for x in a.streams.split(",") if x]
    a.bulk_modes = [x for x in a.bulk_modes.split(",") if x]
    if not set(a.bulk_modes) <= {"up", "echo"}:
        p.error("--bulk-modes: up, echo")
    a.scenarios = [x for x in a.scenarios.split(",") if x]
    a.systems = [x for x in a.systems.split(",") if x]
    a.dantex_workers = [int(x) for x in a.dantex_workers.split(",") if x]
    dirs = [Path(x).resolve() for x in a.dantex_dir.split(",") if x]
    labels = [d.name for d in dirs]
    if len(set(labels)) < len(labels):
        labels = [f"{i + 1}" for i in range(len(dirs))]
    a.dantex_dirs = list(zip(labels, dirs, strict=True))
    if a.py_spy and shutil.which("py-spy") is None:
        p.error("--py-spy needs py-spy (pip install py-spy)")
    for s in a.scenarios:
        if s not in SCENARIOS:
            p.error(f"unknown scenario {s!r}")
    return a


def start_systems(
    a: argparse.Namespace,
    flavour: Flavour,
    tmp: Path,
    procs: list[Proc],
    direct: bool,
    suffix: str = "",
) -> list[System]:
    """Start the proxies of ``a.systems`` (recorded in ``procs`` for the end)."""
    makers: list[Callable[[], System]] = []
    for kind in a.systems:
        if kind == "direct":
            if direct:
                makers.append(lambda: System("direct", "direct"))
        elif kind == "dantex":
            for label, checkout in a.dantex_dirs:
                at = f"@{label}" if len(a.dantex_dirs) > 1 else ""
                for w in a.dantex_workers:
                    makers.append(
                        lambda w=w, n=f"dantex-w{w}{at}{suffix}", c=checkout: (  # type: ignore[misc]
                            start_dantex(a, w, flavour, tmp, n, c)
                        )
                    )
        elif kind == "danted":
            makers.append(lambda: start_danted(a, flavour, tmp, f"danted{suffix}"))
        elif kind == "microsocks":
            if flavour.auth or flavour.rules:
                continue  # no rules, no logging: not comparable
            if shutil.which("microsocks") is None:
                print("run.py: microsocks is not installed: left out", file=sys.stderr)
                continue
            makers.append(lambda: start_microsocks(a, tmp))
        else:
            raise SystemExit(f"run.py: unknown system {kind!r}")
    out = []
    for make in makers:
        system = make()
        system.spawn = make
        if system.proc is not None:
            procs.append(system.proc)
        out.append(system)
    return out


def warm_up(bench: Bench, systems: list[System]) -> None:
    """A short burst of setups on each system; a system that fails is fatal."""
    for s in systems:
        r = bench.run(
            s, "setups", "--concurrency", "8", "--duration", "0.3", label="warm-up"
        )
        if not int(r.get("ok", 0)):
            tail = s.proc.log_tail() if s.proc else ""
            raise SystemExit(f"run.py: {s.name} does not work: {r}\n{tail}")


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    started_at = time.monotonic()
    raise_nofile(4 * a.idle + 1024)
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if "idle" in a.scenarios and limit < 2 * a.idle + 256:
        print(
            f"run.py: note: open files are limited to {limit}: a one-process proxy "
            f"cannot hold {a.idle} tunnels (2 descriptors each)",
            file=sys.stderr,
        )
    loadgen, targets_bin = build(a.build_dir)
    procs: list[Proc] = []
    report = ["## bench/run.py results", "", machine(a)]
    print(report[-1], flush=True)
    all_results: dict[str, dict[str, list[Result]]] = {}
    failed = False
    with contextlib.ExitStack() as stack:
        if a.workdir:
            a.workdir.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix="run-", dir=a.workdir))
        else:
            tmp = Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-"))
            )
        stack.enter_context(started(procs))
        tp = subprocess.Popen(
            [str(targets_bin), "--threads", str(a.target_threads)],
            stdout=subprocess.PIPE,
        )
        procs.append(Proc("targets", tp, tmp, tmp / "none"))
        assert tp.stdout is not None
        ports = dict(tp.stdout.readline().decode().split() for _ in range(2))
        bench = Bench(
            loadgen, int(ports["echo"]), int(ports["sink"]), a, targets_pid=tp.pid
        )
        runnable = [s for s in a.scenarios if s != "micro"]
        flavour = Flavour(rules=a.rules, shape=a.rule_shape)
        systems = []
        if runnable:
            systems = start_systems(a, flavour, tmp, procs, direct=True)
            warm_up(bench, systems)
        extra: dict[str, list[System]] = {"realistic": [], "rules": []}
        if "realistic" in runnable:
            flavour = Flavour(rules=a.realistic_rules, auth=True, logging=True)
            extra["realistic"] = start_systems(
                a, flavour, tmp, procs, direct=False, suffix="+auth"
            )
            warm_up(bench, extra["realistic"])
        if "rules" in runnable:
            n = a.rules or 1000
            extra["rules"] = [s for s in systems if s.kind in ("dantex", "danted")]
            for shape in ("net", "port"):
                started_now = start_systems(
                    a, Flavour(rules=n, shape=shape), tmp, procs, False, f"+{n}{shape}"
                )
                warm_up(bench, started_now)
                extra["rules"] += started_now
        for scenario in runnable:
            for m in measurements(scenario, bench, systems, extra):
                order = list(m.systems)
                for r in range(a.rounds):
                    k = r % max(1, len(order))
                    for s in order[k:] + order[:k]:
                        bench.current = m.name
                        m.results.setdefault(s.name, []).append(m.run(s))
                text = table(m)
                failed = failed or "FAIL" in text
                print(text, flush=True)
                report.append(text)
                all_results[m.name] = m.results
                save(a, report, all_results)  # so far, in case a later one fails
        if "micro" in a.scenarios:
            report.append(micro(a))
            print(report[-1], flush=True)
    for (name, system), files in bench.profiles.items():
        summary = a.py_spy / f"{name}-{system}.txt"
        summary.write_text(summarize_profile(files))
        print(f"py-spy: {summary}", flush=True)
    if bench.log:
        notes = "\n".join(f"    {ln}" for ln in bench.log[:20])
        report.append(f"load generator messages (first 20):\n\n{notes}\n")
        print(report[-1], flush=True)
    report.append(f"(run took {time.monotonic() - started_at:.0f} s)\n")
    print(report[-1])
    save(a, report, all_results)
    return 1 if failed else 0


def save(
    a: argparse.Namespace,
    report: list[str],
    results: dict[str, dict[str, list[Result]]],
) -> None:
    """Write ``--markdown`` and ``--json`` (if asked for)."""
    if a.markdown:
        a.markdown.write_text("\n".join(report))
    if a.json:
        a.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RuntimeError as e:  # a system that would not start: say why, no trace
        print(f"run.py: {e}", file=sys.stderr)
        sys.exit(2)
