"""The one writer of a tree's index: the master's transactions over it.

All state changes go through :class:`JobStore`, inside explicit transactions
that the master batches. What it reads besides, in those transactions, is
here too; everything else is read through
:class:`~jobtree.jobstore.index.TreeIndex`, which it extends.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import sqlite3
import time
from typing import Any, Iterator, Mapping, Sequence

from .. import _version, metrics
from ..escalation import ASKED_FIELDS
from ..paths import TreePaths
from . import commits, guard, schema
from .index import TreeIndex
from .records import JobId, JobRow, JobState, NewJob, Settled, Step, job_row

#: whether this SQLite has UPDATE ... RETURNING (3.35 and newer)
_RETURNING = sqlite3.sqlite_version_info >= (3, 35)

logger = logging.getLogger(__name__)

#: the states of the jobs that may still run: those ``jobTreeRun --set`` edits
EDITABLE = (JobState.WAITING, JobState.READY, JobState.ISSUED, JobState.FAILED)
#: the request values the index keeps in columns of their own (the others are
#: in ``jobs.extra``)
_OWN_COLUMNS = ("cpu", "memory", "time", "disk")


@guard.guard_class
class JobStore(TreeIndex):
    """The index of one tree, and its writes. Make one with :meth:`initialise`,
    open it with :meth:`open`."""

    def __init__(self, paths: TreePaths, connection: sqlite3.Connection,
                 readonly: bool) -> None:
        super().__init__(paths, connection)
        self._readonly = readonly
        self._counter: commits.Counter | None = None
        self._next_id = 0
        if not readonly:
            self._next_id = (self._first_id() or 0) + 1

    def _first_id(self) -> int | None:
        """The largest job id so far (None: no job)."""
        try:
            return self._db.execute("SELECT MAX(id) FROM jobs").fetchone()[0]
        except sqlite3.DatabaseError as err:
            raise self._translated(err) from err

    # ------------------------------------------------------------ opening
    @classmethod
    def initialise(cls, paths: TreePaths, meta: dict[str, Any], root: NewJob,
                   tries: int) -> None:
        """Writes a new index holding the root job (in a folder not yet public)."""
        db = schema.connect(paths.db, readonly=False)
        try:
            db.executescript(schema.SCHEMA)
            db.execute("BEGIN IMMEDIATE")
            meta = dict(meta, format_version=schema.FORMAT_VERSION,
                        jobtree_version=_version.__version__, created=time.time(),
                        **{commits.META_KEY: 0})
            db.executemany("INSERT INTO meta VALUES (?, ?)",
                           [(k, json.dumps(v)) for k, v in meta.items()])
            db.execute(
                "INSERT INTO jobs (id, state, parent, predecessor, chain, tries_left, cls,"
                " description, cpu, memory, time, disk, pickle, extra, priority) "
                "VALUES (1, ?, NULL, NULL, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (JobState.READY, tries, root.cls, root.description, root.cpu, root.memory,
                 root.time, root.disk, root.pickle, root.extra_json, root.priority))
            if root.token:
                db.execute("INSERT INTO promised VALUES (?, 1)", (root.token,))
            db.execute("COMMIT")
        finally:
            db.close()

    @classmethod
    def open(cls, paths: TreePaths, readonly: bool = False) -> JobStore:
        """Opens the index of an existing tree (and upgrades an older format,
        unless ``readonly``).

        Raises:
            TreeError: there is no index, it is damaged or rolled back
                (:class:`~jobtree.jobstore.commits.RolledBackError`), or a newer
                jobtree wrote it.
        """
        mark = commits.read(paths)  # before the index, which a master may be ahead of
        store = cls(paths, schema.open_index(paths, readonly), readonly)
        try:
            stored = store.commits()
            if commits.rolled_back(paths, mark, stored) and not readonly:
                logger.warning(
                    "the index of %s holds %d of the %d transactions committed before this "
                    "machine restarted: the last ones were lost with it (a power loss can do "
                    "that); the targets they recorded as done run again", paths.root,
                    stored or 0, mark.commits if mark else 0)
            if not readonly:
                if stored is None:  # a tree made before jobtree counted its commits
                    store._db.execute("INSERT OR IGNORE INTO meta VALUES (?, '0')",
                                      (commits.META_KEY,))
                store._counter = commits.Counter(paths, stored or 0)
        except BaseException:
            store.close()
            raise
        return store

    def close(self) -> None:
        """Closes the index (and the counter file)."""
        if self._counter is not None:
            self._counter.close()
        super().close()

    # -------------------------------------------------------- transactions
    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Runs the block as one transaction (nested blocks join the outer one)."""
        if self._in_transaction:
            yield
            return
        self._execute("BEGIN IMMEDIATE")
        self._in_transaction = True
        try:
            yield
        except BaseException:
            self._in_transaction = False
            with contextlib.suppress(sqlite3.Error):  # the error in flight says more
                self._db.execute("ROLLBACK")
            raise
        self._in_transaction = False
        counter = self._counter
        if counter is not None:  # counted in the index and, once committed, beside it
            counter.commits += 1
            self._db.execute("UPDATE meta SET value = ? WHERE key = 'commits'",
                             (str(counter.commits),))
        self._execute("COMMIT")
        if counter is not None:
            counter.write()
        metrics.count("transactions")

    def set_meta(self, key: str, value: Any) -> None:
        """Stores one meta value."""
        with self.transaction():
            self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    # --------------------------------------------------- the master's reads
    def ready(self, limit: int) -> list[tuple[JobRow, bytes]]:
        """Up to ``limit`` ready jobs, highest priority first (then oldest
        first), with their pickled targets."""
        rows = self._db.execute(
            f"SELECT {self._select}, pickle FROM jobs WHERE state = ? "
            f"ORDER BY priority DESC, id LIMIT ?",
            (int(JobState.READY), limit))
        return [(job_row(r[:-1]), bytes(r[-1])) for r in rows]

    def values_for(self, tokens: Sequence[str]) -> dict[str, tuple[str, Any]]:
        """The values promised by ``tokens``, as a job is handed them:
        ("inline", pickle), ("file", path) or ("missing", why)."""
        found: dict[str, tuple[str, Any]] = {}
        for token in tokens:
            row = self._db.execute(
                "SELECT p.job, j.state, j.description, r.job, r.data, r.file FROM promised p "
                "JOIN jobs j ON j.id = p.job LEFT JOIN returned r ON r.job = p.job "
                "WHERE p.token = ?", (token,)).fetchone()
            if row is None:
                found[token] = ("missing", "no target of this tree made that promise")
                continue
            job, state, description, stored, data, file = row
            if stored is not None:
                found[token] = self._stored(data, file)
            elif JobState(state) == JobState.FAILED:
                found[token] = ("missing", f"{description} (target {job}) failed for good")
            else:
                found[token] = ("missing", f"{description} (target {job}) has not finished "
                                           f"running (it is {JobState(state).name.lower()})")
        return found

    def value_files(self) -> set[str]:
        """The names of the value files the index refers to."""
        return {r[0] for r in self._db.execute(
            "SELECT file FROM returned WHERE file IS NOT NULL")}

    def chain_is_closed(self, chain_id: int) -> bool:
        """Whether the chain founded by ``chain_id`` has finished (or never existed)."""
        row = self._db.execute("SELECT chain_closed FROM jobs WHERE id = ?",
                               (chain_id,)).fetchone()
        return row is None or bool(row[0])

    # ------------------------------------------------------------- writes
    def mark_issued(self, job_id: int, batch: str, now: float,
                    attempt: int | None = None, asked: str | None = None) -> int:
        """Marks a ready job issued and returns its new attempt number.

        Args:
            attempt: the job's attempt number as read in this transaction, if
                the caller has it (saves a read).
            asked: what this try asks beyond the target's own request, as
                JSON (None: just that).

        Raises:
            KeyError: the job is not ready (or not at ``attempt``).
        """
        if attempt is None:
            row = self._db.execute("SELECT attempt FROM jobs WHERE id = ? AND state = ?",
                                   (job_id, int(JobState.READY))).fetchone()
            if row is None:
                raise KeyError(job_id)
            attempt = int(row[0])
        cursor = self._db.execute(
            "UPDATE jobs SET state = ?, attempt = ?, batch = ?, batch_id = NULL, "
            "issued_at = ?, started_at = NULL, asked = ? "
            "WHERE id = ? AND state = ? AND attempt = ?",
            (int(JobState.ISSUED), attempt + 1, batch, now, asked, job_id,
             int(JobState.READY), attempt))
        if cursor.rowcount != 1:
            raise KeyError(job_id)
        return attempt + 1

    def set_batch_id(self, job_id: int, attempt: int, batch_id: str) -> None:
        """Records the batch system's id of an issued attempt."""
        self._db.execute("UPDATE jobs SET batch_id = ? WHERE id = ? AND attempt = ? AND state = ?",
                         (batch_id, job_id, attempt, int(JobState.ISSUED)))

    def set_started(self, job_id: int, attempt: int, started: float) -> None:
        """Records when an issued attempt started running."""
        self._db.execute(
            "UPDATE jobs SET started_at = ? WHERE id = ? AND attempt = ? AND state = ?",
            (started, job_id, attempt, int(JobState.ISSUED)))

    def current(self, job_id: int, attempt: int) -> JobRow | None:
        """The job if (job, attempt) is issued now, else None (a stale attempt)."""
        row = self._db.execute(
            f"SELECT {self._select} FROM jobs WHERE id = ? AND attempt = ? AND state = ?",
            (job_id, attempt, int(JobState.ISSUED))).fetchone()
        return job_row(row) if row is not None else None

    def ingest_success(self, job_id: int, attempt: int, steps: Sequence[Step],
                       run_id: str, tries: int, now: float,
                       job: JobRow | None = None) -> Settled | None:
        """Commits what a successful attempt did (inside the caller's transaction).

        Idempotent: a stale or repeated (job, attempt) changes nothing and
        returns None.

        Args:
            job: the job as :meth:`current` read it in this transaction, if
                the caller has it (saves a read).
        """
        current = job if job is not None else self.current(job_id, attempt)
        if not steps or current is None or current.attempt != attempt:
            return None
        settled = Settled()
        for index, step in enumerate(steps):
            if index > 0:  # a follow-on the worker chained: record it as run
                chained = self._insert(
                    JobState.RAN, parent=current.parent, predecessor=current.id,
                    chain=current.chain, tries=tries,
                    new=NewJob(step.cls, step.description, None, None, None, None, b"",
                               priority=step.priority),
                    pickle=None, run_id=run_id)
                self._db.execute(
                    "UPDATE jobs SET followon = ?, state = ?, pickle = NULL, run_id = ?, "
                    "batch_id = NULL WHERE id = ?",
                    (chained, int(JobState.DONE), run_id, current.id))
                settled.done += 1
                current = dataclasses.replace(current, id=chained, predecessor=current.id,
                                              followon=None)
            if step.value is not None:
                kind, data = step.value
                self._db.execute("INSERT OR REPLACE INTO returned VALUES (?, ?, ?)",
                                 (current.id, data if kind == "inline" else None,
                                  data if kind == "file" else None))
            if step.token is not None:
                self._db.execute("INSERT OR IGNORE INTO promised VALUES (?, ?)",
                                 (step.token, current.id))
            for level, text in step.messages:
                self._db.execute("INSERT INTO messages VALUES (?, ?, ?, ?)",
                                 (current.id, now, level, text))
                settled.messages.append((level, step.description, text))
            if step.stats is not None:
                self._db.execute(
                    "INSERT INTO stats VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (current.id, step.cls, step.stats.get("wall"), step.stats.get("cpu"),
                     step.stats.get("wait"), step.stats.get("memory"),
                     step.stats.get("started")))
        last = steps[-1]
        first = self._insert_children(current.id, last.children, tries)
        settled.new_ready += len(last.children)
        followon = None
        if last.followon is not None:
            followon = self._insert(JobState.WAITING, parent=current.parent,
                                    predecessor=current.id, chain=current.chain, tries=tries,
                                    new=last.followon, pickle=last.followon.pickle,
                                    run_id=None)
        tokens: list[tuple[str, int | None]] = [
            (c.token, first + n) for n, c in enumerate(last.children) if c.token]
        if last.followon is not None and last.followon.token:
            tokens.append((last.followon.token, followon))
        if tokens:
            self._db.executemany("INSERT OR IGNORE INTO promised VALUES (?, ?)", tokens)
        self._db.execute(
            "UPDATE jobs SET state = ?, pending = ?, followon = ?, pickle = NULL, run_id = ?, "
            "batch_id = NULL WHERE id = ?",
            (int(JobState.RAN), len(last.children), followon, run_id, current.id))
        if not last.children:
            self._settle(current.id, settled, (current.parent, followon, current.chain))
        return settled

    def _insert_children(self, parent: int, children: Sequence[NewJob], tries: int) -> int:
        """Adds a run's children as ready founders of chains of their own;
        returns the id of the first (the others follow it)."""
        first = self._next_id
        self._next_id += len(children)
        self._db.executemany(
            "INSERT INTO jobs (id, state, parent, predecessor, chain, tries_left, cls,"
            " description, cpu, memory, time, disk, pickle, run_id, extra, needs, priority) "
            "VALUES (?, ?, ?, NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?)",
            ((first + n, int(JobState.READY), parent, first + n, tries, c.cls, c.description,
              c.cpu, c.memory, c.time, c.disk, c.pickle, c.extra_json, c.needs_json,
              c.priority)
             for n, c in enumerate(children)))
        return first

    def _insert(self, state: JobState, parent: int | None, predecessor: int | None,
                chain: int | None, tries: int, new: NewJob, pickle: bytes | None,
                run_id: str | None) -> JobId:
        job_id = self._next_id
        self._next_id += 1
        self._db.execute(
            "INSERT INTO jobs (id, state, parent, predecessor, chain, tries_left, cls,"
            " description, cpu, memory, time, disk, pickle, run_id, extra, needs, priority) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (job_id, int(state), parent, predecessor, chain if chain is not None else job_id,
             tries, new.cls, new.description, new.cpu, new.memory, new.time, new.disk,
             pickle, run_id, new.extra_json, new.needs_json, new.priority))
        return JobId(job_id)

    def _settle(self, job_id: int, settled: Settled,
                links: tuple[int | None, int | None, int] | None = None) -> None:
        """A job ran and all its children's chains finished: start its follow-on,
        or close its chain and tell the chain's parent. Iterative, O(depth).

        Args:
            links: the job's (parent, followon, chain), if the caller knows them.
        """
        while True:
            if links is None:
                links = self._db.execute("SELECT parent, followon, chain FROM jobs WHERE id = ?",
                                         (job_id,)).fetchone()
            parent, followon, chain = links
            links = None
            settled.done += 1
            if followon is not None:
                self._db.execute("UPDATE jobs SET state = ? WHERE id = ?",
                                 (int(JobState.DONE), job_id))
                self._db.execute("UPDATE jobs SET state = ? WHERE id = ? AND state = ?",
                                 (int(JobState.READY), followon, int(JobState.WAITING)))
                settled.new_ready += 1
                return
            if chain == job_id:  # a founder with no follow-on closes its own chain
                self._db.execute("UPDATE jobs SET state = ?, chain_closed = 1 WHERE id = ?",
                                 (int(JobState.DONE), job_id))
            else:
                self._db.execute("UPDATE jobs SET state = ? WHERE id = ?",
                                 (int(JobState.DONE), job_id))
                self._db.execute("UPDATE jobs SET chain_closed = 1 WHERE id = ?", (chain,))
            settled.closed_chains.append(chain)
            if parent is None:
                settled.root_done = True
                return
            pending, state = self._count_down(parent)
            if pending > 0 or state != JobState.RAN:
                return
            job_id = parent

    def _count_down(self, parent: int) -> tuple[int, int]:
        """One more child chain of ``parent`` finished: its (pending, state) after."""
        if _RETURNING:
            row = self._db.execute(
                "UPDATE jobs SET pending = pending - 1 WHERE id = ? RETURNING pending, state",
                (parent,)).fetchone()
        else:
            self._db.execute("UPDATE jobs SET pending = pending - 1 WHERE id = ?", (parent,))
            row = self._db.execute("SELECT pending, state FROM jobs WHERE id = ?",
                                   (parent,)).fetchone()
        return int(row[0]), int(row[1])

    def record_failure(self, job_id: int, attempt: int, reason: str, exit_code: int | None,
                       log: str | None, message: str | None, now: float,
                       permanent: bool = False, batch_id: str | None = None,
                       started: float | None = None, asked: str | None = None,
                       counted: bool = True) -> bool | None:
        """Records a failed attempt; the job is retried or fails for good.

        Args:
            started: when the attempt started, if known (else when the master
                saw it start, if it did).
            asked: what the attempt asked for, as JSON (:mod:`jobtree.escalation`).
            counted: whether the attempt uses up a try; one that does not
                (preempted, lost to a failed node) is retried, never fails for good.

        Returns:
            True if it failed for good, False if it will be retried, None if
            (job, attempt) was stale and nothing changed.
        """
        row = self._db.execute(
            "SELECT tries_left, batch, batch_id, started_at FROM jobs "
            "WHERE id = ? AND attempt = ? AND state = ?",
            (job_id, attempt, int(JobState.ISSUED))).fetchone()
        if row is None:
            return None
        tries_left, batch, stored_id, seen_start = row
        batch_id = batch_id or stored_id
        if log and os.path.isabs(log) and log.startswith(self.paths.root + os.sep):
            log = os.path.relpath(log, self.paths.root)  # a copied tree shows its own
        permanent = counted and (permanent or tries_left <= 0)
        self._db.execute(
            "INSERT OR REPLACE INTO failures (job, attempt, at, reason, exit_code, batch, "
            "batch_id, log, message, permanent, started, asked) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (job_id, attempt, now, reason, exit_code, batch, batch_id, log, message,
             int(permanent), started if started is not None else seen_start, asked))
        self._db.execute(
            "UPDATE jobs SET state = ?, tries_left = ?, batch_id = NULL WHERE id = ?",
            (int(JobState.FAILED if permanent else JobState.READY),
             max(tries_left - 1, 0) if counted else tries_left, job_id))
        return permanent

    def last_failure(self, job_id: int) -> tuple[int, str, str | None] | None:
        """The (attempt, reason, asked JSON) of the job's latest failed try, if any."""
        row = self._db.execute(
            "SELECT attempt, reason, asked FROM failures WHERE job = ? "
            "ORDER BY attempt DESC LIMIT 1", (job_id,)).fetchone()
        return (int(row[0]), str(row[1]), row[2]) if row is not None else None

    def ended_in_row(self, job_id: int, reasons: Sequence[str]) -> int:
        """How many of a job's latest failed attempts, one after another, ended
        for one of ``reasons``."""
        rows = self._db.execute("SELECT reason FROM failures WHERE job = ? ORDER BY attempt DESC",
                                (job_id,))
        count = 0
        for (reason,) in rows:
            if reason not in reasons:
                break
            count += 1
        return count

    def return_to_ready(self, job_id: int, attempt: int) -> bool:
        """Puts an issued attempt back to ready without counting a try (it was
        stopped by the user or lost with the master)."""
        cursor = self._db.execute(
            "UPDATE jobs SET state = ?, batch_id = NULL, started_at = NULL "
            "WHERE id = ? AND attempt = ? AND state = ?",
            (int(JobState.READY), job_id, attempt, int(JobState.ISSUED)))
        return cursor.rowcount > 0

    def retry_failed(self, tries: int) -> int:
        """Makes every failed job ready again with ``tries`` tries (a restart)."""
        cursor = self._db.execute("UPDATE jobs SET state = ?, tries_left = ? WHERE state = ?",
                                  (int(JobState.READY), tries, int(JobState.FAILED)))
        return cursor.rowcount

    def edit_requests(self, jobs: Sequence[int], values: Mapping[str, Any]) -> tuple[int, int]:
        """Changes what ``jobs`` ask for, and their priority (``jobTreeRun
        --set``), inside the caller's transaction. Only jobs that may still run
        change (see EDITABLE). The changed cpu, memory, time and disk are
        pinned: the next try asks them as they are, not grown after an earlier
        try that ran out of memory or time (see :meth:`JobRow.pinned_fields`).

        Args:
            jobs: the ids of the jobs to change.
            values: the new values by Resources field name (``memory``,
                ``time_limit``, ``gpus``, ...), and ``priority``; None: the
                tree's default (priority 0).

        Returns:
            (how many jobs changed, how many of ``jobs`` had already run and
            were left as they were).
        """
        pinned = sorted(set(values) & set(ASKED_FIELDS))
        changed = ran = 0
        for start in range(0, len(jobs), 500):
            part = list(jobs[start:start + 500])
            rows = self._db.execute(
                f"SELECT id, state, attempt, cpu, memory, time, disk, extra, priority, pinned "
                f"FROM jobs WHERE id IN ({', '.join('?' * len(part))})", part).fetchall()
            for job, state, attempt, cpu, memory, time_, disk, extra, priority, pin in rows:
                if JobState(state) not in EDITABLE:
                    ran += 1
                    continue
                own = dict(zip(_OWN_COLUMNS, (cpu, memory, time_, disk)))
                more = json.loads(extra) if extra else {}
                for name, value in values.items():
                    if name in own:
                        own[name] = value
                    elif name == "priority":
                        priority = value or 0
                    elif value is None:
                        more.pop(name, None)
                    else:
                        more[name] = value
                if pinned:
                    before = json.loads(pin) if pin else {}
                    fields = set(pinned) | (set(before.get("fields") or ())
                                            if before.get("after") == attempt else set())
                    pin = json.dumps({"after": attempt, "fields": sorted(fields)})
                self._db.execute(
                    "UPDATE jobs SET cpu = ?, memory = ?, time = ?, disk = ?, extra = ?, "
                    "priority = ?, pinned = ? WHERE id = ?",
                    (*own.values(), json.dumps(more, sort_keys=True) if more else None,
                     priority, pin, job))
                changed += 1
        return changed, ran
