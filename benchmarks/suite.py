"""The benchmark suite: runs every workload, checks its result, prints one table.

Each workload runs in a fresh child process in a fresh temporary directory;
``os.wait4`` of that process gives the CPU of the whole run (the master and
every process it reaped: the fork server and the workers). The table (with
the machine it ran on) is written as Markdown to ``docs/performance.md``.

    python benchmarks/suite.py [--quick] [--full] [--only NAME[,NAME]]
                               [--maxThreads N] [--output PATH | --output -]

Exits 1 when a check failed (after writing the table), 0 otherwise; a missed
goal is reported, not a failure.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Callable, NamedTuple

import workloads

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WORKLOADS = os.path.join(HERE, "workloads.py")
MPSORT = os.path.join(HERE, "mpsort.py")
SORT_EXAMPLE = os.path.join(ROOT, "examples", "sort.py")
DEFAULT_OUTPUT = os.path.join(ROOT, "docs", "performance.md")
MIB = 1024 ** 2
#: jobs.state of an issued target (jobtree.jobstore.JobState.ISSUED)
ISSUED = 2
#: the syscalls that flush a file to disk, counted under strace
SYNC_CALLS = ("fsync", "fdatasync", "msync", "sync_file_range")
#: seconds a workload may take before it counts as failed
TIMEOUT = 10 * 60
#: seconds the scale tree may take to reach its full size
BUILD_TIMEOUT = 15 * 60
#: seconds the restarted scale tree may take to finish (with --full)
FINISH_TIMEOUT = 4 * 3600


@dataclasses.dataclass(frozen=True)
class Context:
    """What every workload needs to know about this run of the suite."""

    quick: bool
    full: bool
    threads: int
    env: dict[str, str]

    def size(self, full: int, quick: int) -> int:
        """The size of a workload in this mode."""
        return quick if self.quick else full


@dataclasses.dataclass
class Process:
    """One finished child process, as ``os.wait4`` saw it."""

    wall: float
    cpu: float
    maxrss_kib: int
    code: int
    out: str
    err: str
    timed_out: bool

    def report(self) -> dict[str, Any]:
        """The JSON line the process printed last ({} if none)."""
        for line in reversed(self.out.splitlines()):
            if line.startswith("{"):
                return dict(json.loads(line))
        return {}

    def failure(self) -> str | None:
        """Why the process did not succeed, or None."""
        if self.timed_out:
            return f"timed out after {self.wall:.0f} s"
        if self.code != 0:
            last = [line for line in self.err.splitlines() if line.strip()][-1:]
            return f"exit code {self.code}" + (f": {last[0][:120]}" if last else "")
        return None


@dataclasses.dataclass
class Row:
    """One line of the table."""

    name: str
    targets: int | None = None
    wall: float | None = None
    cpu: float | None = None
    rss_mib: float | None = None
    ratio: float | None = None
    counts: dict[str, int] = dataclasses.field(default_factory=dict)
    goal: str = ""
    problems: list[str] = dataclasses.field(default_factory=list)

    def rate(self) -> float | None:
        """Targets per second."""
        if self.targets is None or not self.wall:
            return None
        return self.targets / self.wall

    def per_target(self, value: float | None, scale: float = 1.0) -> float | None:
        """``value`` divided by the number of targets."""
        if value is None or not self.targets:
            return None
        return scale * value / self.targets


@dataclasses.dataclass
class Outcome:
    """The rows of one workload and notes to print under the table."""

    rows: list[Row]
    notes: list[str] = dataclasses.field(default_factory=list)


# ------------------------------------------------------------------ processes
def kill_group(pgid: int) -> None:
    """SIGKILLs a process group, if it still has members."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def start(argv: list[str], ctx: Context, cwd: str, name: str) -> subprocess.Popen[bytes]:
    """Starts ``argv`` in a session of its own, its output in ``cwd``/``name``.out/.err."""
    out = open(os.path.join(cwd, f"{name}.out"), "wb")
    err = open(os.path.join(cwd, f"{name}.err"), "wb")
    with out, err:
        return subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                env=ctx.env, cwd=cwd, start_new_session=True)


class Reaped(NamedTuple):
    """How a process ended: its exit code, the CPU seconds of it and its reaped
    descendants, their peak RSS in KiB, and whether it was killed for taking too long."""

    code: int
    cpu: float
    maxrss_kib: int
    timed_out: bool


