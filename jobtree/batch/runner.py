"""The job side of a cluster batch system: ``python -m jobtree.batch.runner MANIFEST``.

Every scheduler job (or array task) that jobtree submits runs this. The
manifest lists the submission's entries (one per issued target). A task
either runs the entry of its own array index, or, when the submission packs,
*claims* entries one after another until none is left or its time budget is
spent. Claiming is an exclusive create of the entry's start marker
(``exit/KEY.run``), so each entry runs once however many tasks start, and a
task that starts late simply finds nothing left.

Each entry runs in a process (group) of its own, with its own log; the
runner writes its outcome to ``exit/KEY.exit`` (atomically), so the master
learns how every target ended without asking the scheduler. A kill request
(``exit/KEY.kill``) or the entry's hard limit (``time_limit``, the target's
``timeLimit``) stops one entry; its ``time`` is only an estimate and never
does. SIGTERM (a cancel, the scheduler's wall-time limit, a preemption or a
requeue) stops the entry running and the task; the exit file then carries the
end of the task's output, where the scheduler may have said why
(``DUE TO JOB REQUEUE``), since a requeued task's output is rewritten when it
starts again. SIGUSR1 (the warning the job asks for ``warn_before`` seconds
before its wall time ends) only stops claiming: the running entry goes on.

A task imports the tree's pipeline once and forks each entry's worker from
itself, warm (as singleMachine's fork server does). The worker leaves its
result unsynced (``results/.pending-JOB.ATTEMPT``); the task syncs the file
system once for the results of the entries that ended within PUBLISH_AFTER
seconds of each other, renames them into place and only then writes their
exit files, so a result is durable before the master can read it, with one
sync for many tiny targets.

A task the scheduler requeued starts again from the beginning (it knows from
:data:`RESTART_VARIABLES`). The scheduler ran no incarnation of it alongside
another: Slurm, Grid Engine and LSF kill a task's processes before they queue
it again. So an entry claimed by this task index and left without an exit file
was stranded by an earlier incarnation: the task writes it an exit file saying
so (``requeued``), which the master takes as a preemption (no try counted; the
target is issued again), and never runs it itself.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import gc
import json
import os
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from typing import Any

from ..paths import TreePaths, local_temp_root
from ..workerjob import worker_args
from .forkserver import Pipeline, run_child, warm
from .supervise import KILL_GRACE, Stopping, oom_kills, signal_group
from .wire import claim, marker, read_marker, settle_claimed, settle_once

#: seconds between looks at a running entry (kill requests, its time limit)
_TICK = 0.1
#: a local temp dir untouched for this long and not locked is stale
STALE_AFTER = 60.0
#: variables a scheduler sets in a task it requeued and started again (Slurm's
#: restart count, Grid Engine's RESTARTED=1, LSF's LSB_RESTART=Y)
RESTART_VARIABLES = ("SLURM_RESTART_COUNT", "RESTARTED", "LSB_RESTART")
#: how much of the end of the task's output an exit file of a stopped entry carries
SAID_TAIL = 2048
#: how long (s) a finished target's result may wait to be synced with those
#: of the targets after it, and how many are synced at most at once
PUBLISH_AFTER = 0.1
PUBLISH_MAX = 64


def restarted(environ: dict[str, str] | os._Environ[str]) -> bool:
    """Whether the scheduler says this task is a requeued one started again."""
    return any(environ.get(name, "").strip() not in ("", "0", "N", "n")
               for name in RESTART_VARIABLES)


class Runner:
    """Runs the entries of one task."""

    def __init__(self, manifest: dict[str, Any], index: int) -> None:
        self.manifest = manifest
        self.index = index
        self.exit_dir: str = manifest["exit_dir"]
        self.began = time.time()
        self.stopping = False
        self.draining = False  # warned that the wall time ends soon: claim nothing more
        self.host = socket.gethostname()
        # the running command's Popen, kept so that its __del__ does not reap
        # the child before os.wait4 here can read its status and usage
        self._process: subprocess.Popen[bytes] | None = None
        # each tree's pipeline, imported once, and its config for the workers
        # forked from here (None: the worker reads them itself)
        self._pipelines: dict[str, Pipeline | None] = {}
        self._deferring: dict[str, dict[str, Any]] = {}
        # finished targets whose results wait to be synced: (the result left,
        # its name, the entry, the outcome), and since when the first waits
        self._unpublished: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = []
        self._unpublished_since = 0.0

    # -------------------------------------------------------------- setup
    def prepare(self) -> None:
        """Node-local scratch for temp dirs, and the cleaning of stale ones."""
        scratch = self.manifest.get("local_scratch")
        if scratch:
            scratch = os.path.expandvars(os.path.expanduser(scratch))
            try:
                os.makedirs(scratch, exist_ok=True)
                os.environ["TMPDIR"] = scratch
            except OSError as err:
                print(f"jobtree: cannot use local_scratch {scratch}: {err}; using "
                      f"{os.environ.get('TMPDIR') or '/tmp'}", file=sys.stderr)
        if self.manifest.get("tree_id"):
            clean_stale(local_temp_root(self.manifest["tree_id"]))
        if any(entry.get("worker") for entry in self.manifest["entries"]):
            self._preload()

    def _preload(self) -> None:
        """Imports the worker once, shared by every worker forked from here."""
        from .. import worker

        worker._libc()  # what each worker would load for itself (its parent-death signal)
        gc.freeze()

    # ---------------------------------------------------------------- run
    def run(self) -> int:
        entries = self.manifest["entries"]
        if restarted(os.environ):
            self.give_up_stranded()
        try:
            if not self.manifest.get("pack"):
                if 1 <= self.index <= len(entries):
                    self._try(entries[self.index - 1])
                return 0
            budget = float(self.manifest.get("pack_time") or 0)
            start = (self.index - 1) % max(len(entries), 1)
            for entry in entries[start:] + entries[:start]:
                if self.stopping or self.draining or (time.time() - self.began >= budget):
                    break
                self._try(entry)
                self._tick()
            return 0
        finally:
            self.publish()

    def give_up_stranded(self) -> list[str]:
        """Writes a ``requeued`` exit file for each entry an earlier incarnation
        of this task claimed and left without one (see the module docstring).

        Returns:
            the keys of those entries.
        """
        stranded = []
        for entry in self._entries():
            key = entry["key"]
            if os.path.exists(marker(self.exit_dir, key, "exit")):
                continue
            record = read_marker(marker(self.exit_dir, key, "run"))
            if record is None or not self._mine(record):
                continue
            now = time.time()
            if settle_once(self.exit_dir, key, {
                    "code": None, "reason": "requeued", "maxrss": None, "host": self.host,
                    "task": self.index, "started": record.get("started"), "ended": now,
                    "claimed_on": record.get("host")}):
                stranded.append(key)
                print(f"jobtree: requeued task {self.index} gives up {key}, which an earlier "
                      f"incarnation of it claimed on {record.get('host')}", file=sys.stderr)
        return stranded

    def _entries(self) -> list[dict[str, Any]]:
        """The entries this task may have claimed."""
        return list(self.manifest["entries"])

    def _mine(self, record: dict[str, Any]) -> bool:
        """Whether a start marker's record says this task claimed the entry."""
        return record.get("task") == self.index

    def _try(self, entry: dict[str, Any]) -> None:
        started = time.time()
        record = {"task": self.index, "host": self.host, "pid": os.getpid(),
                  "started": started}
        if claim(self.exit_dir, entry["key"], record):
            self._run_entry(entry, started)

    def _run_entry(self, entry: dict[str, Any], started: float) -> None:
        outcome: dict[str, Any] = {"code": 127, "maxrss": None}
        try:
            pid = self._start(entry)
            if pid is not None:
                outcome = self._wait(entry, pid, started)
        finally:
            if entry.get("worker") and outcome.get("code") != 0 and self.manifest.get("tree_id"):
                # what a worker killed by a signal could not remove itself
                # (one that returned removed its own)
                shutil.rmtree(self._local_dir(entry), ignore_errors=True)
        if (outcome.get("code") in (-signal.SIGTERM, 128 + signal.SIGTERM)
                and outcome.get("reason") is None and not self.stopping):
            time.sleep(_TICK)  # the scheduler signals every process: ours may be on its way
        if self.stopping and outcome.get("code") != 0:
            # the entry ended as the task was stopped (the scheduler's SIGTERM
            # reaches the entry too, which may end before the runner acts)
            outcome["reason"] = outcome.get("reason") or self._stop_reason()
            outcome["said"] = _output_tail()
        ended = time.time()
        outcome.update(started=started, ended=ended, wall=ended - started, host=self.host,
                       task=self.index)
        self._settle(entry, outcome)

    def _settle_now(self, entry: dict[str, Any], outcome: dict[str, Any]) -> None:
        """Writes an entry's exit file (from its claim): the master learns it ended."""
        # not fsynced: the worker synced its result; an exit file lost with its
        # node only makes the target run again
        if not settle_claimed(self.exit_dir, entry["key"], outcome):
            # a pilots' claims folder the master removed, or an exit written first
            print(f"jobtree: the master no longer waits for {entry['key']} (it took its "
                  f"pilot for lost, or had its outcome); this exit is not recorded",
                  file=sys.stderr)

    def _local_dir(self, entry: dict[str, Any]) -> str:
        """The local temp root of the worker running ``entry`` on this node."""
        return os.path.join(local_temp_root(self.manifest["tree_id"]),
                            os.path.basename(entry["key"]))  # JOB.ATTEMPT, as the worker's

    def _start(self, entry: dict[str, Any]) -> int | None:
        argv: list[str] = entry["argv"]
        log: str = entry["log"]
        if entry.get("worker"):
            return self._fork_worker(entry)
        with open(log, "ab") as out:
            try:
                process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                           stderr=subprocess.STDOUT, start_new_session=True,
                                           close_fds=True)
            except OSError as err:
                out.write(f"jobtree: cannot start {argv[0]}: {err}\n".encode())
                return None
        self._process = process
        return process.pid

    def _fork_worker(self, entry: dict[str, Any]) -> int:
        """Forks a worker from this warm process."""
        argv = worker_args(entry["argv"])
        pipeline = warm(self._pipelines, argv)
        config = None
        if pipeline is not None:
            config = self._deferring.get(argv[0])
            if config is None:
                # a result that must be synced is left for the slot to publish
                defer = bool(pipeline.config.get("sync_results", True))
                config = self._deferring[argv[0]] = dict(pipeline.config, defer_results=defer)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            run_child(argv, entry["log"], (), config)
        return pid

    def _settle(self, entry: dict[str, Any], outcome: dict[str, Any]) -> None:
        """A worker that ran to its end left its result unsynced (see
        :meth:`jobtree.worker.Worker.write_result`): the exit waits until the
        result is published, with those of the targets after it (at most
        PUBLISH_AFTER seconds later). A worker stopped before its end left
        nothing the master may read: what it left is removed."""
        pending = self._pending_result(entry)
        if pending is None or not os.path.exists(pending[0]):
            self._settle_now(entry, outcome)
        elif (outcome.get("code") or 0) < 0 or outcome.get("reason") is not None:
            _remove(pending[0])  # maybe torn: the worker would not have renamed it
            self._settle_now(entry, outcome)
        else:
            if not self._unpublished:
                self._unpublished_since = time.monotonic()
            self._unpublished.append((*pending, entry, outcome))
            if len(self._unpublished) >= PUBLISH_MAX:
                self.publish()

    def _pending_result(self, entry: dict[str, Any]) -> tuple[str, str] | None:
        """Where the worker of ``entry`` left its result, and its name."""
        argv = worker_args(entry["argv"]) if entry.get("worker") else []
        if len(argv) != 3 or argv[0] not in self._deferring:
            return None
        paths, job, attempt = TreePaths(argv[0]), int(argv[1]), int(argv[2])
        return paths.pending_result(job, attempt), paths.result(job, attempt)

    def publish(self) -> None:
        """Syncs the results that wait (one sync of their file system for
        all of them), renames each into place and writes its exit file."""
        batch, self._unpublished = self._unpublished, []
        if not batch:
            return
        sync_files([pending for pending, _, _, _ in batch])
        for pending, final, entry, outcome in batch:
            try:
                os.rename(pending, final)
            except FileNotFoundError:  # a new master's start removed it: it reruns the target
                pass
            self._settle_now(entry, outcome)

    def _tick(self) -> None:
        """Publishes the results that waited long enough (at each look at a
        running entry, and between entries)."""
        if self._unpublished and time.monotonic() - self._unpublished_since >= PUBLISH_AFTER:
            self.publish()

    def _wait(self, entry: dict[str, Any], pid: int, started: float) -> dict[str, Any]:
        limit = entry.get("time_limit")
        kill_file = marker(self.exit_dir, entry["key"], "kill")
        exited = _exit_notifier(pid)
        try:
            outcome = self._watch(entry, pid, started, limit, kill_file, exited)
            if outcome.get("reason") == "time_limit":
                outcome["limit"] = limit
            return outcome
        finally:
            if exited is not None:
                os.close(exited)

    def _watch(self, entry: dict[str, Any], pid: int, started: float,
               limit: float | None, kill_file: str, exited: int | None) -> dict[str, Any]:
        reason: str | None = None
        stopping = Stopping(KILL_GRACE, clock=time.time)
        oom_before = oom_kills()  # a SIGKILL while the count grows is the OOM killer's
        if exited is not None:  # most tiny targets have ended by the first look
            try:
                select.select([exited], [], [], _TICK)
            except InterruptedError:
                pass
        while True:
            self._tick()
            try:
                done, status, usage = os.wait4(pid, os.WNOHANG)
            except ChildProcessError:
                return {"code": None, "reason": reason or "lost", "maxrss": None}
            if done:
                code = os.waitstatus_to_exitcode(status)
                if (code == -signal.SIGKILL and reason is None and oom_before is not None
                        and (oom_kills() or 0) > oom_before):
                    reason = "memory"
                if self._process is not None:
                    self._process.returncode = code  # reaped here
                    self._process = None
                return {"code": code, "reason": reason, "maxrss": usage.ru_maxrss * 1024}
            if reason is None:
                if self.stopping:
                    reason = self._stop_reason()
                elif os.path.exists(kill_file):
                    reason = "killed"
                elif limit and time.time() - started > float(limit):
                    reason = "time_limit"
                elif self._over_memory(entry, pid):
                    reason = "memory"
                    signal_group(pid, signal.SIGKILL)
                if reason is not None:
                    stopping.term(pid)
            else:
                stopping.escalate()
            if exited is None:
                time.sleep(_TICK)
            else:  # wakes the moment the entry exits: tiny targets wait for no tick
                try:
                    select.select([exited], [], [], _TICK)
                except InterruptedError:
                    pass

    def _over_memory(self, entry: dict[str, Any], pid: int) -> bool:
        """Whether a running entry uses more memory than it may (here the
        scheduler enforces that: never)."""
        return False

    def _stop_reason(self) -> str:
        """Why SIGTERM came: the task's wall time (the scheduler's limit) or a cancel."""
        limit = self.manifest.get("task_walltime")
        if limit and time.time() - self.began >= 0.95 * float(limit):
            return "timeout"
        return "killed"


