"""The cluster base's I/O for pilots, and for targets whose job ended without them.

:class:`ShellParts` is a part of :class:`~jobtree.batch.cluster.ClusterBatchSystem`
(a mixin, kept apart so that each file stays small). It carries out the pure
decisions of :mod:`jobtree.batch.pilots`: it moves the waiting targets a pilot
can take into the pilots' queue file, submits pilots while some wait, cancels
queued pilots no work needs, learns from a start marker which pilot claimed a
target, and at the end (or when a new master takes over the tree) claims the
targets left in a queue for no one, so that no pilot starts them. It also
settles the targets of jobs that ended without running them
(:meth:`ShellParts._resubmit`) or without an exit file
(:meth:`ShellParts._settle_lost`), as :func:`jobtree.batch.poll.decide_poll`
says.
"""

from __future__ import annotations

import collections
import glob
import json
import logging
import os
import shutil
import threading
from typing import Any, Callable, Iterable, Sequence

from ..paths import write_atomic
from . import pilots, plan, poll
from .adapter import SchedulerDialect
from .base import BatchJobId, Update
from .jobfiles import Entry, JobFolder, Submitted, read_queue, tail
from .native import NativeJob, Request
from .scheduler import Scheduler
from .settings import ClusterSettings
from .wire import PILOTS_PREFIX, is_claims_folder, marker

logger = logging.getLogger(__name__)