def reap(proc: subprocess.Popen[bytes], timeout: float | None = None) -> Reaped:
    """Waits for ``proc``, killing its process group after ``timeout`` seconds."""
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        kill_group(proc.pid)

    timer = threading.Timer(timeout, expire) if timeout is not None else None
    if timer:
        timer.start()
    _, status, usage = os.wait4(proc.pid, 0)
    if timer:
        timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Reaped(proc.returncode, usage.ru_utime + usage.ru_stime, usage.ru_maxrss,
                  expired.is_set())


def read_output(cwd: str, name: str) -> tuple[str, str]:
    """The stdout and stderr a process started by ``start`` left."""
    texts = []
    for ext in ("out", "err"):
        with open(os.path.join(cwd, f"{name}.{ext}"), "rb") as handle:
            texts.append(handle.read().decode(errors="replace"))
    return texts[0], texts[1]


def spawn(argv: list[str], ctx: Context, cwd: str, timeout: float = TIMEOUT,
          name: str = "run") -> Process:
    """Runs ``argv`` to its end (killing its process group after ``timeout`` s)."""
    started = time.perf_counter()
    proc = start(argv, ctx, cwd, name)
    ended = reap(proc, timeout)
    wall = time.perf_counter() - started
    kill_group(proc.pid)  # anything it left behind
    out, err = read_output(cwd, name)
    return Process(wall, ended.cpu, ended.maxrss_kib, ended.code, out, err, ended.timed_out)


def workload(args: list[str], ctx: Context, cwd: str) -> tuple[Process, dict[str, Any]]:
    """Runs ``workloads.py ARGS`` on a tree in ``cwd``: the process and its report."""
    argv = [sys.executable, WORKLOADS, *args, "--jobTree", os.path.join(cwd, "tree"),
            "--maxThreads", str(ctx.threads), "--logLevel", "WARNING"]
    done = spawn(argv, ctx, cwd)
    return done, done.report()


def scratch() -> str:
    """A fresh temporary directory."""
    return tempfile.mkdtemp(prefix="jobtree-suite-")


# ------------------------------------------------------------------ workloads
def report_rss(report: dict[str, Any]) -> float | None:
    """The peak RSS a workloads.py report holds, in MiB."""
    return report["maxrss_kib"] / 1024 if "maxrss_kib" in report else None


def tree_row(name: str, done: Process, report: dict[str, Any], expected: int) -> Row:
    """The row of a workload run by workloads.py, with its checks."""
    row = Row(name, report.get("targets"), report.get("wall"), done.cpu,
              report_rss(report), counts=report.get("counts", {}))
    failure = done.failure()
    if failure or not report:
        row.problems.append(failure or "printed no report")
        return row
    row.problems.extend(report["problems"])
    if report["failed"]:
        row.problems.append(f"{report['failed']} targets failed")
    if report["targets"] != expected:
        row.problems.append(f"{report['targets']} targets, not {expected}")
    if report["done"] != report["targets"]:
        row.problems.append(f"only {report['done']} of {report['targets']} targets done")
    return row