def _output_tail() -> str | None:
    """The end of the task's output (this process's standard output, when it
    is a file), where the scheduler writes why it stops a job."""
    try:
        fd = sys.stdout.fileno()
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None  # a pipe or a terminal: nothing to read back
        with open(f"/proc/self/fd/{fd}", "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - SAID_TAIL))
            return handle.read().decode(errors="replace")
    except (OSError, ValueError, AttributeError):
        return None


def _exit_notifier(pid: int) -> int | None:
    """A descriptor that becomes readable when ``pid`` exits (Linux pidfd), or None."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def sync_files(paths: list[str]) -> None:
    """Makes the files durable: one ``syncfs`` of the file system of the
    first (Linux), else an fsync of each."""
    if not paths:
        return
    try:
        fd = os.open(os.path.dirname(paths[0]) or ".", os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        fd = -1
    if fd >= 0:
        try:
            if _syncfs is not None and _syncfs(fd) == 0:
                return
        finally:
            os.close(fd)
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _libc_syncfs() -> Any:
    try:
        return ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None


_syncfs = _libc_syncfs()


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def clean_stale(root: str) -> None:
    """Removes local temp dirs of earlier runs on this node that nothing holds:
    left by a worker killed with SIGKILL, or a node that went down."""
    try:
        names = os.listdir(root)
    except OSError:
        return
    now = time.time()
    for name in names:
        path = os.path.join(root, name)
        try:
            if now - os.stat(path).st_mtime < STALE_AFTER:
                continue
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            continue  # a running worker holds it
        finally:
            os.close(fd)
        shutil.rmtree(path, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point of a job script."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m jobtree.batch.runner MANIFEST", file=sys.stderr)
        return 2
    with open(args[0], encoding="utf-8") as handle:
        manifest = json.load(handle)
    variable = manifest.get("index_variable") or ""
    raw = os.environ.get(variable, "") if variable else ""
    index = int(raw) if raw.strip().isdigit() and int(raw) > 0 else 1
    runner = Runner(manifest, index)

    def on_term(signum: int, frame: Any) -> None:
        runner.stopping = True

    def on_warning(signum: int, frame: Any) -> None:
        runner.draining = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    # the warning asked for warn_before seconds before the wall time ends
    signal.signal(signal.SIGUSR1, on_warning)
    signal.signal(signal.SIGUSR2, on_term)  # LSF's, at the run limit
    runner.prepare()
    return runner.run()


if __name__ == "__main__":
    sys.exit(main())
