"""The shared base of every cluster batch system: all the I/O, once.

An adapter (Slurm, Grid Engine, Torque, PBS Pro, LSF) is a pure
:class:`~jobtree.batch.adapter.SchedulerDialect`. :class:`ClusterBatchSystem`
holds one, runs its commands (:mod:`~jobtree.batch.scheduler`), keeps the job
files (:class:`~jobtree.batch.jobfiles.JobFolder`) and carries out the pure
decisions of :mod:`~jobtree.batch.poll` (what each poll means) and
:mod:`~jobtree.batch.plan` (what to submit next). Its clocks are injected.

- **Submissions.** Issued targets are gathered for a moment and grouped by
  resource request. Each group becomes one array job (or a plain job) whose
  tasks run ``python -m jobtree.batch.runner MANIFEST``; with packing on,
  each task claims targets one after another within a time budget, so a
  thousand tiny targets cost a few scheduler jobs, not a thousand (see
  :mod:`jobtree.batch.runner`). ``max_jobs`` bounds the scheduler jobs
  (array tasks count one each) queued or running at once, and
  ``submit_rate`` the submit commands per second.
- **Pilots.** With ``--pilots N``, targets a pilot can take go to a queue
  file that pilot jobs claim from (:mod:`~jobtree.batch.pilots`,
  :mod:`~jobtree.batch.pilot_shell`); the rest are submitted as above.
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
import logging
import os
import queue
import threading
import time
from typing import Callable, Iterable, Sequence

from ..errors import ResourceError, SchedulerCommandError
from ..resources import Resources
from . import pilots, plan, poll
from .adapter import SchedulerDialect
from .base import BatchJobId, BatchSystem, ExitReason, JobSpec, Update
from .commands import CommandRunner
from .jobfiles import (
    Entry,
    JobFolder,
    Submitted,
    append,
    read_submissions,
)
from .native import NativeJob, Request
from .pilot_shell import ShellParts
from .scheduler import Scheduler
from .settings import ClusterSettings

logger = logging.getLogger(__name__)


class ClusterBatchSystem(ShellParts, BatchSystem):
    """A batch system that submits to a cluster scheduler (see the module doc).

    Args:
        dialect: the scheduler's adapter (directives, command lines, parsers).
        settings: behaviour and defaults.
        runner_: runs the scheduler commands (injectable for tests).
        clock: the wall clock (``time.time``): submission times, grace periods.
        monotonic: the monotonic clock (``time.monotonic``): the submit rate,
            gathering, polling and back-off.
        background: run the I/O on a thread of its own (tests with a fake
            clock leave it off and call :meth:`step` themselves).
    """

    local = False

    def __init__(self, dialect: SchedulerDialect, settings: ClusterSettings,
                 runner_: CommandRunner | None = None, *,
                 clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic,
                 background: bool = True) -> None:
        self.dialect = dialect
        self.name = dialect.name
        self.settings = settings
        self.scheduler = Scheduler(dialect, settings, runner_, monotonic)
        self.files = JobFolder(settings.workdir)
        self._time = clock
        self._monotonic = monotonic
        self._background = background
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._updates: queue.Queue[Update] = queue.Queue()
        self._open: dict[BatchJobId, Entry] = {}
        self._by_key: dict[str, Entry] = {}
        self._pending: collections.deque[Entry] = collections.deque()
        self._subs: dict[str, Submitted] = {}
        self._native: dict[BatchJobId, str] = {}  # scheduler ids learnt, not yet collected
        self._last_issue = 0.0
        self._bucket = plan.Tokens.full(settings.submit_rate, monotonic())
        self._next_poll = 0.0
        self._last_rows: dict[str, NativeJob] = {}
        self._cleared: set[str] = set()  # failed tasks already cancelled
        self._retry_submit_at = 0.0
        self._counter = 0
        self._closed = False
        self._thread: threading.Thread | None = None
        self._ready = False
        self._init_pilots()

    def check_commands(self) -> None:
        """Checks that the scheduler's commands are on PATH (:meth:`Scheduler.check`)."""
        self.scheduler.check()

    def _prepare(self) -> None:
        if self._ready:
            return
        self.files.create(dict(os.environ))
        self._ready = True
        if self._background:
            self._thread = threading.Thread(target=self._loop, daemon=True,
                                            name=f"jobtree-{self.name}")
            self._thread.start()

    # ------------------------------------------------- the contract: master
    def limits(self) -> Resources:
        return Resources(cpu=self.settings.max_cpus, memory=self.settings.max_memory)

    def granted(self, resources: Resources) -> Resources:
        return dataclasses.replace(
            resources, memory=plan.scheduler_memory(resources.memory, self.settings))

    def capacity(self) -> int:
        return pilots.capacity(self.settings, plan.capacity(self.settings))

    def issue(self, spec: JobSpec) -> BatchJobId:
        with self._lock:
            self._prepare()
            key = f"{spec.job_id}.{spec.attempt}"
            batch_id = BatchJobId(key)
            worker = spec.worker is not None
            try:
                request: Request | None = plan.request_for(spec.resources, self.settings,
                                                           self.dialect)
            except ResourceError as err:
                request = None
                self._updates.put(Update(batch_id, None, ExitReason.FAILED, message=str(err),
                                         permanent=True))
            entry = Entry(batch_id, key, list(spec.argv), spec.log_path,
                          spec.resources.time_limit, request, worker, priority=spec.priority)
            self._open[batch_id] = entry
            self._by_key[key] = entry
            if request is None:
                entry.reported = True
            else:
                self._pending.append(entry)
                self._last_issue = self._monotonic()
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
                elif self.files.claim_killed(entry.key):
                    self._report(entry, Update(batch_id, None, ExitReason.KILLED))
                else:
                    self.files.ask_kill(entry.key)
            self._drop_pending(unsubmitted)
            self._wake.set()

    def issued(self) -> set[BatchJobId]:
        with self._lock:
            return set(self._open)

    def running(self) -> dict[BatchJobId, float]:
        now = self._time()
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
        if not self.settings.workdir or not os.path.isdir(self.files.path("subs")):
            return {}
        with self._lock:
            self._prepare()
            self._retire_old_queues()
            wanted = {f"{job}.{attempt}": (job, attempt) for job, attempt in jobs}
            for sub in read_submissions(self.files.path("subs"), self.files.exit_dir, self._subs):
                self._subs[sub.sub_id] = sub
                for entry in sub.entries:
                    self._by_key[entry.key] = entry
                    if entry.batch_id in wanted:
                        self._open[entry.batch_id] = entry
                    else:
                        entry.reported = True
        try:
            rows: dict[str, NativeJob] | None = self.scheduler.list()
        except SchedulerCommandError as err:
            logger.warning("cannot list the scheduler's jobs to adopt them (%s); the "
                           "targets they ran will run again", err)
            rows = None
        seen = self.files.exit_files()
        with self._lock:
            adoption = poll.decide_adoption(list(self._subs.values()), rows, seen, wanted,
                                            self._time(), self.dialect.task_id)
            for sub_id, ended in adoption.ended.items():
                self._subs[sub_id].ended_tasks |= ended
            for entry in adoption.dropped:
                entry.reported = True
                self._open.pop(entry.batch_id, None)
        if adoption.orphans:
            logger.info("cancelling %d jobs of this tree that no target needs any more",
                        len(adoption.orphans))
            self.scheduler.cancel(adoption.orphans)
        self._wake.set()
        return {wanted[e.batch_id]: e.batch_id for e in adoption.adopted}

    def kill_tree(self) -> int:
        return self.scheduler.cancel_tree()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._pending.clear()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=self.settings.command_timeout + 5)
        with self._lock:
            # whatever is still queued or running: targets being stopped, or tasks
            # of a packing submission left with nothing to do
            live = [s for s in self._subs.values()
                    if s.job_id and len(s.cancelled | s.ended_tasks) < s.tasks]
            # a task whose target ends as the cancel reaches it must not start
            # another: its entries not yet started are claimed for no one first
            for entry in (e for s in live for e in s.entries if not e.reported):
                self.files.claim_killed(entry.key)
            self._pilots_close()
        ids = [self.dialect.task_id(s.job_id or "", None) for s in live]
        if ids:
            self.scheduler.cancel(ids)  # a failure is logged
        logger.info("%s: %s", self.dialect.name, self.scheduler.commands.summary())

    # ------------------------------------------------------- the I/O thread
    def _loop(self) -> None:
        while True:
            with self._lock:
                if self._closed:
                    return
            self.step()
            self._wake.wait(0.2)
            self._wake.clear()

    def step(self) -> None:
        """One turn of the I/O: submit what is due, read what runners left, poll when due."""
        try:
            self._submit_due()
            self._scan()
            if self._monotonic() >= self._next_poll:
                self._poll()
        except Exception:  # noqa: BLE001 - the I/O must go on; the log says why
            logger.exception("the %s batch system hit an unexpected error; it goes on",
                             self.name)

    def _report(self, entry: Entry, update: Update) -> None:
        entry.reported = True
        self._updates.put(update)

    # ---------------------------------------------------------- submitting
    def _submit_due(self) -> None:
        """Submits what was issued, oldest first, within max_jobs and the rate."""
        self._pilot_step()
        now = self._monotonic()
        with self._lock:
            # what a pilot takes waits for the next pilot step, even if it was
            # issued after this one's (the master issues from its own thread)
            waiting = [e for e in self._pending if not self._for_pilots(e)]
            if not waiting or now < self._retry_submit_at:
                return
            if now - self._last_issue < plan.GATHER:
                self._wake.set()
                return
            budget = self.settings.max_jobs - sum(s.live_tasks() for s in self._subs.values())
            if budget <= 0:
                return
            groups = plan.groups(waiting, budget)
        for group in groups:
            entries, tasks = group.entries, group.slots
            while entries and tasks > 0 and self._take_token():
                planned = plan.next_submission(entries, tasks, self.settings,
                                               self.dialect.min_array)
                self._counter += 1
                sub = Submitted(f"{int(self._time())}-{os.getpid()}-{self._counter}",
                                list(planned.entries), planned.tasks, planned.pack,
                                self._time())
                if not self._submit(sub, group.request):
                    return
                tasks -= sub.tasks
                entries = entries[len(sub.entries):]

    def _take_token(self) -> bool:
        self._bucket, granted = plan.take_token(self._bucket, self.settings.submit_rate,
                                                self._monotonic())
        return granted

    def _submit(self, sub: Submitted, request: Request) -> bool:
        """Writes and submits one job; False if the scheduler is unreachable."""
        request = dataclasses.replace(
            request, walltime=plan.task_walltime(request, sub.pack and not sub.pilot,
                                                 self.settings))
        try:
            job, text = self.files.write_submission(sub, request, self.settings, self.dialect)
        except ResourceError as err:
            self._fail(sub.entries, str(err))
            return True
        try:
            # one try: while the scheduler is down the I/O thread tries again later
            job_id = self.scheduler.submit(job, text)
        except SchedulerCommandError as err:
            if err.transient:
                self.scheduler.unreachable(err)
                self._retry_submit_at = self._monotonic() + 15
                return False
            self._fail(sub.entries, f"{self.name} refused the job: {err}")
            return True
        except ValueError as err:
            self._fail(sub.entries, f"cannot read the job id {self.name} printed: {err}")
            return True
        self.scheduler.reachable()
        sub.job_id = job_id
        self.files.write_job_id(sub.sub_id, job_id)
        with self._lock:
            self._subs[sub.sub_id] = sub
            for entry in sub.entries:
                entry.sub = sub
                self._native[entry.batch_id] = job_id
                if entry.reported:  # killed while it was being submitted: never run it
                    self.files.claim_killed(entry.key)
            self._drop_pending(sub.entries)
        logger.debug("submitted %d targets as %s job %s (%d tasks)", len(sub.entries),
                     self.name, job_id, sub.tasks)
        return True

    def _drop_pending(self, entries: Iterable[Entry]) -> None:
        """Takes entries off the queue of those to submit (in one pass)."""
        gone = set(entries)
        if gone:
            self._pending = collections.deque(e for e in self._pending if e not in gone)

    def _fail(self, entries: Iterable[Entry], message: str) -> None:
        logger.error("%s", message)
        self._last_failure = message
        entries = list(entries)
        with self._lock:
            self._drop_pending(entries)
            for entry in entries:
                append(entry.log, f"jobtree: {message}\n")
                self._report(entry, Update(entry.batch_id, None, ExitReason.FAILED,
                                           message=message, permanent=True))

    # ----------------------------------------------------------- outcomes
    def _read_markers(self, names: Iterable[str]) -> None:
        """Reads the start markers and exit files runners left (under the lock)."""
        for name in names:
            key, _, kind = name.rpartition(".")
            entry = self._by_key.get(key)
            if entry is None or entry.reported or kind not in ("run", "exit"):
                continue
            if entry.started is None:  # (an exit's claim first: it says who ran it)
                record = self.files.read(f"{key}.run")
                if record and "started" in record:
                    entry.started = float(record["started"])
                    entry.task = int(record.get("task", 1))
                    if "pilot" in record:
                        self._claimed_by_pilot(entry, record)
                    if (native := self._native_id(entry)) is not None:
                        self._native[entry.batch_id] = native
            if kind == "exit":
                record = self.files.read(name)
                if record is not None:
                    self._report(entry, self.files.exit_update(self.dialect, entry, record,
                                                               self._native_id(entry)))

    def _scan(self) -> None:
        """Reads what runners left; cancels tasks that came too late to claim."""
        names = self.files.exit_files()
        excess: list[str] = []
        with self._lock:
            self._read_markers(names)
            for sub_id, idle in poll.decide_idle(self._subs.values()).items():
                sub = self._subs[sub_id]
                sub.cancelled |= idle
                excess.extend(poll.task_ids(sub, self.dialect.task_id, idle))
            self._tidy()
        if excess:
            self.scheduler.cancel(excess)

    def _native_id(self, entry: Entry) -> str | None:
        return poll.native_id(entry, self.dialect.task_id)

    def _tidy(self) -> None:
        """Removes the files of submissions that are done with (see :func:`poll.done`)."""
        for sub in poll.done(list(self._subs.values())):
            self.files.remove_submission(sub)
            for entry in sub.entries:
                self._by_key.pop(entry.key, None)
            del self._subs[sub.sub_id]

    # ---------------------------------------------------------- the poll
    def _poll(self) -> None:
        """Lists the tree's jobs, and carries out what :func:`poll.decide_poll` makes of it."""
        self._next_poll = self._monotonic() + self.settings.poll_interval
        with self._lock:
            if not any(s.job_id for s in self._subs.values()):
                return
        try:
            rows = self.scheduler.list(attempts=1)  # the next poll is the retry
        except SchedulerCommandError as err:
            if not err.transient:
                logger.warning("the %s status command failed: %s", self.name, err)
            self.scheduler.unreachable(err)
            # back off while it stays down: up to a minute between tries
            now = self._monotonic()
            down = now - (self.scheduler.unreachable_since or now)
            self._next_poll = now + min(60.0, max(self.settings.poll_interval, down / 2))
            return
        self.scheduler.reachable()
        self._last_rows = rows
        seen = self.files.exit_files()  # looked at after the listing: see decide_poll
        with self._lock:
            self._read_markers(seen)
            decision = poll.decide_poll(list(self._subs.values()), rows, seen, self._cleared,
                                        self._time(), self.settings, self.dialect.task_id,
                                        self.name)
            self._apply(decision)
        if decision.cancel:
            self.scheduler.cancel(decision.cancel)
        if decision.lost:
            self._settle_lost(decision.lost)

    def _apply(self, decision: poll.PollDecision) -> None:
        """Records what a poll learnt (under the lock)."""
        for sub_id, change in decision.tasks.items():
            sub = self._subs[sub_id]
            sub.ended_tasks |= change.ended
            sub.cancelled |= change.cancelled
            sub.launched |= change.launched
            sub.running_since.update(change.running_since)
        self._cleared |= decision.stuck
        for entry, when in decision.ended_seen:
            entry.ended_seen = when
        for warning in decision.warnings:
            logger.warning("%s", warning)
        for again in decision.resubmit:
            self._resubmit(again)