def fork_row(children: int, alive: int, ctx: Context) -> Row:
    """The process baseline: a warm process forks ``children`` trivial children."""
    folder = scratch()
    try:
        done = spawn([sys.executable, WORKLOADS, "fork", "--targets", str(children),
                      "--maxThreads", str(alive)], ctx, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    report = done.report()
    at_once = "" if alive == ctx.threads else f", {alive} at a time"
    row = Row(f"baseline: fork {children:,}{at_once}", children, report.get("wall"), done.cpu,
              report_rss(report))
    failure = done.failure()
    if failure or not report:
        row.problems.append(failure or "printed no report")
    return row


def with_baseline(row: Row, baseline: Row) -> Outcome:
    """The workload's row with its ratio to ``baseline``, then the baseline's row."""
    if row.wall and baseline.wall:
        row.ratio = row.wall / baseline.wall
    return Outcome([row, baseline])


def run_tree_workload(name: str, args: list[str], expected: int, ctx: Context,
                      alive: int | None = None) -> Outcome:
    """Runs a tree of workloads.py and its fork baseline of ``expected`` children."""
    folder = scratch()
    try:
        done, report = workload(args, ctx, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    row = tree_row(name, done, report, expected)
    return with_baseline(row, fork_row(expected, alive or ctx.threads, ctx))


def fanout(full: int, quick: int) -> Callable[[Context], Outcome]:
    """The fan-out workload of ``full`` (or in quick mode ``quick``) children."""
    def run(ctx: Context) -> Outcome:
        width = ctx.size(full, quick)
        return run_tree_workload(f"fan-out {width:,}", ["fanout", "--targets", str(width)],
                                 width + 1, ctx)
    return run


def chain(ctx: Context) -> Outcome:
    """A root and a chain of trivial follow-ons; the baseline forks one at a time."""
    links = ctx.size(1000, 100)
    return run_tree_workload(f"chain {links:,}", ["chain", "--targets", str(links)],
                             links + 1, ctx, alive=1)


def binary_tree(full: int, quick: int) -> Callable[[Context], Outcome]:
    """The binary tree of depth ``full`` (or ``quick``), each inner node with a follow-on."""
    def run(ctx: Context) -> Outcome:
        depth = ctx.size(full, quick)
        expected = (2 ** (depth + 1) - 1) + (2 ** depth - 1)
        return run_tree_workload(f"binary tree depth {depth}",
                                 ["tree", "--depth", str(depth)], expected, ctx)
    return run


def single(ctx: Context) -> Outcome:
    """One trivial target, the whole process from spawn to exit; the median of runs."""
    runs = ctx.size(5, 3)
    rows = []
    for _ in range(runs):
        folder = scratch()
        try:
            done, report = workload(["single"], ctx, folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        rows.append(tree_row("", done, report, 1))
        rows[-1].wall, rows[-1].cpu = done.wall, done.cpu
    middle = sorted(rows, key=lambda r: r.wall or 0.0)[runs // 2]
    middle.name = f"one trivial target, whole process (median of {runs})"
    middle.problems = [p for r in rows for p in r.problems]
    return Outcome([middle])


def load_sort_example() -> Any:
    """examples/sort.py as a module (for its input generator)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("sort_example", SORT_EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sorted_correctly(data: str, output: str) -> bool:
    """Whether ``output`` holds the lines of ``data`` in Python's sorted order."""
    with open(data, "rb") as handle:
        expected = sorted(handle.read().splitlines(keepends=True))
    if not os.path.exists(output):
        return False
    with open(output, "rb") as handle:
        return handle.read().splitlines(keepends=True) == expected


def sort_once(name: str, argv: list[str], ctx: Context, folder: str, data: str) -> Row:
    """Runs one sort of ``data`` into ``folder``/sorted.txt (the last argument of
    ``argv`` names the output) and checks its output."""
    output = os.path.join(folder, "sorted.txt")
    done = spawn(argv + [output], ctx, folder, name="sort")
    failure = done.failure()
    if failure is None and not sorted_correctly(data, output):
        failure = "output differs from Python's sorted()"
    if os.path.exists(output):
        os.remove(output)
    return Row(name, wall=done.wall, cpu=done.cpu, rss_mib=done.maxrss_kib / 1024,
               problems=[failure] if failure else [])


def sort_rows(full: int, quick: int) -> Callable[[Context], Outcome]:
    """examples/sort.py on ``full`` (or ``quick``) MiB with 100 kB ranges, and mpsort.py."""
    def run(ctx: Context) -> Outcome:
        mib = ctx.size(full, quick)
        folder = scratch()
        tree = os.path.join(folder, "tree")
        data = os.path.join(folder, "input.txt")
        try:
            load_sort_example().generateFile(data, mib * MIB, 0)
            row = sort_once(f"sort {mib} MiB",
                            [sys.executable, SORT_EXAMPLE, "--fileToSort", data, "--N", "100000",
                             "--jobTree", tree, "--logLevel", "WARNING",
                             "--maxThreads", str(ctx.threads), "--output"], ctx, folder, data)
            if os.path.exists(os.path.join(tree, "tree.db")):
                row.targets = workloads.count_jobs(os.path.join(tree, "tree.db"))[0]
            base = sort_once(f"baseline: mpsort {mib} MiB",
                             [sys.executable, MPSORT, "--input", data, "--N", "100000",
                              "--processes", str(ctx.threads), "--output"], ctx, folder, data)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return with_baseline(row, base)
    return run


def parse_strace(path: str) -> dict[str, int]:
    """Calls per syscall from the summary ``strace -c`` wrote to ``path``."""
    calls: dict[str, int] = {}
    with open(path) as handle:
        for line in handle:
            parts = line.split()
            if len(parts) >= 5 and parts[-1] in SYNC_CALLS and parts[3].isdigit():
                calls[parts[-1]] = int(parts[3])
    return calls


def syscalls(ctx: Context) -> Outcome:
    """Every fsync of every process of a fan-out, counted by strace."""
    width = ctx.size(1000, 100)
    if shutil.which("strace") is None:
        return Outcome([], [f"strace is not on PATH: all fsyncs of a fan-out of {width:,} "
                            f"were not counted"])
    folder = scratch()
    try:
        summary = os.path.join(folder, "strace.txt")
        argv = ["strace", "-f", "-qq", "-c", "--seccomp-bpf", "-o", summary,
                "-e", f"trace={','.join(SYNC_CALLS)}", sys.executable, WORKLOADS, "fanout",
                "--targets", str(width), "--jobTree", os.path.join(folder, "tree"),
                "--maxThreads", str(ctx.threads), "--logLevel", "WARNING"]
        done = spawn(argv, ctx, folder)
        report = done.report()
        calls = parse_strace(summary) if os.path.exists(summary) else {}
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    row = tree_row(f"fan-out {width:,} under strace", done, report, width + 1)
    if row.problems:
        return Outcome([row])
    total = sum(calls.values())
    detail = ", ".join(f"{name} {n:,}" for name, n in sorted(calls.items())) or "none"
    return Outcome([], [f"All syncs of every process (strace -f) in a fan-out of {width:,}: "
                        f"{total / row.targets:.2f} per target ({total:,} in all: {detail}); "
                        f"the master itself asked for "
                        f"{row.counts.get('fsyncs', 0) / row.targets:.2f} per target."])


# ---------------------------------------------------------------------- scale
@dataclasses.dataclass
class Sample:
    """The master's memory at one moment of the scale run."""

    at: float
    rss_kib: int
    hwm_kib: int


def memory_of(pid: int) -> tuple[int, int] | None:
    """(VmRSS, VmHWM) of ``pid`` in KiB, or None when it is gone."""
    found = {}
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    found[key] = int(value.split()[0])
    except OSError:
        return None
    if len(found) < 2:
        return None
    return found["VmRSS"], found["VmHWM"]


def query(db_path: str, sql: str, *args: Any) -> int:
    """One number from the index, read-only (0 while the index cannot be read)."""
    try:
        db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
        try:
            return int(db.execute(sql, args).fetchone()[0])
        finally:
            db.close()
    except sqlite3.Error:
        return 0


def command(name: str, module: str) -> list[str]:
    """A jobtree command: its console script next to Python, else ``python -m``."""
    script = os.path.join(os.path.dirname(sys.executable), name)
    return [script] if os.path.exists(script) else [sys.executable, "-m", module]


def build_index(proc: subprocess.Popen[bytes], db_path: str,
                expected: int) -> tuple[float, list[Sample], bool]:
    """Polls until ``expected`` targets exist: (seconds, memory samples, reached)."""
    started = time.perf_counter()
    samples: list[Sample] = []
    while time.perf_counter() - started < BUILD_TIMEOUT and proc.poll() is None:
        time.sleep(0.5)
        memory = memory_of(proc.pid)
        if memory:
            samples.append(Sample(time.perf_counter() - started, *memory))
        if query(db_path, "SELECT COUNT(*) FROM jobs") >= expected:
            return time.perf_counter() - started, samples, True
    return time.perf_counter() - started, samples, False


def rss_at(samples: list[Sample], moment: float) -> int:
    """The RSS of the sample nearest ``moment``."""
    return min(samples, key=lambda s: abs(s.at - moment)).rss_kib


def build_row(name: str, expected: int, seconds: float, samples: list[Sample],
              reached: bool, cpu: float, ctx: Context) -> tuple[Row, str]:
    """The row of the build phase and a note on the master's memory over time."""
    peak = max((s.hwm_kib for s in samples), default=0) / 1024
    row = Row(name, expected, seconds, cpu, peak)
    if not reached:
        row.problems.append(f"not all {expected:,} targets existed after {seconds:.0f} s")
    if not samples:
        return row, "no memory samples of the master"
    middle, end = rss_at(samples, seconds / 2) / 1024, samples[-1].rss_kib / 1024
    flat = end <= 1.25 * middle
    judge(row, "peak RSS ≤ 200 MiB and flat", peak <= 200 and flat, ctx)
    return row, (f"Master RSS while the scale tree grew: {middle:.0f} MiB at half the time, "
                 f"{end:.0f} MiB at the end, peak {peak:.0f} MiB "
                 f"({'flat' if flat else 'growing'}: flat means the end is at most 1.25× "
                 f"the middle).")


def status_row(tree: str, ctx: Context, folder: str) -> Row:
    """jobTreeStatus on the full-size tree while its master runs: the median of 3."""
    runs = [spawn(command("jobTreeStatus", "jobtree.cli.status") + ["--jobTree", tree],
                  ctx, folder, timeout=120, name="status") for _ in range(3)]
    row = Row("scale: jobTreeStatus, master running (median of 3)",
              wall=statistics.median(r.wall for r in runs),
              cpu=statistics.median(r.cpu for r in runs))
    row.problems = [f for f in (r.failure() for r in runs) if f][:1]
    return row


def first_issue(tree: str, ctx: Context, folder: str) -> tuple[subprocess.Popen[bytes], Row]:
    """Starts jobTreeRun on the killed tree and times its spawn to its first issue."""
    db_path = os.path.join(tree, "tree.db")
    since = time.time()
    started = time.perf_counter()
    proc = start(command("jobTreeRun", "jobtree.cli.run")
                 + ["--jobTree", tree, "--logLevel", "WARNING"], ctx, folder, "restart")
    row = Row("scale: restart after SIGKILL, spawn to first issue")
    sql = "SELECT COUNT(*) FROM jobs WHERE state = ? AND issued_at > ?"
    while proc.poll() is None and time.perf_counter() - started < 120:
        if query(db_path, sql, ISSUED, since) > 0:
            row.wall = time.perf_counter() - started
            return proc, row
        time.sleep(0.02)
    row.problems.append("no target issued within 120 s"
                        if proc.poll() is None else f"jobTreeRun exited ({proc.returncode})")
    return proc, row


def stop_gracefully(proc: subprocess.Popen[bytes]) -> str | None:
    """SIGTERMs jobTreeRun and waits for it: None, or what went wrong."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        kill_group(proc.pid)
        proc.wait()
        return "jobTreeRun did not stop within 120 s of SIGTERM"
    return None


def finish_row(proc: subprocess.Popen[bytes], db_path: str, expected: int, remaining: int,
               started: float) -> Row:
    """With --full: waits for jobTreeRun to finish the ``remaining`` targets of the
    tree and checks that all ``expected`` are done."""
    ended = reap(proc, FINISH_TIMEOUT)
    row = Row("scale: jobTreeRun to the end (the targets not done before the kill)",
              remaining, time.perf_counter() - started, ended.cpu, ended.maxrss_kib / 1024)
    done = query(db_path, "SELECT COUNT(*) FROM jobs WHERE state = ?", workloads.DONE)
    if ended.timed_out:
        row.problems.append(f"timed out after {FINISH_TIMEOUT / 3600:.0f} h")
    elif ended.code != 0:
        row.problems.append(f"jobTreeRun exit code {ended.code}")
    if done != expected:
        row.problems.append(f"{done:,} of {expected:,} targets done")
    return row


def group_stats(pgid: int) -> list[list[str]]:
    """The fields of ``/proc/PID/stat`` (after the command) of each process in ``pgid``."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid:
            found.append(fields)
    return found


def group_cpu(pgid: int) -> float:
    """CPU seconds so far of the processes in ``pgid`` and of the children they reaped."""
    ticks = sum(int(n) for fields in group_stats(pgid) for n in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def wait_group_gone(pgid: int, timeout: float) -> int:
    """Waits up to ``timeout`` s for the group ``pgid`` to empty: how many are left."""
    deadline = time.monotonic() + timeout
    while group_stats(pgid) and time.monotonic() < deadline:
        time.sleep(0.2)
    return len(group_stats(pgid))


def scale(ctx: Context) -> Outcome:
    """The million-target tree: build, status, SIGKILL, restart (and with --full, finish)."""
    width = ctx.size(1000, 100)
    expected = 1 + width + width * width
    folder = scratch()
    tree = os.path.join(folder, "tree")
    db_path = os.path.join(tree, "tree.db")
    try:
        proc = start([sys.executable, WORKLOADS, "scale", "--width", str(width), "--jobTree",
                      tree, "--maxThreads", str(ctx.threads), "--logLevel", "WARNING"],
                     ctx, folder, "master")
        seconds, samples, reached = build_index(proc, db_path, expected)
        status = status_row(tree, ctx, folder) if reached else None
        cpu = group_cpu(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        reap(proc)
        name = f"scale {width:,} × {width:,}: build the index"
        build, memory_note = build_row(name, expected, seconds, samples, reached, cpu, ctx)
        rows, notes = [build], [memory_note]
        if status:
            rows.append(status)
            rows += restart_phase(ctx, folder, tree, expected, notes)
        stray = wait_group_gone(proc.pid, 15)
        if stray:
            notes.append(f"{stray} processes of the SIGKILLed scale master's process group "
                         f"were still alive at the end of the scale workload, 15 s or more "
                         f"after the kill (killed now).")
        kill_group(proc.pid)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return Outcome(rows, notes)


def restart_phase(ctx: Context, folder: str, tree: str, expected: int,
                  notes: list[str]) -> list[Row]:
    """jobTreeRun after the SIGKILL: time to first issue, then stop it or let it finish."""
    db_path = os.path.join(tree, "tree.db")
    done_before = query(db_path, "SELECT COUNT(*) FROM jobs WHERE state = ?", workloads.DONE)
    started = time.perf_counter()
    proc, restart = first_issue(tree, ctx, folder)
    rows = [restart]
    try:
        if ctx.full and not restart.problems:
            rows.append(finish_row(proc, db_path, expected, expected - done_before, started))
        else:
            problem = stop_gracefully(proc)
            if problem:
                restart.problems.append(problem)
    finally:
        kill_group(proc.pid)
    size = sum(os.path.getsize(db_path + ext) for ext in ("", "-wal")
               if os.path.exists(db_path + ext))
    targets = query(db_path, "SELECT COUNT(*) FROM jobs")
    notes.append(f"Index of the scale tree: {size / MIB:.0f} MiB for {targets:,} targets, "
                 f"{size / max(targets, 1):.0f} bytes per target (tree.db + tree.db-wal).")
    return rows


# ---------------------------------------------------------------------- goals
def judge(row: Row, text: str, met: bool, ctx: Context) -> None:
    """Sets the goal column of ``row``."""
    row.goal = f"{text}: {'not judged (quick)' if ctx.quick else 'met' if met else 'missed'}"


def set_goals(name: str, outcome: Outcome, ctx: Context) -> None:
    """Writes the goal of workload ``name`` into its first row(s)."""
    row = outcome.rows[0] if outcome.rows else None
    if row is None or row.wall is None:
        return
    rate, cpu_ms = row.rate() or 0.0, row.per_target(row.cpu, 1000) or 0.0
    if name == "fanout10000":
        judge(row, "≥ 500 targets/s, ≤ 4 CPU-ms/target", rate >= 500 and cpu_ms <= 4, ctx)
    elif name == "chain":
        judge(row, "≥ 2,000 targets/s", rate >= 2000, ctx)
    elif name == "tree10":
        judge(row, "< 10 s", row.wall < 10, ctx)
    elif name == "sort50":
        judge(row, "< 25 s, ≤ 2× baseline", row.wall < 25 and (row.ratio or 99) <= 2, ctx)
    elif name == "single":
        judge(row, "< 0.3 s", row.wall < 0.3, ctx)
    elif name == "scale":
        set_scale_goals(outcome.rows, ctx)


def set_scale_goals(rows: list[Row], ctx: Context) -> None:
    """The goals of the scale rows after the build's (which ``build_row`` set)."""
    for row in rows[1:]:
        if row.wall is None:
            continue
        if "jobTreeStatus" in row.name:
            judge(row, "< 1 s", row.wall < 1, ctx)
        elif "first issue" in row.name:
            judge(row, "< 2 s", row.wall < 2, ctx)


#: every workload by the name --only takes, in the order they run
WORKLOAD_RUNNERS: dict[str, Callable[[Context], Outcome]] = {
    "single": single,
    "fanout1000": fanout(1000, 100),
    "fanout10000": fanout(10000, 1000),
    "chain": chain,
    "tree10": binary_tree(10, 6),
    "tree12": binary_tree(12, 8),
    "sort5": sort_rows(5, 1),
    "sort50": sort_rows(50, 5),
    "syscalls": syscalls,
    "scale": scale,
}


# --------------------------------------------------------------------- output
def fmt(value: float | None, digits: int = 2) -> str:
    """A number for the table ('–' when unknown)."""
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


COLUMNS = ("workload", "targets", "wall s", "targets/s", "CPU-ms/target", "master peak RSS MiB",
           "ratio to baseline", "transactions/target", "statements/target", "fsyncs/target",
           "goal", "check")


def cells(row: Row) -> list[str]:
    """The table cells of one row."""
    counters = [fmt(row.per_target(row.counts[k]) if k in row.counts else None)
                for k in ("transactions", "statements", "fsyncs")]
    check = "FAILED: " + "; ".join(row.problems) if row.problems else "ok"
    return [row.name, fmt(row.targets, 0), fmt(row.wall), fmt(row.rate(), 0),
            fmt(row.per_target(row.cpu, 1000)), fmt(row.rss_mib, 0),
            fmt(row.ratio) + ("×" if row.ratio else ""), *counters, row.goal or "–",
            check.replace("|", "/")]


def table(rows: list[Row]) -> str:
    """The Markdown table of ``rows``."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    lines += ["| " + " | ".join(cells(row)) + " |" for row in rows]
    return "\n".join(lines)


def first_match(path: str, pattern: str) -> str | None:
    """The first group of ``pattern`` in the file at ``path`` (None if absent)."""
    try:
        with open(path) as handle:
            found = re.search(pattern, handle.read(), re.MULTILINE)
    except OSError:
        return None
    return found.group(1).strip() if found else None


def machine() -> list[str]:
    """What the suite ran on, as Markdown list items."""
    from jobtree._version import __version__

    memory = first_match("/proc/meminfo", r"^MemTotal:\s*(\d+)")
    cpu = first_match("/proc/cpuinfo", r"^model name\s*:(.*)$") or "unknown"
    uname = platform.uname()
    system = (first_match("/etc/os-release", r"^PRETTY_NAME=(.*)$") or uname.system).strip('"')
    usable = len(os.sched_getaffinity(0))
    return [
        f"CPU: {cpu}",
        f"cores: {os.cpu_count()} ({usable} usable by this process)",
        f"memory: {int(memory) / 1024 ** 2:.1f} GiB" if memory else "memory: unknown",
        f"Python: {platform.python_version()} ({sys.executable})",
        f"jobtree: {__version__}",
        f"OS: {system}, kernel {uname.release} ({uname.machine})",
        f"date: {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
    ]


EXPLANATION = """\
## Columns

- **targets**: rows of the tree's index (`SELECT COUNT(*) FROM jobs` on `tree.db`).
- **wall s**: seconds around `Stack(root).startJobTree(options)` inside the workload
  process; for the sorts, the single target, jobTreeStatus and the restart, the whole
  process from spawn to exit; for the scale build, from spawn until every target exists.
- **targets/s**: targets divided by wall time.
- **CPU-ms/target**: user + system CPU of the workload process and every descendant it
  reaped (the master, the fork server and all workers, from `os.wait4`), divided by targets;
  for the scale build (whose master is SIGKILLed), `utime + stime + cutime + cstime` from
  `/proc` of the master's process group (the master and its fork server) just before the kill.
- **master peak RSS MiB**: the master's peak resident memory: `ru_maxrss` of the workload
  process (the master runs in it); for the sorts `os.wait4`'s `ru_maxrss`, which is the
  largest of the process and its descendants; for the scale tree `VmHWM` of the master.
- **ratio to baseline**: wall time of the row divided by the wall time of its baseline (the
  row after it): a warm Python process forking as many trivial children, as many at a time
  as jobtree may run (one at a time for the chain), or for the sorts the same merge sort in
  one process with a `multiprocessing.Pool` (`benchmarks/mpsort.py`).
- **transactions/target, statements/target, fsyncs/target**: the master's own counters
  (`JOBTREE_METRICS=1`, `jobtree.metrics.COUNTS`): index transactions, SQL statements and
  the fsyncs jobtree asks for (not SQLite's own; see the strace line for all of them).
- **goal**: the target to meet, and whether this run met it.
- **check**: every workload checks its result (no failed target, the expected number of
  targets, all done, the output right); a failed check makes the suite exit 1.

## Workloads

- **fan-out N**: a root adds N trivial children (N + 1 targets).
- **chain N**: a root whose follow-on chain has N trivial follow-ons, each setting the next.
- **binary tree depth D**: each node above depth D adds two child nodes and a follow-on that
  checks that both children's subtrees have finished (leaves do nothing else); depth 10 is
  2,047 nodes and 1,023 follow-ons. It fails if a follow-on runs before its children.
- **sort N MiB**: `examples/sort.py` on N MiB of generated lines with 100 kB ranges
  (`--N 100000`); the output must equal Python's `sorted()` of the input.
- **one trivial target, whole process**: `python workloads.py single` from spawn to exit.
- **scale W × W**: a root adds W children, each adds W trivial children (1,001,001 targets for
  W = 1,000). The index is polled read-only every 0.5 s until every target exists; then
  jobTreeStatus runs three times while the master runs; then the master is SIGKILLed and
  `jobTreeRun` restarts the tree: the row is the time from its spawn until a target is issued
  again. Without `--full` that jobTreeRun is then stopped with SIGTERM.
- **baseline: fork N**: the cost a process-per-target design cannot beat (see the ratio).
"""


def analysis() -> str:
    """The hand-written part of the page (benchmarks/analysis.md): what bounds
    the numbers, from profiles; empty if there is none."""
    try:
        with open(os.path.join(HERE, "analysis.md"), encoding="utf-8") as handle:
            return handle.read().strip() + "\n\n"
    except FileNotFoundError:
        return ""


def document(rows: list[Row], notes: list[str], ctx: Context, argv: list[str]) -> str:
    """The Markdown page: the command, the machine, the table, the notes, the
    analysis, the legend."""
    mode = ("\n\n**Quick mode**: smaller sizes, a smoke test; goals are not judged."
            if ctx.quick else "")
    command_line = " ".join(["python benchmarks/suite.py", *argv])
    return "\n".join([
        "# Performance", "",
        f"Written by `{command_line}` with `--maxThreads {ctx.threads}`.{mode}", "",
        "## Machine", "", *[f"- {line}" for line in machine()], "",
        "## Results", "", table(rows), "", *[f"- {note}" for note in notes],
        "" if notes else "", analysis() + EXPLANATION])


# ----------------------------------------------------------------------- main
def parse(argv: list[str]) -> argparse.Namespace:
    """The suite's options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", default=DEFAULT_OUTPUT,
                        help="where to write the Markdown ('-': print only)")
    parser.add_argument("--only", default=None, metavar="NAME[,NAME]",
                        help=f"run only these: {', '.join(WORKLOAD_RUNNERS)}")
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke test")
    parser.add_argument("--full", action="store_true",
                        help="let the restarted scale tree run to its end")
    parser.add_argument("--maxThreads", type=int, default=os.cpu_count() or 1,
                        help="jobtree's --maxThreads (default: all cores)")
    options = parser.parse_args(argv)
    names = options.only.split(",") if options.only else list(WORKLOAD_RUNNERS)
    unknown = [n for n in names if n not in WORKLOAD_RUNNERS]
    if unknown:
        parser.error(f"unknown workload {', '.join(unknown)}; "
                     f"known: {', '.join(WORKLOAD_RUNNERS)}")
    options.names = names
    return options


def main(argv: list[str]) -> int:
    """Runs the chosen workloads, prints the table and writes the page."""
    options = parse(argv)
    env = dict(os.environ, JOBTREE_METRICS="1")
    ctx = Context(options.quick, options.full, options.maxThreads, env)
    rows: list[Row] = []
    notes: list[str] = []
    for name in options.names:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        outcome = WORKLOAD_RUNNERS[name](ctx)
        set_goals(name, outcome, ctx)
        rows += outcome.rows
        notes += outcome.notes
    page = document(rows, notes, ctx, argv)
    print(page.split("## Columns")[0].rstrip())
    if options.output != "-":
        os.makedirs(os.path.dirname(os.path.abspath(options.output)), exist_ok=True)
        with open(options.output, "w") as handle:
            handle.write(page)
        print(f"\nwritten to {options.output}", file=sys.stderr)
    return 1 if any(row.problems for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
