"""The master loop: recover, issue ready jobs, ingest results, retry, rescue.

The master is crash-only: everything it knows is in the index, every
transition is committed before it has effects, and starting is recovering.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pickle
import shutil
import time
from typing import Any, Callable

from .batch import BatchJobId, BatchSystem, ExitReason, JobSpec, Update
from .errors import JobTreeError, ResourceError, TreeStopped
from .janitor import Janitor, remove, trim_log
from .jobstore import JobRow, JobState, JobStore, Settled
from .options import Config
from .paths import PENDING_PREFIX, local_temp_root, write_atomic
from .placement import (default_resources, failed_try_asked, place_try, route, too_big,
                        worker_config)
from .progress import Progress
from .report import failure_report
from .resources import Resources, format_duration
from .results import NOT_ITS_DOING, counts_as_try, failure_of, read_result, to_step, value_files
from .workerjob import WorkerJob

logger = logging.getLogger(__name__)

#: seconds between looks at running jobs (durations, start times, kill requests)
HOUSEKEEPING_EVERY = 2.0
#: seconds to wait for the result of a job that exited 0 on another machine to
#: show up here (a shared file system may show a new file late: NFS caches
#: directory listings for up to a minute by default)
RESULT_GRACE = 90.0


@dataclasses.dataclass(frozen=True)
class _Planned:
    """A job marked issued in a turn's transaction, to hand over after it commits."""

    row: JobRow
    pickled: bytes
    role: str
    resources: Resources
    attempt: int
    issued_at: float
    values: dict[str, tuple[str, Any]] | None = None
    """The promised values the job's target needs, if any."""


@dataclasses.dataclass
class _Issued:
    job_id: int
    attempt: int
    batch: str
    description: str
    timed_out: bool = False
    start_recorded: bool = False