class ShellParts:
    """Pilots, and lost or unclaimed targets (see the module doc)."""

    name: str
    settings: ClusterSettings
    files: JobFolder
    dialect: SchedulerDialect
    scheduler: Scheduler
    _lock: threading.RLock
    _subs: dict[str, Submitted]
    _open: dict[BatchJobId, Entry]
    _by_key: dict[str, Entry]
    _pending: collections.deque[Entry]
    _last_rows: dict[str, NativeJob]
    _time: Callable[[], float]
    _monotonic: Callable[[], float]
    _retry_submit_at: float
    _counter: int

    # provided by ClusterBatchSystem
    def _take_token(self) -> bool:
        raise NotImplementedError

    def _submit(self, sub: Submitted, request: Request) -> bool:
        raise NotImplementedError

    def _drop_pending(self, entries: Iterable[Entry]) -> None:
        raise NotImplementedError

    def _fail(self, entries: Iterable[Entry], message: str) -> None:
        raise NotImplementedError

    def _report(self, entry: Entry, update: Update) -> None:
        raise NotImplementedError

    def _native_id(self, entry: Entry) -> str | None:
        raise NotImplementedError

    # ------------------------------------------------------------- pilots
    def _init_pilots(self) -> None:
        self._queue_path: str | None = None
        self._queued: dict[str, Entry] = {}  # in the queue, not known to be claimed
        # what a queued entry's ``sub`` is until a pilot claims it (never submitted)
        self._queue_sub = Submitted("pilots-queue", [], 1, True, 0.0)
        self._no_work_since: float | None = None
        self._pilots_off = False
        self._last_failure = ""  # the last message of _fail
        self._stopped: set[str] = set()  # pilots told to claim nothing more
        self._claims: str | None = None  # the claims folder new entries go to
        self._claims_made = 0
        self._claims_left = 0  # how many more entries it takes
        self._next_tidy = 0.0
        self._queue_size = 0  # bytes this master wrote to its queue
        self._folder_starts: dict[str, int] = {}  # where each claims folder's lines begin

    def _queue_file(self) -> str:
        if self._queue_path is None:
            self._queue_path = self.files.path(
                "subs", f"{PILOTS_PREFIX}{int(self._time())}-{os.getpid()}.queue")
            # an earlier master's, if nothing was adopted (adopt() closes them first)
            self._retire_old_queues()
        return self._queue_path

    def _for_pilots(self, entry: Entry) -> bool:
        """Whether ``entry`` goes to the pilots' queue rather than to a job of its own."""
        return bool(self.settings.pilots) and not self._pilots_off and pilots.fits(
            entry.request, self.settings)

    def _pilot_step(self) -> None:
        """Feeds the queue, submits the pilots it needs, cancels those it does not."""
        self._tidy_pilots()
        if not self.settings.pilots or self._pilots_off:
            return
        now = self._time()
        queue = self._queue_file()
        with self._lock:
            moving = plan.by_priority(e for e in self._pending if self._for_pilots(e))
            if moving:
                self._enqueue(queue, moving)
            for key in [k for k, e in self._queued.items()
                        if e.reported or e.started is not None]:
                del self._queued[key]
            waiting = len(self._queued)
            if waiting:
                self._no_work_since = None
            elif self._no_work_since is None:
                self._no_work_since = now
            mine = [s for s in self._subs.values() if s.pilot]
            for pilot in mine:  # those that said they claim nothing more have ended
                if pilot.live_tasks() and os.path.exists(
                        marker(self.files.exit_dir, pilot.sub_id, "ended")):
                    pilot.ended_tasks.add(1)
                elif not pilot.live_tasks() and pilot.sub_id not in self._stopped:
                    # taken for ended (or cancelled): should it still run, it must
                    # claim nothing more, or what it claimed would be given up
                    # while it runs
                    self._stopped.add(pilot.sub_id)
                    write_atomic(marker(self.files.exit_dir, pilot.sub_id, "stop"), b"stop",
                                 sync=False)
            budget = self.settings.max_jobs - sum(s.live_tasks() for s in self._subs.values())
            count = pilots.to_submit(waiting, mine, queue, budget, now, self.settings)
            idle = pilots.surplus(mine, waiting, self._no_work_since, now, self.settings)
            for pilot in idle:
                pilot.cancelled.add(1)
        if idle:
            logger.info("cancelling %d queued pilots: no target waits for them", len(idle))
            self.scheduler.cancel([self.dialect.task_id(p.job_id or "", None) for p in idle])
        for _ in range(count):
            if self._monotonic() < self._retry_submit_at or not self._take_token():
                return
            self._counter += 1
            pilot = Submitted(f"{int(now)}-{os.getpid()}-{self._counter}-pilot", [], 1, True,
                              now, queue=queue)
            if not self._submit(pilot, pilots.pilot_request(self.settings)):
                return  # the scheduler is unreachable: tried again later
            if pilot.job_id is None:
                self._refused()
                return
            logger.debug("submitted pilot %s (%d targets wait)", pilot.job_id, waiting)

    def _enqueue(self, queue: str, entries: list[Entry]) -> None:
        """Appends entries to the queue file, in order (under the lock). Each
        goes with its markers into the current claims folder (its key names
        the folder: see :func:`jobtree.batch.wire.marker`)."""
        lines = []
        for entry in entries:
            if self._claims_left <= 0:
                self._claims_made += 1
                stem = os.path.basename(queue)[:-len(".queue")]
                self._claims = f"{stem}-{self._claims_made}"
                os.makedirs(os.path.join(self.files.exit_dir, self._claims), 0o700,
                            exist_ok=True)
                self._claims_left = pilots.CLAIMS_PER_FOLDER
                self._folder_starts[self._claims] = self._queue_size
            self._claims_left -= 1
            self._by_key.pop(entry.key, None)
            entry.key = f"{self._claims}/{os.path.basename(entry.key)}"
            self._by_key[entry.key] = entry
            lines.append(json.dumps(entry.manifest()).encode() + b"\n")
            self._queue_size += len(lines[-1])
        data = b"".join(lines)
        fd = os.open(queue, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        for entry in entries:
            entry.sub = self._queue_sub
            self._queued[entry.key] = entry
        self._drop_pending(entries)

    def _refused(self) -> None:
        """The scheduler refused a pilot: the targets in the queue fail, and
        later ones go as jobs of their own."""
        self._pilots_off = True
        with self._lock:
            entries = [e for e in self._queued.values()
                       if not e.reported and self.files.claim_killed(e.key)]
            self._queued.clear()
        self._fail(entries, f"{self.name} refused a pilot job ({self._last_failure}). Fix "
                            f"pilot_cores, pilot_memory or pilot_walltime in the cluster "
                            f"config so that the queue accepts it, or run without --pilots.")

    def _claimed_by_pilot(self, entry: Entry, record: dict[str, Any]) -> None:
        """Moves an entry a pilot claimed to that pilot (under the lock)."""
        self._queued.pop(entry.key, None)
        pilot = self._subs.get(str(record.get("pilot")))
        if pilot is not None and entry.sub is not pilot:
            entry.sub = pilot
            pilot.entries.append(entry)

    def _close_queue(self, path: str) -> list[str]:
        """Claims every entry of a queue left unclaimed for no one, and marks
        the queue closed, so that its pilots start nothing more and exit.

        Returns:
            the keys it claimed so.
        """
        stopped = [item["key"] for item in read_queue(path)
                   if self.files.claim_killed(str(item["key"]))]
        write_atomic(path + ".closed", b"closed", sync=False)
        return stopped

    def _pilots_close(self) -> None:
        """At the end: no pilot may start what is left in the queue, and the
        claims folders of settled targets go."""
        if self._queue_path is not None and os.path.exists(self._queue_path):
            self._close_queue(self._queue_path)
            with self._lock:
                self._claims = None  # (nothing more is queued)
                self._next_tidy = 0.0
            self._tidy_pilots()

    def _retire_old_queues(self) -> None:
        """When a new master takes over: the queues of earlier masters are
        closed before their submissions are read back (so that what their
        pilots claimed is known, and they claim nothing more)."""
        for path in glob.glob(self.files.path("subs", f"{PILOTS_PREFIX}*.queue")):
            if path != self._queue_path and not os.path.exists(path + ".closed"):
                stopped = self._close_queue(path)
                logger.info("closed an earlier master's pilot queue (%d targets it "
                            "held go again)", len(stopped))

    def _tidy_pilots(self) -> None:
        """Now and then (each poll interval): forgets the targets live pilots
        ran and were reported, and removes the claims folders whose every
        entry is settled, so that neither the master's memory nor the exit
        folder it lists grows with every target the pilots ran.

        A folder is first renamed (``NAME.gone``), so that a pilot that still
        reads its queue cannot claim in it again (its exclusive create fails),
        and then removed. An earlier master's folders go only once its queue
        is closed, and its entries still running adopted (:meth:`adopt` holds
        the lock from the one to the other).
        """
        now = self._monotonic()
        if now < self._next_tidy:
            return
        self._next_tidy = now + max(1.0, self.settings.poll_interval)
        try:
            names = os.listdir(self.files.exit_dir)
        except OSError:
            return
        gone = [name for name in names if name.endswith(".gone")]  # a crash cut short
        with self._lock:
            for sub in self._subs.values():
                if sub.pilot and any(e.reported for e in sub.entries):
                    for entry in [e for e in sub.entries if e.reported]:
                        self._by_key.pop(entry.key, None)
                    sub.entries = [e for e in sub.entries if not e.reported]
            live = {e.key.rpartition("/")[0] for e in self._open.values() if not e.reported}
            live.add(self._claims or "")
            for name in names:
                if not is_claims_folder(name) or name in live:
                    continue
                queue = self.files.path("subs", name.rpartition("-")[0] + ".queue")
                if queue != self._queue_path and not os.path.exists(queue + ".closed"):
                    continue  # an earlier master's queue, not read back yet
                try:
                    os.rename(os.path.join(self.files.exit_dir, name),
                              os.path.join(self.files.exit_dir, name + ".gone"))
                except OSError:
                    continue
                gone.append(name + ".gone")
                self._folder_starts.pop(name, None)
            start = min(self._folder_starts.values(), default=self._queue_size)
        if self._queue_path is not None and gone:
            # a pilot that starts now need not read the lines of removed folders
            write_atomic(self._queue_path + ".start", str(start).encode(), sync=False)
        for name in gone:
            shutil.rmtree(os.path.join(self.files.exit_dir, name), ignore_errors=True)

    # ------------------------------------------------ targets a job left
    def _resubmit(self, again: poll.Resubmit) -> None:
        sub = self._subs[again.sub_id]
        for entry in again.entries:
            entry.barren += again.barren
            if entry not in again.failed:
                entry.sub = None
                self._pending.appendleft(entry)
        sub.entries = [e for e in sub.entries if e not in again.entries]
        if again.failed:
            output = tail(self.files.path("out"), sub.sub_id)
            self._fail(again.failed, f"{self.name} jobs of these targets ended "
                                     f"{poll.MAX_BARREN} times without running them (job "
                                     f"{sub.job_id}); the job script could not start the "
                                     f"worker. Its output: {output}")

    def _settle_lost(self, entries: Sequence[Entry]) -> None:
        accounting = self.scheduler.accounting(
            sorted({t for e in entries if (t := self._native_id(e)) is not None}))
        with self._lock:
            for entry in entries:
                if entry.reported:
                    continue
                task = self._native_id(entry)
                # the accounting's word, else the listing's (qstat -x, bjobs -a and
                # squeue -t all keep finished jobs for a while)
                row = accounting.get(task or "") or self._last_rows.get(task or "")
                self._report(entry, self.files.settle(self.dialect, entry, row, task))

