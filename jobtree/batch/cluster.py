"""The shared base of every cluster batch system: all the I/O, once.

An adapter (Slurm, Grid Engine, Torque, PBS Pro, LSF) subclasses
:class:`ClusterBatchSystem` and fills in the pure methods of
:class:`~jobtree.batch.adapter.SchedulerDialect`. This class does the rest:

- **Submissions.** Issued targets are gathered for a moment and grouped by
  resource request. Each group becomes one array job (or a plain job) whose
  tasks run ``python -m jobtree.batch.runner MANIFEST``; with packing on,
  each task claims targets one after another within a time budget, so a
  thousand tiny targets cost a few scheduler jobs, not a thousand (see
  :mod:`jobtree.batch.runner`). ``max_jobs`` bounds the scheduler jobs
  (array tasks count one each) queued or running at once, and
  ``submit_rate`` the submit commands per second.
- **Outcomes from files.** Each target's runner writes ``exit/KEY.exit``;
  the I/O thread looks at that folder every fraction of a second, so
  success never waits for, or depends on, the scheduler's accounting.
- **One status command per poll** lists every job of the tree (all jobs of
  a tree share one name). It finds tasks that ended without an exit file
  (node lost, wall time, out of memory: then the accounting command says
  which), cancels tasks left with nothing to do, and adopts a previous
  master's jobs.
- **A scheduler that is down** makes commands fail with transient errors:
  they are retried with backoff, the log says so once, and no target fails
  for it.

All scheduler commands run on one background thread, so the master's loop
never blocks on a slow controller.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import json
import logging
import math
import os
import queue
import shlex
import shutil
import sys
import threading
import time
from typing import Iterable, Sequence

from ..errors import BatchSystemError, ResourceError, SchedulerCommandError
from ..paths import write_atomic
from ..resources import Resources, format_duration
from . import runner
from .adapter import SchedulerDialect
from .base import BatchJobId, BatchSystem, ExitReason, JobSpec, Update
from .commands import CommandRunner
from .jobfiles import (
    Entry,
    Submitted,
    append,
    environment_script,
    read_json,
    remove,
    tail,
    tasks_of,
    update_for_lost,
    update_from_exit,
)
from .native import NativeJob, NativeState, Request, Submission

logger = logging.getLogger(__name__)

#: a task missing from the listing this soon after its submission may not be listed yet
_ABSENT_GRACE = 10.0
#: seconds to gather issued targets before submitting them
_GATHER = 0.1
#: most entries in one submission
_MAX_ENTRIES = 1000
#: most targets the master hands over at once per allowed scheduler job when packing
_PER_TASK = 50
#: submissions whose tasks all ended without running a single target, before
#: their targets fail (the job script cannot start: a bad prologue, no Python)
_MAX_BARREN = 2


@dataclasses.dataclass(frozen=True)
class ClusterSettings:
    """How a cluster batch system behaves (defaults, config file, options).

    Attributes:
        workdir: the folder for job scripts, manifests, exit files and the
            schedulers' own output (``TREE/batch``); None until the tree exists.
        job_name: the name of every job of the tree.
        tree_id: the tree's id (the runner cleans its stale local temp dirs).
        queue: default partition or queue.
        account: default account or project.
        parallel_environment: Grid Engine's parallel environment for multi-slot jobs.
        extra: directives added to every job script, verbatim.
        prologue: shell lines run by every job before the worker (``module load …``).
        local_scratch: node-local folder for local temp dirs (may use $VARS of the node).
        max_jobs: most scheduler jobs (array tasks count one each) queued or running.
        submit_rate: most submit commands per second.
        poll_interval: seconds between status commands.
        arrays: whether to submit groups of targets as array jobs.
        pack_time: seconds a task may keep claiming further targets (0: one target a task).
        exit_grace: seconds to wait for an exit file after a task ended without one.
        launch_grace: seconds a task may be listed as running before its job
            script has started; after that it counts as a launch the scheduler
            lost, and is cancelled and its targets submitted again.
        command_timeout: seconds one scheduler command may take.
        max_cpus: the largest cpu request allowed, if known.
        max_memory: the largest memory request allowed, if known.
    """

    workdir: str | None = None
    job_name: str = "jobtree"
    tree_id: str | None = None
    queue: str | None = None
    account: str | None = None
    parallel_environment: str | None = None
    extra: tuple[str, ...] = ()
    prologue: tuple[str, ...] = ()
    local_scratch: str | None = None
    max_jobs: int = 1000
    submit_rate: float = 2.0
    poll_interval: float = 10.0
    arrays: bool = True
    pack_time: float = 60.0
    exit_grace: float = 30.0
    launch_grace: float = 300.0
    command_timeout: float = 60.0
    max_cpus: float | None = None
    max_memory: int | None = None


class ClusterBatchSystem(SchedulerDialect, BatchSystem):
    """A batch system that submits to a cluster scheduler (see the module doc).

    Args:
        settings: behaviour and defaults.
        runner_: runs the scheduler commands (injectable for tests).
    """

    local = False
    reports_scheduler_ids = True

    def __init__(self, settings: ClusterSettings, runner_: CommandRunner | None = None) -> None:
        self.settings = settings
        self.commands = runner_ or CommandRunner(self.transient,
                                                 timeout=settings.command_timeout)
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._updates: queue.Queue[Update] = queue.Queue()
        self._open: dict[BatchJobId, Entry] = {}
        self._by_key: dict[str, Entry] = {}
        self._pending: collections.deque[Entry] = collections.deque()
        self._subs: dict[str, Submitted] = {}
        self._native: dict[BatchJobId, str] = {}  # scheduler ids learnt, not yet collected
        self._last_issue = 0.0
        self._tokens = max(1.0, settings.submit_rate)
        self._tokens_at = time.monotonic()
        self._next_poll = 0.0
        self._last_rows: dict[str, NativeJob] = {}
        self._cleared: set[str] = set()  # failed tasks already cancelled
        self._unreachable_since: float | None = None
        self._retry_submit_at = 0.0
        self._counter = 0
        self._closed = False
        self._thread: threading.Thread | None = None
        self._ready = False

    def check_commands(self) -> None:
        """Checks that the scheduler's commands can be run here.

        Raises:
            BatchSystemError: they are not on PATH (say where to run instead).
        """
        command = self.status_command(self.settings.job_name)[0]
        if shutil.which(command) is None:
            raise BatchSystemError(
                f"--batchSystem {self.name} needs the scheduler's commands, but {command} is "
                f"not on PATH. Run jobtree on a machine that can submit to the cluster (a "
                f"login node; some sites need a `module load` first), or choose another "
                f"--batchSystem. Nothing was run; a tree that exists is left as it is.")

    # ------------------------------------------------------------ paths
    def _dir(self, *parts: str) -> str:
        if not self.settings.workdir:
            raise ResourceError("this batch system has no working folder (no tree)")
        return os.path.join(self.settings.workdir, *parts)

    @property
    def exit_dir(self) -> str:
        """Where runners leave start markers and exit files."""
        return self._dir("exit")

    def _prepare(self) -> None:
        if self._ready:
            return
        for folder in ("exit", "subs", "out"):
            os.makedirs(self._dir(folder), mode=0o700, exist_ok=True)
        write_atomic(self._dir("env.sh"), environment_script(dict(os.environ)).encode(),
                     sync=False)
        self._ready = True
        self._thread = threading.Thread(target=self._loop, daemon=True,
                                        name=f"jobtree-{self.name}")
        self._thread.start()

    # ------------------------------------------------- the contract: master
    def limits(self) -> Resources:
        return Resources(cpu=self.settings.max_cpus, memory=self.settings.max_memory)

    def capacity(self) -> int:
        per_task = _PER_TASK if self.settings.pack_time > 0 else 1
        return max(1, min(self.settings.max_jobs * per_task, 20000))

    def issue(self, spec: JobSpec) -> BatchJobId:
        with self._lock:
            self._prepare()
            key = f"{spec.job_id}.{spec.attempt}"
            batch_id = BatchJobId(key)
            worker = spec.worker is not None
            try:
                request: Request | None = self.request_for(spec.resources)
            except ResourceError as err:
                request = None
                self._updates.put(Update(batch_id, None, ExitReason.FAILED, message=str(err),
                                         permanent=True))
            entry = Entry(batch_id, key, list(spec.argv), spec.log_path,
                           spec.resources.time, request, worker)
            self._open[batch_id] = entry
            self._by_key[key] = entry
            if request is None:
                entry.reported = True
            else:
                self._pending.append(entry)
                self._last_issue = time.monotonic()
            self._wake.set()
            return batch_id

    def kill(self, ids: Sequence[BatchJobId]) -> None:
        with self._lock:
            unsubmitted: list[Entry] = []
            for batch_id in ids:
                entry = self._open.get(batch_id)
                if entry is None or entry.reported:
                    continue
                entry.killed = True
                if entry.sub is None:
                    unsubmitted.append(entry)
                    self._report(entry, Update(batch_id, None, ExitReason.KILLED))
                elif runner.claim(self.exit_dir, entry.key, {"killed": True}):
                    self._report(entry, Update(batch_id, None, ExitReason.KILLED))
                else:
                    write_atomic(runner.marker(self.exit_dir, entry.key, "kill"), b"kill",
                                 sync=False)
            self._drop_pending(unsubmitted)
            self._wake.set()

    def issued(self) -> set[BatchJobId]:
        with self._lock:
            return set(self._open)

    def running(self) -> dict[BatchJobId, float]:
        now = time.time()
        with self._lock:
            return {e.batch_id: max(0.0, now - e.started) for e in self._open.values()
                    if e.started is not None and not e.reported}

    def next_update(self, timeout: float) -> Update | None:
        try:
            update = self._updates.get(timeout=max(timeout, 0)) if timeout > 0 else \
                self._updates.get_nowait()
        except queue.Empty:
            return None
        with self._lock:
            self._open.pop(update.batch_id, None)
        return update

    def scheduler_ids(self) -> dict[BatchJobId, str]:
        with self._lock:
            known, self._native = self._native, {}
            return {k: v for k, v in known.items() if k in self._open}

    def adopt(self, jobs: Sequence[tuple[int, int]]) -> dict[tuple[int, int], BatchJobId]:
        if not self.settings.workdir or not os.path.isdir(self._dir("subs")):
            return {}
        with self._lock:
            self._prepare()
            wanted = {f"{job}.{attempt}": (job, attempt) for job, attempt in jobs}
            self._load_subs(wanted)
        try:
            rows = self._list()
        except SchedulerCommandError as err:
            logger.warning("cannot list the scheduler's jobs to adopt them (%s); the "
                           "targets they ran will run again", err)
            rows = None
        adopted: dict[tuple[int, int], BatchJobId] = {}
        orphans: list[str] = []
        with self._lock:
            for sub in list(self._subs.values()):
                alive = self._alive_tasks(sub, rows or {}, time.time())
                for entry in sub.entries:
                    exited = os.path.exists(runner.marker(self.exit_dir, entry.key, "exit"))
                    if entry.key in wanted and (alive or exited):
                        adopted[wanted[entry.key]] = entry.batch_id
                    else:
                        entry.reported = True
                        self._open.pop(entry.batch_id, None)
                if all(e.reported for e in sub.entries):
                    orphans.extend(self._task_ids(sub, alive))
            known = {t for s in self._subs.values() for t in self._task_ids(s)}
            orphans.extend(r.id for r in (rows or {}).values()
                           if r.state.alive and r.id not in known)
        if orphans:
            logger.info("cancelling %d jobs of this tree that no target needs any more",
                        len(orphans))
            self._cancel(orphans)
        self._wake.set()
        return adopted

    def kill_tree(self) -> int:
        rows = self._list()
        alive = [r.id for r in rows.values() if r.state.alive]
        if not alive:
            return 0
        command = self.cancel_by_name_command(self.settings.job_name)
        if command is not None:
            # jobs that ended since the listing make some schedulers exit non-zero
            self.commands.run(command, ok=lambda code, stderr: True)
        else:
            self._cancel(alive)
        return len(alive)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._pending.clear()
            # whatever is still queued or running: targets being stopped, or tasks
            # of a packing submission left with nothing to do
            live = [s for s in self._subs.values()
                    if s.job_id and len(s.cancelled | s.ended_tasks) < s.tasks]
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=self.settings.command_timeout + 5)
        ids = [self.task_id(s.job_id or "", None) for s in live]
        if ids:
            try:
                self._cancel(ids)
            except SchedulerCommandError as err:
                logger.warning("could not cancel %d jobs of this tree: %s; cancel them with "
                               "jobTreeKill", len(ids), err)

    # -------------------------------------------------- resource requests
    def request_for(self, resources: Resources) -> Request:
        """The scheduler request for a target's resources and the settings.

        Raises:
            ResourceError: it cannot be expressed (the adapter's directives say why).
        """
        s = self.settings
        request = Request(
            cores=max(1, math.ceil(resources.cpu or 1)), memory=resources.memory,
            walltime=resources.time, disk=resources.disk, gpus=resources.gpus,
            nodes=resources.nodes or 1, processes=resources.processes or 1,
            queue=resources.queue or s.queue, account=resources.account or s.account,
            parallel_environment=s.parallel_environment,
            extra=tuple(s.extra) + tuple(resources.directives or ()))
        self.directives(Submission("check", "check", "check", 1, None, request, "."))
        return request

    # ------------------------------------------------------- the I/O thread
    def _loop(self) -> None:
        while True:
            with self._lock:
                if self._closed:
                    return
            try:
                self._submit_due()
                self._scan()
                if time.monotonic() >= self._next_poll:
                    self._poll()
            except Exception:  # noqa: BLE001 - the thread must go on; the log says why
                logger.exception("the %s batch system hit an unexpected error; it goes on",
                                 self.name)
            self._wake.wait(0.2)
            self._wake.clear()

    def _report(self, entry: Entry, update: Update) -> None:
        entry.reported = True
        self._updates.put(update)

    # ---------------------------------------------------------- submitting
    def _submit_due(self) -> None:
        """Submits what was issued, oldest first, within max_jobs and the rate."""
        now = time.monotonic()
        with self._lock:
            if not self._pending or now < self._retry_submit_at:
                return
            if now - self._last_issue < _GATHER:
                self._wake.set()
                return
            budget = self.settings.max_jobs - sum(s.live_tasks() for s in self._subs.values())
            if budget <= 0:
                return
            groups: dict[tuple[Request, bool], list[Entry]] = {}
            for entry in self._pending:
                assert entry.request is not None
                groups.setdefault((entry.request, entry.worker), []).append(entry)
            # the oldest `budget` targets get the scheduler jobs there is room for
            slots = collections.Counter((e.request, e.worker)
                                        for e in itertools.islice(self._pending, budget))
        for key, entries in groups.items():
            tasks = slots.get(key, 0)
            while entries and tasks > 0 and self._take_token():
                sub = self._plan(entries, tasks)
                if not self._submit(sub, key[0]):
                    return
                tasks -= sub.tasks
                entries = entries[len(sub.entries):]

    def _take_token(self) -> bool:
        now = time.monotonic()
        rate = max(self.settings.submit_rate, 1e-3)
        self._tokens = min(max(1.0, rate), self._tokens + (now - self._tokens_at) * rate)
        self._tokens_at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    def _plan(self, entries: list[Entry], tasks: int) -> Submitted:
        """The next submission of a group: ``tasks`` scheduler jobs (or array
        tasks) for its oldest targets; packing tasks may claim the rest too."""
        pack = self.settings.pack_time > 0
        if not self.settings.arrays:
            tasks = 1
        chosen = entries[:_MAX_ENTRIES] if pack else entries[:min(tasks, _MAX_ENTRIES)]
        tasks = min(tasks, len(chosen))
        if 1 < tasks < self.min_array:
            tasks = 1
            chosen = chosen if pack else chosen[:1]
        self._counter += 1
        sub_id = f"{int(time.time())}-{os.getpid()}-{self._counter}"
        return Submitted(sub_id, chosen, tasks, pack, time.time())

    def _submit(self, sub: Submitted, request: Request) -> bool:
        """Writes and submits one job; False if the scheduler is unreachable."""
        walltime = request.walltime
        if sub.pack and walltime:
            walltime = walltime + self.settings.pack_time + 60
        request = dataclasses.replace(request, walltime=walltime)
        script = self._dir("subs", f"{sub.sub_id}.sh")
        job = Submission(self.settings.job_name, script, self._dir("out", sub.sub_id),
                         sub.tasks, None, request, self._dir())
        manifest = {"entries": [e.manifest() for e in sub.entries], "exit_dir": self.exit_dir,
                    "index_variable": self.index_variable if sub.tasks > 1 else "",
                    "tasks": sub.tasks, "pack": sub.pack,
                    "pack_time": self.settings.pack_time,
                    "task_walltime": walltime, "tree_id": self.settings.tree_id,
                    "local_scratch": self.settings.local_scratch}
        manifest_path = self._dir("subs", f"{sub.sub_id}.json")
        try:
            text = self._script(job, manifest_path)
        except ResourceError as err:
            self._fail(sub.entries, str(err))
            return True
        write_atomic(manifest_path, json.dumps(manifest).encode(), sync=False)
        write_atomic(script, text.encode(), sync=False)
        os.chmod(script, 0o700)
        argv, stdin = self.submit_command(job)
        try:
            # one try: while the scheduler is down the I/O thread tries again later
            out = self.commands.run(argv, stdin=text if self.script_on_stdin else stdin,
                                    attempts=1)
            job_id = self.parse_submit(out)
        except SchedulerCommandError as err:
            if err.transient:
                self._unreachable(err)
                self._retry_submit_at = time.monotonic() + 15
                return False
            self._fail(sub.entries, f"{self.name} refused the job: {err}")
            return True
        except ValueError as err:
            self._fail(sub.entries, f"cannot read the job id {self.name} printed: {err}")
            return True
        self._reachable()
        sub.job_id = job_id
        write_atomic(self._dir("subs", f"{sub.sub_id}.id"), job_id.encode(), sync=False)
        with self._lock:
            self._subs[sub.sub_id] = sub
            for entry in sub.entries:
                entry.sub = sub
                self._native[entry.batch_id] = job_id
                if entry.reported:  # killed while it was being submitted: never run it
                    runner.claim(self.exit_dir, entry.key, {"killed": True})
            self._drop_pending(sub.entries)
        logger.debug("submitted %d targets as %s job %s (%d tasks)", len(sub.entries),
                     self.name, job_id, sub.tasks)
        return True

    def _drop_pending(self, entries: Iterable[Entry]) -> None:
        """Takes entries off the queue of those to submit (in one pass)."""
        gone = set(entries)
        if gone:
            self._pending = collections.deque(e for e in self._pending if e not in gone)

    def _script(self, job: Submission, manifest: str) -> str:
        sub_id = os.path.basename(manifest)[:-5]
        task = f"${{{self.index_variable}}}" if job.tasks > 1 else "1"
        lines = ["#!/bin/sh", *self.directives(job),
                 f"# jobtree job {sub_id} of tree {self.settings.tree_id or '-'}",
                 # first, before the prologue: this launch happened (see _lost_launches)
                 f": > {shlex.quote(self.exit_dir)}/\"{sub_id}-{task}.up\" 2>/dev/null",
                 f". {shlex.quote(self._dir('env.sh'))}",
                 *self.settings.prologue,
                 f"cd {shlex.quote(os.getcwd())} 2>/dev/null || cd /",
                 f"exec {shlex.quote(sys.executable)} -m jobtree.batch.runner "
                 f"{shlex.quote(manifest)}", ""]
        return "\n".join(lines)

    def _fail(self, entries: Iterable[Entry], message: str) -> None:
        logger.error("%s", message)
        entries = list(entries)
        with self._lock:
            self._drop_pending(entries)
            for entry in entries:
                append(entry.log, f"jobtree: {message}\n")
                self._report(entry, Update(entry.batch_id, None, ExitReason.FAILED,
                                           message=message, permanent=True))

    # ----------------------------------------------------------- outcomes
    def _scan(self) -> None:
        """Reads the start markers and exit files runners left."""
        try:
            names = os.listdir(self.exit_dir)
        except OSError:
            return
        with self._lock:
            for name in names:
                key, _, kind = name.rpartition(".")
                entry = self._by_key.get(key)
                if entry is None or entry.reported:
                    continue
                if kind == "run" and entry.started is None:
                    record = read_json(os.path.join(self.exit_dir, name))
                    if record and "started" in record:
                        entry.started = float(record["started"])
                        entry.task = int(record.get("task", 1))
                        if entry.sub is not None and entry.sub.job_id:
                            self._native[entry.batch_id] = self.task_id(
                                entry.sub.job_id, entry.task if entry.sub.tasks > 1 else None)
                elif kind == "exit":
                    record = read_json(os.path.join(self.exit_dir, name))
                    if record is not None:
                        self._report(entry, update_from_exit(entry, record, self._task_of(entry)))
            # tasks of a packing submission that came too late to claim anything are
            # cancelled at once, before the scheduler starts them only to exit
            excess = [task for sub in self._subs.values() if sub.pack and sub.tasks > 1
                      and len(sub.cancelled | sub.ended_tasks) < sub.tasks
                      and all(e.started is not None or e.reported for e in sub.entries)
                      for task in self._excess(sub)]
            self._tidy()
        if excess:
            self._cancel(excess)

    def _task_of(self, entry: Entry) -> str | None:
        if entry.sub is None or not entry.sub.job_id:
            return None
        index = entry.task if entry.sub.tasks > 1 else None
        if index is None and entry.sub.tasks > 1 and not entry.sub.pack:
            index = entry.sub.entries.index(entry) + 1
        return self.task_id(entry.sub.job_id, index)

    def _tidy(self) -> None:
        """Removes the files of submissions whose targets were all reported."""
        for sub in list(self._subs.values()):
            if not all(e.reported for e in sub.entries):
                continue
            if len(sub.ended_tasks | sub.cancelled) < sub.tasks:
                continue  # a late task could still claim: keep the markers
            for entry in sub.entries:
                for kind in ("run", "exit", "kill"):
                    remove(runner.marker(self.exit_dir, entry.key, kind))
                self._by_key.pop(entry.key, None)
            for index in range(1, sub.tasks + 1):
                remove(runner.launch_marker(self.exit_dir, sub.sub_id, index))
            for suffix in (".sh", ".json", ".id"):
                remove(self._dir("subs", sub.sub_id + suffix))
            del self._subs[sub.sub_id]

    # ---------------------------------------------------------- the poll
    def _list(self, attempts: int | None = None) -> dict[str, NativeJob]:
        argv = self.status_command(self.settings.job_name)
        out = self.commands.run(argv, ok=self.no_jobs, attempts=attempts)
        return {row.id: row for row in self.parse_status(out)
                if row.name is None or row.name == self.settings.job_name}

    def _poll(self) -> None:
        self._next_poll = time.monotonic() + self.settings.poll_interval
        with self._lock:
            if not any(s.job_id for s in self._subs.values()):
                return
        try:
            rows = self._list(attempts=1)  # the next poll is the retry
        except SchedulerCommandError as err:
            if not err.transient:
                logger.warning("the %s status command failed: %s", self.name, err)
            self._unreachable(err)
            # back off while it stays down: up to a minute between tries
            down = time.monotonic() - (self._unreachable_since or time.monotonic())
            self._next_poll = time.monotonic() + min(60.0, max(
                self.settings.poll_interval, down / 2))
            return
        self._reachable()
        self._last_rows = rows
        now = time.time()
        excess: list[str] = []
        lost: list[Entry] = []
        with self._lock:
            for sub in list(self._subs.values()):
                if not sub.job_id:
                    continue
                self._alive_tasks(sub, rows, now)
                excess.extend(self._excess(sub))
                excess.extend(self._lost_launches(sub, rows, now))
                lost.extend(self._ended_without_exit(sub, now))
            # a task listed as failed is cancelled once: one held in an error state
            # (Grid Engine's Eqw) would otherwise stay in the queue for ever
            stuck = [i for i, row in rows.items()
                     if row.state is NativeState.FAILED and i not in self._cleared]
            self._cleared.update(stuck)
            excess.extend(stuck)
        if excess:
            self._cancel(excess)
        if lost:
            self._settle_lost(lost)

    def _task_ids(self, sub: Submitted, only: Iterable[int] | None = None) -> list[str]:
        if not sub.job_id:
            return []
        if sub.tasks == 1:
            return [self.task_id(sub.job_id, None)] if only is None or 1 in set(only) else []
        indices = range(1, sub.tasks + 1) if only is None else sorted(set(only))
        return [self.task_id(sub.job_id, i) for i in indices]

    def _alive_tasks(self, sub: Submitted, rows: dict[str, NativeJob], now: float) -> set[int]:
        """Updates which tasks of ``sub`` ended; returns the alive ones."""
        alive: set[int] = set()
        young = now - sub.submitted < _ABSENT_GRACE
        for index in range(1, sub.tasks + 1):
            row = rows.get(self.task_id(sub.job_id or "", index if sub.tasks > 1 else None))
            if (row is not None and row.state.alive) or (row is None and young):
                alive.add(index)
            else:
                sub.ended_tasks.add(index)
        return alive

    def _lost_launches(self, sub: Submitted, rows: dict[str, NativeJob],
                       now: float) -> list[str]:
        """Tasks listed as running for longer than ``launch_grace`` whose job
        script never started (its first command writes ``exit/SUB-TASK.up``):
        launches the scheduler lost, as when a node's daemon dies at that moment.
        They are cancelled; their targets are submitted again without a try
        counted (as for any task that ended without claiming a target)."""
        lost: list[int] = []
        for index in range(1, sub.tasks + 1):
            if index in sub.ended_tasks or index in sub.cancelled or index in sub.launched:
                continue
            row = rows.get(self.task_id(sub.job_id or "", index if sub.tasks > 1 else None))
            if row is None or row.state is not NativeState.RUNNING:
                continue
            since = sub.running_since.setdefault(index, now)
            if now - since < self.settings.launch_grace:
                continue
            if os.path.exists(runner.launch_marker(self.exit_dir, sub.sub_id, index)):
                sub.launched.add(index)
                continue
            lost.append(index)
        if not lost:
            return []
        sub.cancelled.update(lost)
        ids = self._task_ids(sub, lost)
        logger.warning(
            "%s %s %s listed as running for over %s, but %s job script never started: "
            "a launch the scheduler lost (a node daemon that died?). Cancelling %s; "
            "%s targets go to a new job (launch_grace in the cluster config sets the "
            "wait).", self.name,
            "jobs" if len(ids) > 1 else "job", ", ".join(ids),
            format_duration(self.settings.launch_grace), "their" if len(ids) > 1 else "its",
            "them" if len(ids) > 1 else "it", "their" if len(ids) > 1 else "its")
        return ids

    def _excess(self, sub: Submitted) -> list[str]:
        """Queued tasks of a packing submission whose targets are all claimed."""
        if not sub.pack or sub.tasks == 1:
            return []
        claimers: set[int] = set()
        for entry in sub.entries:
            if entry.reported and entry.task is None:
                continue  # killed before it started
            if entry.task is None:
                record = read_json(runner.marker(self.exit_dir, entry.key, "run"))
                if record is None:
                    return []  # a target is still to be claimed
                if "task" in record:
                    entry.task = int(record["task"])
            if entry.task is not None:
                claimers.add(entry.task)
        idle = set(range(1, sub.tasks + 1)) - claimers - sub.ended_tasks - sub.cancelled
        sub.cancelled |= idle
        return self._task_ids(sub, idle)

    def _ended_without_exit(self, sub: Submitted, now: float) -> list[Entry]:
        """Targets whose task ended without leaving an exit file; unclaimed
        targets of a submission whose tasks all ended go back to be submitted."""
        lost: list[Entry] = []
        all_ended = len(sub.ended_tasks | sub.cancelled) >= sub.tasks
        unclaimed: list[Entry] = []
        for index, entry in enumerate(sub.entries, 1):
            if entry.reported:
                continue
            task = entry.task if sub.pack else index
            if entry.started is None and not os.path.exists(
                    runner.marker(self.exit_dir, entry.key, "run")):
                if all_ended:
                    unclaimed.append(entry)
                continue
            if task is not None and task in sub.ended_tasks:
                entry.ended_seen = entry.ended_seen or now
                if now - entry.ended_seen >= self.settings.exit_grace:
                    lost.append(entry)
        if unclaimed:
            self._resubmit(sub, unclaimed)
        return lost

    def _resubmit(self, sub: Submitted, entries: list[Entry]) -> None:
        ran_any = any(e.started is not None or e.reported for e in sub.entries
                      if e not in entries)
        barren: list[Entry] = []
        for entry in entries:
            entry.barren += 0 if ran_any else 1
            if entry.barren >= _MAX_BARREN:
                barren.append(entry)
                continue
            entry.sub = None
            self._pending.appendleft(entry)
        sub.entries = [e for e in sub.entries if e not in entries]
        if barren:
            output = tail(self._dir("out"), sub.sub_id)
            self._fail(barren, f"{self.name} jobs of these targets ended {_MAX_BARREN} times "
                               f"without running them (job {sub.job_id}); the job script "
                               f"could not start the worker. Its output: {output}")

    def _settle_lost(self, entries: list[Entry]) -> None:
        ids = sorted({t for e in entries if (t := self._task_of(e)) is not None})
        accounting: dict[str, NativeJob] = {}
        command = self.accounting_command(ids) if ids else None
        if command is not None:
            try:
                accounting = {r.id: r for r in self.parse_accounting(self.commands.run(command))}
            except SchedulerCommandError as err:
                logger.debug("accounting unavailable: %s", err)
        with self._lock:
            for entry in entries:
                if entry.reported:
                    continue
                exit_file = runner.marker(self.exit_dir, entry.key, "exit")
                record = read_json(exit_file)
                if record is not None:
                    self._report(entry, update_from_exit(entry, record, self._task_of(entry)))
                    continue
                task = self._task_of(entry)
                # the accounting's word, else the listing's (qstat -x, bjobs -a and
                # squeue -t all keep finished jobs for a while)
                row = accounting.get(task or "") or self._last_rows.get(task or "")
                self._report(entry, update_for_lost(self.name, entry, row, task))

    def _cancel(self, ids: Sequence[str]) -> None:
        for start in range(0, len(ids), 500):
            try:
                self.commands.run(self.cancel_command(ids[start:start + 500]),
                                  ok=lambda code, err: True)
            except SchedulerCommandError as err:
                logger.warning("could not cancel %s jobs: %s", self.name, err)

    def _load_subs(self, wanted: dict[str, tuple[int, int]]) -> None:
        """Rebuilds the submissions a previous master left (for adopt)."""
        folder = self._dir("subs")
        for name in sorted(os.listdir(folder)):
            if not name.endswith(".id"):
                continue
            sub_id = name[:-3]
            manifest = read_json(os.path.join(folder, sub_id + ".json"))
            try:
                with open(os.path.join(folder, name), encoding="utf-8") as handle:
                    job_id = handle.read().strip()
            except OSError:
                continue
            if manifest is None or not job_id or sub_id in self._subs:
                continue
            entries = []
            for item in manifest["entries"]:
                entry = Entry(BatchJobId(item["key"]), item["key"], item["argv"], item["log"],
                               item.get("walltime"), None, bool(item.get("worker")))
                record = read_json(runner.marker(self.exit_dir, entry.key, "run"))
                if record and "started" in record:
                    entry.started, entry.task = float(record["started"]), int(record["task"])
                entries.append(entry)
            tasks = tasks_of(manifest, entries)
            sub = Submitted(sub_id, entries, tasks, bool(manifest.get("pack")),
                       os.path.getmtime(os.path.join(folder, name)), job_id)
            for entry in entries:
                entry.sub = sub
                self._by_key[entry.key] = entry
                if entry.key in wanted:
                    self._open[entry.batch_id] = entry
                else:
                    entry.reported = True
            self._subs[sub_id] = sub

    # ----------------------------------------------------- reachability
    def _unreachable(self, err: SchedulerCommandError) -> None:
        if self._unreachable_since is None:
            self._unreachable_since = time.monotonic()
            logger.warning("cannot reach %s (%s); jobtree keeps its targets and tries again",
                           self.name, err)

    def _reachable(self) -> None:
        if self._unreachable_since is not None:
            logger.warning("%s answers again after %.0fs", self.name,
                           time.monotonic() - self._unreachable_since)
            self._unreachable_since = None