class Master:
    """Runs one tree to completion (or until it cannot go further).

    Args:
        store: the tree's index (opened for writing; the caller holds the lock).
        config: this run's options.
        batches: the batch systems by role ("main", and "big" if configured).
        clock: the time source (injectable for tests).
        progress: where progress goes (default: a log line now and then).
    """

    def __init__(self, store: JobStore, config: Config, batches: dict[str, BatchSystem],
                 clock: Callable[[], float] = time.time,
                 progress: Progress | None = None) -> None:
        self.store = store
        self.paths = store.paths
        self.config = config
        self.batches = batches
        self.clock = clock
        self.meta = store.meta()
        self.defaults = default_resources(config)
        self._issued: dict[tuple[str, BatchJobId], _Issued] = {}
        self._stop_reason: str | None = None
        self._garbage: list[str] = []  # files to remove once the transaction commits
        # jobs that exited 0 elsewhere whose result has not appeared yet: deadline
        self._awaiting: dict[tuple[str, BatchJobId], tuple[_Issued, Update, float]] = {}
        self._janitor = Janitor()
        self._progress = progress if progress is not None else Progress(live=False)
        self._last_housekeeping = 0.0
        self._last_rescue = clock()
        # whether job inputs go through files (some batch system does not take them)
        self._input_files = not all(b.takes_input for b in batches.values())
        #: whether the end of a run with failures logs the failure report (a
        #: Pool raises its own error instead)
        self.report_failures = True

    # ------------------------------------------------------------- public
    def request_stop(self, reason: str) -> None:
        """Asks the loop to stop at its next turn (safe from a signal handler)."""
        self._stop_reason = reason

    @property
    def stopping(self) -> bool:
        """Whether a stop was requested."""
        return self._stop_reason is not None

    def run(self) -> int:
        """Recovers, then runs until nothing more can run.

        Returns:
            the number of targets that failed permanently.

        Raises:
            TreeStopped: a stop was requested; the tree is left restartable.
        """
        try:
            return self._run()
        finally:
            self._janitor.close()

    def _run(self) -> int:
        self.recover()
        self._log_progress(force=True)
        ended: list[tuple[str, Update, _Issued]] = []
        while True:
            self._housekeeping()
            if self._stop_reason:
                self._stop()
            self._turn(ended)
            if not self._issued and not self._awaiting:
                break
            ended = self._collect_ended()
        return self._finish()

    def _turn(self, ended: list[tuple[str, Update, _Issued]]) -> None:
        """Ingests the jobs that ended and marks the ready jobs issued, in one
        transaction; then, after it commits, hands those jobs over."""
        settled_all: list[Settled] = []
        with self.store.transaction():
            for role, update, issued in ended:
                if self.batches[role].local and update.reason is not ExitReason.FINISHED:
                    # what a killed worker could not remove
                    self._garbage.append(os.path.join(local_temp_root(self.meta["tree_id"]),
                                                      f"{issued.job_id}.{issued.attempt}"))
                settled = self._ingest(issued.job_id, issued.attempt, update,
                                       timed_out=issued.timed_out, role=role)
                if isinstance(settled, Settled):
                    settled_all.append(settled)
            plan = self._mark_ready_issued()
        self._janitor.remove(self._garbage)
        for settled in settled_all:
            self._after_commit(settled)
        self._log_progress()
        for index, planned in enumerate(plan):
            try:
                self._hand_over(planned)
            except JobTreeError:
                with self.store.transaction():
                    for left in plan[index:]:
                        self.store.return_to_ready(left.row.id, left.attempt)
                raise

    # ----------------------------------------------------------- recovery
    def recover(self) -> None:
        """Makes the tree consistent after whatever happened to the last master."""
        remove(self.paths.kill_request)  # meant for a master that is gone
        write_atomic(self.paths.config, json.dumps(worker_config(
            self.meta, self.config, self.batches, self.defaults)).encode())
        leftovers = self._ingest_result_files()
        adopted = self._adopt()
        with self.store.transaction():
            returned = sum(self.store.return_to_ready(j.id, j.attempt)
                           for j in self.store.jobs_in(JobState.ISSUED) if j.id not in adopted)
            retried = self.store.retry_failed(self.config.retryCount)
        if leftovers or returned or retried:
            logger.info("recovered the tree: %d results ingested, %d interrupted targets "
                        "to run again, %d failed targets to try again",
                        leftovers, returned, retried)
        self._clean_files()

    def _adopt(self) -> set[int]:
        """Keeps the jobs a batch system still runs for a previous master."""
        by_label: dict[str, list[JobRow]] = {}
        for job in self.store.jobs_in(JobState.ISSUED):
            if job.batch is not None:
                by_label.setdefault(job.batch, []).append(job)
        adopted: set[int] = set()
        for role in self.batches:
            jobs: dict[tuple[int, int], JobRow] = {
                (j.id, j.attempt): j for j in by_label.get(self._batch_label(role), [])}
            if not jobs:
                continue
            for key, batch_id in self.batches[role].adopt(list(jobs)).items():
                job = jobs[key]
                self._issued[(role, batch_id)] = _Issued(job.id, job.attempt, role,
                                                         job.description)
                adopted.add(job.id)
        if adopted:
            logger.info("adopted %d targets still running from the last master", len(adopted))
        return adopted

    def _ingest_result_files(self) -> int:
        ingested = 0
        for name in sorted(os.listdir(self.paths.results)):
            if name.startswith("."):
                continue
            try:
                job_id, attempt = (int(x) for x in name.split("."))
            except ValueError:
                continue
            if read_result(self.paths.result(job_id, attempt)) is None:
                # torn by a crash of the machine: the job runs again, no try counted
                remove(self.paths.result(job_id, attempt))
                continue
            with self.store.transaction():
                if self._ingest(job_id, attempt, None):
                    ingested += 1
            self._janitor.remove(self._garbage)
        return ingested

    def _clean_files(self) -> None:
        """Removes what no job needs any more: inputs, stale temp dirs, partial writes."""
        issued = list(self.store.jobs_in(JobState.ISSUED))
        live = {j.id for j in issued}
        running = {f"{j.id}.{j.attempt}" for j in issued}
        for folder in (self.paths.jobs, self.paths.results):
            for name in os.listdir(folder):
                if name.startswith(".tmp-") or (folder == self.paths.jobs and
                                                 name.isdigit() and int(name) not in live):
                    remove(os.path.join(folder, name))
                elif (name.startswith(PENDING_PREFIX)
                      and name[len(PENDING_PREFIX):] not in running):
                    # left by a node runner stopped before it published it: the
                    # target runs again (a live runner's may still be published)
                    remove(os.path.join(folder, name))
        if os.path.isdir(self.paths.values):
            kept = self.store.value_files()
            for name in os.listdir(self.paths.values):
                if name not in kept and name.rsplit(".", 1)[0] not in running:
                    remove(os.path.join(self.paths.values, name))
        for name in os.listdir(self.paths.global_tmp):
            if not name.isdigit() or self.store.chain_is_closed(int(name)):
                shutil.rmtree(self.paths.chain_dir(int(name)) if name.isdigit()
                              else os.path.join(self.paths.global_tmp, name),
                              ignore_errors=True)
        if any(b.local for b in self.batches.values()):
            shutil.rmtree(local_temp_root(self.meta["tree_id"]), ignore_errors=True)

    # ------------------------------------------------------------ issuing
    def _issue_ready(self) -> None:
        """Issues as many ready jobs as there is room for."""
        self._turn([])

    def _mark_ready_issued(self) -> list[_Planned]:
        """Marks as many ready jobs issued as the batch systems have room for
        (inside the caller's transaction); returns what to hand over."""
        room = sum(b.capacity() for b in self.batches.values()) - len(self._issued)
        if room <= 0:
            return []
        rows = self.store.ready(room)
        if not rows:
            return []
        now = self.clock()
        plan: list[_Planned] = []
        for row, pickled in rows:
            resources, role, asked, unfit = self._try_request(row)
            attempt = self.store.mark_issued(row.id, self._batch_label(role), now, row.attempt,
                                             asked)
            values = self.store.values_for(json.loads(row.needs)) if row.needs else None
            reason, problem = ("failed", unfit) if unfit else self._cannot_run(
                resources, role, values)
            if problem:
                self.store.record_failure(row.id, attempt, reason, None, None, problem, now,
                                          permanent=True,
                                          asked=failed_try_asked(resources, None, False))
                logger.error("%s cannot run: %s", row.description, problem)
                continue
            plan.append(_Planned(row, pickled, role, resources, attempt, now, values))
        return plan

    def _try_request(self, row: JobRow) -> tuple[Resources, str, str | None, str | None]:
        """What this try of a ready job asks (more after one that ran out of
        memory or time), where it goes, what the index keeps of it, and why it
        cannot run (its request function failed), if so."""
        own = row.resources().with_defaults(self.defaults)
        failure = self.store.last_failure(row.id) if row.attempt else None
        pinned = row.pinned_fields(failure[0] if failure else None)  # jobTreeRun --set's
        try:
            return (*place_try(self.config, self.batches, own, failure, row.attempt + 1,
                               pinned), None)
        except ResourceError as err:
            return own, route(self.config, own, self.batches), None, str(err)

    def _cannot_run(self, resources: Resources, role: str,
                    values: dict[str, tuple[str, Any]] | None) -> tuple[str, str | None]:
        """Why a job can never run, as (reason, message): it is too big for its
        batch system, or a value it was promised is not there; else (.., None)."""
        problem = too_big(resources, self.batches[role])
        if problem:
            return "too big", problem
        missing = [why for kind, why in (values or {}).values() if kind == "missing"]
        if missing:
            return "promise", (f"a value it was promised is not available: "
                               f"{'; '.join(missing)}. It cannot run until that target has run")
        return "", None

    def _batch_label(self, role: str) -> str:
        name = self.batches[role].name
        return name if role == "main" else f"{name} (big)"

    def _hand_over(self, planned: _Planned) -> None:
        row, role, resources, attempt = (planned.row, planned.role, planned.resources,
                                         planned.attempt)
        batch = self.batches[role]
        job = {"pickle": planned.pickled, "chain": row.chain,
               "resources": resources.to_dict(), "description": row.description,
               "issued_at": planned.issued_at}
        if planned.values:
            job["values"] = planned.values
        if not batch.takes_input:
            write_atomic(self.paths.job_input(row.id), pickle.dumps(job, 5), sync=False)
        worker = WorkerJob(self.paths.root, row.id, attempt)
        spec = JobSpec(job_id=row.id, attempt=attempt, argv=worker.argv(), worker=worker,
                       resources=resources, name=f"jt{row.id}.{attempt}",
                       log_path=self.paths.log(row.id, attempt), kind=row.cls,
                       job=job if batch.takes_input else None, priority=row.priority)
        batch_id = batch.issue(spec)
        self._issued[(role, batch_id)] = _Issued(row.id, attempt, role, row.description)
        logger.debug("issued %s as %s job %s", row.description, batch.name, batch_id)

    # ---------------------------------------------------------- ingesting
    def _collect_ended(self) -> list[tuple[str, Update, _Issued]]:
        """The issued jobs that ended (waiting up to a second for the first),
        without those whose result is still on its way from another machine."""
        ended = [(role, update, issued) for role, update in self._collect_updates()
                 if (issued := self._issued.pop((role, update.batch_id), None)) is not None]
        return [e for e in ended if not self._result_late(*e)] + self._results_arrived()

    def _result_late(self, role: str, update: Update, issued: _Issued) -> bool:
        """Whether to wait for the result of a job that exited 0 on another
        machine but whose result file this machine cannot see yet."""
        if (update.reason is not ExitReason.FINISHED or self.batches[role].local
                or os.path.exists(self.paths.result(issued.job_id, issued.attempt))):
            return False
        self._awaiting[(role, update.batch_id)] = (issued, update,
                                                   self.clock() + RESULT_GRACE)
        return True

    def _results_arrived(self) -> list[tuple[str, Update, _Issued]]:
        """Awaited results that appeared, or whose wait is over."""
        now = self.clock()
        arrived = []
        for key, (issued, update, deadline) in list(self._awaiting.items()):
            if now >= deadline or os.path.exists(
                    self.paths.result(issued.job_id, issued.attempt)):
                del self._awaiting[key]
                arrived.append((key[0], update, issued))
        return arrived

    def _collect_updates(self) -> list[tuple[str, Update]]:
        """The updates of the batch systems: waits up to a second for the
        first, then takes those that are there already."""
        roles = list(self.batches)
        timeout = 1.0 / len(roles)
        updates: list[tuple[str, Update]] = []
        for role in roles:
            update = self.batches[role].next_update(timeout if not updates else 0)
            while update is not None:
                updates.append((role, update))
                if len(updates) >= 1000:
                    break
                update = self.batches[role].next_update(0)
        return updates

    def _ingest(self, job_id: int, attempt: int, update: Update | None,
                timed_out: bool = False, role: str | None = None) -> Settled | bool:
        """Ingests the outcome of one attempt (run by the batch system of
        ``role``, if known) inside the caller's transaction.

        Returns:
            the Settled of a success, True for a recorded failure, False if
            the attempt was stale.
        """
        path = self.paths.result(job_id, attempt)
        result = read_result(path)
        job = self.store.current(job_id, attempt)
        if job is None:
            self._garbage.append(path)
            self._garbage.extend(value_files(self.paths.values, result))
            return False
        if result is not None and result.get("ok"):
            settled = self.store.ingest_success(
                job_id, attempt, [to_step(s) for s in result["steps"]], result["run_id"],
                self.config.retryCount, self.clock(), job)
            if settled is not None:
                if self._input_files:
                    self._garbage.append(self.paths.job_input(job_id))
                self._garbage.extend((self.paths.log(job_id, attempt), path))
                return settled
        self._record_failure(job_id, attempt, update, result, timed_out, role)
        self._garbage.append(path)
        self._garbage.extend(value_files(self.paths.values, result))
        return True

    def _record_failure(self, job_id: int, attempt: int, update: Update | None,
                        result: dict[str, Any] | None, timed_out: bool,
                        role: str | None = None) -> None:
        reason, message = failure_of(update, result, timed_out, self.config.maxJobDuration)
        log = self.paths.log(job_id, attempt)
        now = self.clock()
        row = self.store.job(job_id)
        granted = self.batches[role].granted if role in self.batches else None
        asked = failed_try_asked(row.resources().with_defaults(self.defaults), row.asked,
                                 timed_out, granted)
        counted = counts_as_try(reason, self.store.ended_in_row(
            job_id, [r.value for r in NOT_ITS_DOING]))
        permanent = self.store.record_failure(
            job_id, attempt, reason.value, update.exit_code if update else None,
            log if os.path.exists(log) else None, message, now,
            permanent=bool(result and result.get("permanent")) or bool(
                update and update.permanent),
            batch_id=(update.native_id or update.batch_id) if update else None,
            started=now - update.wall if update and update.wall is not None else None,
            asked=asked, counted=counted)
        if permanent is None:
            return
        trim_log(log, self.config.maxLogFileSize)
        description = row.description
        summary = message.strip().splitlines()[0] if message and message.strip() else None
        if not counted:
            logger.warning("%s ended by no fault of its own (%s; scheduler job %s, attempt %d): "
                           "%s; running it again without counting a try", description,
                           reason.value, update.native_id if update else "?", attempt,
                           summary or f"see {log}")
        elif permanent:
            logger.error("%s failed for good (attempt %d, %s): %s; log: %s", description,
                         attempt, reason.value, summary or "see the log", log)
        else:
            logger.warning("%s failed (attempt %d, %s): %s; trying again", description,
                           attempt, reason.value, summary or f"see {log}")

    def _after_commit(self, settled: Settled) -> None:
        for level, description, text in settled.messages:
            logger.log(level, "%s: %s", description, text)
        # no job of a closed chain runs again: its global temp dir can go
        self._janitor.remove([self.paths.chain_dir(chain) for chain in settled.closed_chains])

    # ------------------------------------------------------- housekeeping
    def _housekeeping(self) -> None:
        now = self.clock()
        if now - self._last_housekeeping < HOUSEKEEPING_EVERY:
            return
        self._last_housekeeping = now
        if os.path.exists(self.paths.kill_request):
            self.request_stop("jobTreeKill asked the master to stop")
        self._watch_running(now)
        if now - self._last_rescue >= self.config.rescueJobsFrequency:
            self._last_rescue = now
            self._rescue()

    def _watch_running(self, now: float) -> None:
        limit = self.config.maxJobDuration
        starts: list[tuple[_Issued, float]] = []
        native: list[tuple[_Issued, str]] = []
        for role, batch in self.batches.items():
            for batch_id, scheduler_id in batch.scheduler_ids().items():
                issued = self._issued.get((role, batch_id))
                if issued is not None:
                    native.append((issued, scheduler_id))
            over: list[BatchJobId] = []
            for batch_id, seconds in batch.running().items():
                issued = self._issued.get((role, batch_id))
                if issued is None:
                    continue
                if not issued.start_recorded:
                    issued.start_recorded = True
                    starts.append((issued, now - seconds))
                if limit is not None and seconds > limit and not issued.timed_out:
                    issued.timed_out = True
                    over.append(batch_id)
                    logger.warning("%s ran for %s, over --maxJobDuration %s; killing it",
                                   issued.description, format_duration(seconds),
                                   format_duration(limit))
            if over:
                batch.kill(over)
        if starts or native:
            with self.store.transaction():
                for issued, scheduler_id in native:
                    self.store.set_batch_id(issued.job_id, issued.attempt, scheduler_id)
                for issued, started in starts:
                    self.store.set_started(issued.job_id, issued.attempt, started)

    def _rescue(self) -> None:
        """Fails (and so retries) jobs their batch system no longer knows."""
        for role, batch in self.batches.items():
            known = batch.issued()
            lost = [key for key in self._issued if key[0] == role and key[1] not in known]
            if not lost:
                continue
            outcomes = []
            with self.store.transaction():
                for key in lost:
                    issued = self._issued.pop(key)
                    logger.warning("%s job %s vanished from %s; rescuing it",
                                   issued.description, key[1], batch.name)
                    outcomes.append(self._ingest(issued.job_id, issued.attempt, None))
            self._janitor.remove(self._garbage)
            for outcome in outcomes:
                if isinstance(outcome, Settled):
                    self._after_commit(outcome)

    # ----------------------------------------------------------- stopping
    def _stop(self) -> None:
        reason = self._stop_reason or "stopped"
        logger.warning("%s; stopping %d issued targets", reason, len(self._issued))
        for role, batch in self.batches.items():
            batch.kill([key[1] for key in self._issued if key[0] == role])
        deadline = self.clock() + 30
        while self._issued and self.clock() < deadline:
            for role, update in self._collect_updates():
                issued = self._issued.pop((role, update.batch_id), None)
                if issued is None:
                    continue
                with self.store.transaction():
                    if update.reason is ExitReason.FINISHED:
                        settled = self._ingest(issued.job_id, issued.attempt, update)
                    else:
                        settled = None
                        self.store.return_to_ready(issued.job_id, issued.attempt)
                        self._garbage.append(self.paths.result(issued.job_id, issued.attempt))
                self._janitor.remove(self._garbage)
                if isinstance(settled, Settled):
                    self._after_commit(settled)
        with self.store.transaction():
            for issued in self._issued.values():
                self.store.return_to_ready(issued.job_id, issued.attempt)
        self._issued.clear()
        # jobs that finished elsewhere stay issued: the next start ingests the
        # results that have arrived by then and runs the others again
        self._awaiting.clear()
        raise TreeStopped(
            f"The master was stopped ({reason}). Nothing is lost: finished targets stay "
            f"done and interrupted ones will run again. Continue with:  "
            f"jobTreeRun --jobTree {self.paths.root}", reason)

    def _finish(self) -> int:
        self._progress.finish()
        try:
            os.rmdir(local_temp_root(self.meta["tree_id"]))
        except OSError:
            pass
        counts = self.store.counts()
        failed = counts[JobState.FAILED]
        if failed:
            if self.report_failures:
                logger.error("%s", failure_report(self.store))
        elif counts[JobState.DONE] == sum(counts.values()):
            logger.info("the tree finished: %d targets done", counts[JobState.DONE])
        else:
            logger.error("the master has nothing left to run, but %d targets are not done; "
                         "this is a bug in jobtree: please report it with the output of "
                         "jobTreeStatus --verbose", sum(counts.values()) - counts[JobState.DONE])
            return max(failed, 1)
        return failed

    def _log_progress(self, force: bool = False) -> None:
        if not force and not self._progress.due():
            return
        began = time.perf_counter()
        c = self.store.counts()
        self._progress.cost = time.perf_counter() - began
        self._progress.update(done=c[JobState.DONE], running=c[JobState.ISSUED],
                              ready=c[JobState.READY],
                              waiting=c[JobState.WAITING] + c[JobState.RAN],
                              failed=c[JobState.FAILED])
