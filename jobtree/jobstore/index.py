"""The read-only view of a tree's index: every query the commands, the reports
and the readers of stored values make, so that nothing outside the job store
knows the tables.

A TreeIndex opened with :meth:`TreeIndex.open` reads through a read-only
connection (SQLite ``mode=ro``; in WAL mode a reader never blocks the master,
the one writer). :class:`~jobtree.jobstore.store.JobStore` is a TreeIndex
with the writes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sqlite3
from typing import Any, Iterator, Sequence

from .. import metrics
from ..paths import TreePaths
from . import schema
from .records import JobRow, JobState, job_row

#: the states a listing can name, and the index states each covers
STATES: dict[str, tuple[JobState, ...]] = {
    "waiting": (JobState.WAITING, JobState.RAN),
    "ready": (JobState.READY,),
    "running": (JobState.ISSUED,),
    "done": (JobState.DONE,),
    "failed": (JobState.FAILED,),
}
_NAMES = {state: name for name, states in STATES.items() for state in states}
_STATE_SQL = "CASE state " + " ".join(
    f"WHEN {int(state)} THEN '{name}'" for state, name in sorted(_NAMES.items())) + " END"
#: the columns a listing's condition can use
LISTING_COLUMNS = ("id", "class", "state", "attempts", "description", "parent", "chain",
                   "batch", "batch_id", "issued_at", "started_at", "cpu", "memory", "time",
                   "disk")
_VIEW = (f"SELECT id, cls AS class, {_STATE_SQL} AS state, attempt AS attempts, description, "
         f"parent, chain, batch, batch_id, issued_at, started_at, cpu, memory, time, disk "
         f"FROM jobs")
#: the measures a run records with --stats
RUN_MEASURES = ("wall", "cpu", "wait", "memory")
#: what a read of an index that cannot be read (damaged, or locked for too
#: long) raises
ReadError = sqlite3.Error


def state_name(state: JobState) -> str:
    """The name of STATES that covers ``state``."""
    return _NAMES[state]


class ConditionError(ValueError):
    """A listing's condition that SQLite cannot run (the message is SQLite's)."""


@dataclasses.dataclass(frozen=True)
class Issued:
    """How many issued targets have started, and the oldest of each kind."""

    running: int
    queued: int
    oldest_start: float | None
    oldest_issue: float | None


@dataclasses.dataclass(frozen=True)
class ListingRow:
    """One target of a listing, as the index holds it (the commands make their
    rows from it)."""

    id: int
    cls: str
    state: str
    """Its name in STATES."""
    attempts: int
    description: str
    started_at: float | None
    wall: float | None
    """Its recorded run time (a tree run with --stats), if any."""


@dataclasses.dataclass(frozen=True)
class Spread:
    """One measure over recorded runs (None where no run recorded it)."""

    low: float | None
    median: float | None
    mean: float | None
    high: float | None
    total: float | None


@dataclasses.dataclass(frozen=True)
class Peek:
    """What a tree is, read without trusting its index to be whole."""

    tree_id: str | None
    """The tree's id, if it is stored as a string."""
    done: int
    total: int


def peek(paths: TreePaths) -> Peek | None:
    """The tree's id and how many of its targets are done, read without checking
    the index's format; None if the index cannot be read."""
    try:
        db = schema.connect(paths.db, readonly=True)
        try:
            row = db.execute("SELECT value FROM meta WHERE key = 'tree_id'").fetchone()
            total, done = db.execute(
                "SELECT COUNT(*), COUNT(CASE WHEN state = ? THEN 1 END) FROM jobs",
                (int(JobState.DONE),)).fetchone()
        finally:
            db.close()
    except sqlite3.Error:
        return None
    try:
        tree_id = json.loads(row[0]) if row else None
    except ValueError:
        tree_id = None
    return Peek(tree_id if isinstance(tree_id, str) else None, done, total)


class TreeIndex:
    """The index of one tree, read-only. Open it with :meth:`open`."""

    def __init__(self, paths: TreePaths, connection: sqlite3.Connection) -> None:
        self.paths = paths
        self._db = connection
        self._in_transaction = False
        if metrics.ENABLED:
            connection.set_trace_callback(lambda _: metrics.count("statements"))
        self._select = schema.job_columns(connection)

    @classmethod
    def open(cls, paths: TreePaths) -> TreeIndex:
        """Opens the index of an existing tree read-only.

        Raises:
            TreeError: there is no index, or a newer jobtree wrote it.
        """
        return cls(paths, schema.open_index(paths, readonly=True))

    def close(self) -> None:
        """Closes the index."""
        self._db.close()

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """Reads the block from one consistent view of the index, so counts and
        listings taken in it agree while a master writes."""
        if self._in_transaction:
            yield
            return
        self._db.execute("BEGIN")
        self._in_transaction = True
        try:
            yield
        finally:
            self._in_transaction = False
            self._db.execute("COMMIT")

    # --------------------------------------------------------------- jobs
    def meta(self) -> dict[str, Any]:
        """Every stored meta value."""
        return {k: json.loads(v) for k, v in self._db.execute("SELECT key, value FROM meta")}

    def counts(self) -> dict[JobState, int]:
        """How many jobs are in each state."""
        found = dict(self._db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state"))
        return {state: found.get(int(state), 0) for state in JobState}

    def job(self, job_id: int) -> JobRow:
        """One job."""
        row = self._db.execute(f"SELECT {self._select} FROM jobs WHERE id = ?",
                               (job_id,)).fetchone()
        if row is None:
            raise KeyError(job_id)
        return job_row(row)

    def jobs_in(self, state: JobState, limit: int = -1) -> list[JobRow]:
        """Jobs in one state, oldest first."""
        rows = self._db.execute(
            f"SELECT {self._select} FROM jobs WHERE state = ? ORDER BY id LIMIT ?",
            (int(state), limit))
        return [job_row(r) for r in rows]

    def attempts(self, jobs: Sequence[int]) -> list[tuple[int, int]]:
        """(job, attempts so far) of ``jobs``."""
        return [(job, int(self._db.execute("SELECT attempt FROM jobs WHERE id = ?",
                                           (job,)).fetchone()[0])) for job in jobs]

    def links(self, limit: int | None = None) -> Iterator[tuple[Any, ...]]:
        """(id, state, parent, predecessor, chain, pending, cls, description,
        chain_closed) of every job (a walk over the whole index), or of the
        first ``limit`` by id: those form the top of the tree, since a job's
        parent and predecessor are always older than it."""
        return iter(self._db.execute(
            "SELECT id, state, parent, predecessor, chain, pending, cls, description, "
            "chain_closed FROM jobs ORDER BY id LIMIT ?", (-1 if limit is None else limit,)))

    def issued_summary(self) -> Issued:
        """Counts issued targets that started running and those still queued."""
        row = self._db.execute(
            "SELECT COUNT(started_at), COUNT(*) - COUNT(started_at), MIN(started_at), "
            "MIN(CASE WHEN started_at IS NULL THEN issued_at END) FROM jobs WHERE state = ?",
            (int(JobState.ISSUED),)).fetchone()
        return Issued(running=row[0], queued=row[1], oldest_start=row[2], oldest_issue=row[3])

    # ----------------------------------------------------- failures, messages
    def failures(self, permanent_only: bool = True) -> list[dict[str, Any]]:
        """Recorded failed attempts, newest last, with their job's class and description."""
        where = "WHERE f.permanent = 1 AND j.state = ?" if permanent_only else ""
        args: tuple[Any, ...] = (int(JobState.FAILED),) if permanent_only else ()
        rows = self._db.execute(
            "SELECT f.job, f.attempt, f.at, f.reason, f.exit_code, f.batch, f.batch_id, "
            "f.log, f.message, j.cls, j.description FROM failures f JOIN jobs j ON j.id = f.job "
            f"{where} ORDER BY f.at", args)
        keys = ("job", "attempt", "at", "reason", "exit_code", "batch", "batch_id", "log",
                "message", "cls", "description")
        return [dict(zip(keys, r)) for r in rows]

    def latest_messages(self, limit: int) -> list[tuple[float, str, str]]:
        """The latest ``limit`` logToMaster messages: (time, target, text), oldest first."""
        rows = self._db.execute(
            "SELECT m.at, j.description, m.text FROM messages m JOIN jobs j ON j.id = m.job "
            "ORDER BY m.rowid DESC LIMIT ?", (limit,)).fetchall()
        return [(at, description, text) for at, description, text in reversed(rows)]

    # ------------------------------------------------------------- values
    def returned(self, job_id: int) -> tuple[str, Any] | None:
        """What the job's run() returned, as ("inline", pickle) or ("file",
        path), or None if it returned nothing (or has not run)."""
        row = self._db.execute("SELECT data, file FROM returned WHERE job = ?",
                               (job_id,)).fetchone()
        return None if row is None else self._stored(*row)

    def _stored(self, data: bytes | None, file: str | None) -> tuple[str, Any]:
        """A row of ``returned`` as a job is handed it: the file's path, or the pickle."""
        return ("file", os.path.join(self.paths.values, file)) if file else (
            "inline", bytes(data or b""))

    def returned_by_class(self, cls: str, skip: set[int] | frozenset[int] = frozenset()
                          ) -> list[tuple[int, tuple[str, Any]]]:
        """(job, value) of the jobs of class ``cls`` that returned a value, but
        those in ``skip``; values as :meth:`returned` gives them."""
        # the ids first, so that values already read are not read again
        jobs = [r[0] for r in self._db.execute(
            "SELECT r.job FROM returned r JOIN jobs j ON j.id = r.job WHERE j.cls = ? "
            "ORDER BY r.job", (cls,)) if r[0] not in skip]
        return [(job, value) for job in jobs if (value := self.returned(job)) is not None]

    def is_promised(self, job_id: int) -> bool:
        """Whether ``rv()`` was called on the job's target (its value is promised)."""
        try:
            return self._db.execute("SELECT 1 FROM promised WHERE job = ? LIMIT 1",
                                    (job_id,)).fetchone() is not None
        except sqlite3.OperationalError:  # a tree of format 3 or older, read-only
            return False

    # ----------------------------------------------------------- listings
    def listing(self, state: str | None = None, cls: str | None = None,
                condition: str | None = None, limit: int | None = None) -> list[ListingRow]:
        """The targets that match every filter given, by id.

        Args:
            state: one of STATES.
            cls: a class, as jobtree records it (``module.Class``) or by its last part.
            condition: an SQL condition over LISTING_COLUMNS, e.g. ``"attempts > 1"``.
            limit: the most to return.

        Raises:
            ConditionError: SQLite cannot run ``condition``.
        """
        where: list[str] = []
        args: list[Any] = []
        view = _VIEW
        if state is not None:  # on the index's own column, which is indexed
            values = [int(s) for s in STATES[state]]
            view += f" WHERE state IN ({', '.join('?' * len(values))})"
            args.extend(values)
        if cls is not None:
            where.append("(class = ? OR class LIKE ?)")
            args.extend([cls, f"%.{cls}"])
        if condition:
            where.append(f"({condition})")
        sql = (f"WITH t AS ({view}) SELECT id, class, state, attempts, description, "
               f"started_at FROM t" + (f" WHERE {' AND '.join(where)}" if where else "")
               + " ORDER BY id LIMIT ?")
        args.append(-1 if limit is None else limit)
        try:
            rows = self._db.execute(sql, args).fetchall()
        except sqlite3.Error as err:
            if condition is None:
                raise
            raise ConditionError(str(err)) from None
        walls = self._walls([row[0] for row in rows])
        return [ListingRow(*row, wall=walls.get(row[0])) for row in rows]

    def _walls(self, jobs: list[int]) -> dict[int, float]:
        """The recorded run time of each of ``jobs`` (trees run with --stats)."""
        walls: dict[int, float] = {}
        for start in range(0, len(jobs), 500):
            part = jobs[start:start + 500]
            walls.update(self._db.execute(
                f"SELECT job, SUM(wall) FROM stats WHERE job IN ({', '.join('?' * len(part))}) "
                f"GROUP BY job", part).fetchall())
        return walls

    def classes(self) -> list[tuple[str, dict[str, int], float | None, int]]:
        """(class, its targets in each of STATES, median recorded run time, runs
        recorded) of every target class."""
        counts: dict[str, dict[str, int]] = {}
        for kind, state, count in self._db.execute(
                "SELECT cls, state, COUNT(*) FROM jobs GROUP BY cls, state"):
            mine = counts.setdefault(kind, dict.fromkeys(STATES, 0))
            mine[_NAMES[JobState(state)]] += count
        runs = dict(self._db.execute("SELECT cls, COUNT(wall) FROM stats GROUP BY cls"))
        found = []
        for kind, mine in counts.items():
            median = None
            if runs.get(kind):
                median = self._db.execute(
                    "SELECT wall FROM stats WHERE cls = ? AND wall IS NOT NULL ORDER BY wall "
                    "LIMIT 1 OFFSET ?", (kind, (runs[kind] - 1) // 2)).fetchone()[0]
            found.append((kind, mine, median, int(runs.get(kind, 0))))
        return found

    # -------------------------------------------------------- recorded runs
    def run_classes(self) -> list[str]:
        """The classes of the runs recorded with --stats, most wall time first."""
        return [row[0] for row in self._db.execute(
            "SELECT cls FROM stats GROUP BY cls ORDER BY SUM(wall) DESC, cls")]

    def run_count(self, cls: str | None = None) -> int:
        """How many runs were recorded of class ``cls`` (None: of every class)."""
        where, args = _of_class(cls)
        return int(self._db.execute(f"SELECT COUNT(*) FROM stats {where}", args).fetchone()[0])

    def run_spread(self, measure: str, cls: str | None = None) -> Spread:
        """One of RUN_MEASURES over the runs of class ``cls`` (None: of every class)
        that recorded it."""
        if measure not in RUN_MEASURES:
            raise ValueError(f"{measure!r} is not one of {RUN_MEASURES}")
        where, args = _of_class(cls)
        low, mean, high, total, known = self._db.execute(
            f"SELECT MIN({measure}), AVG({measure}), MAX({measure}), SUM({measure}), "
            f"COUNT({measure}) FROM stats {where}", args).fetchone()
        median = None
        if known:
            condition = f"{where} AND" if where else "WHERE"
            rows = self._db.execute(
                f"SELECT {measure} FROM stats {condition} {measure} IS NOT NULL "
                f"ORDER BY {measure} LIMIT ? OFFSET ?",
                (*args, 2 - known % 2, (known - 1) // 2)).fetchall()
            median = float(sum(r[0] for r in rows)) / len(rows)
        return Spread(low, median, mean, high, total)

    def run_times(self) -> list[tuple[int, int, str, str, float, float | None]]:
        """(job, attempt, class, description, started, wall) of every run recorded
        with --stats whose start is known."""
        return self._db.execute(
            "SELECT s.job, j.attempt, s.cls, j.description, s.started, s.wall "
            "FROM stats s JOIN jobs j ON j.id = s.job WHERE s.started IS NOT NULL").fetchall()

    def failed_attempt_times(self) -> list[tuple[int, int, str, str, float, float, str]]:
        """(job, attempt, class, description, started, failed at, reason) of every
        failed attempt whose start is known (none in a tree of format 2 or older)."""
        if not schema.has_column(self._db, "failures", "started"):
            return []
        return self._db.execute(
            "SELECT f.job, f.attempt, j.cls, j.description, f.started, f.at, "
            "f.reason FROM failures f JOIN jobs j ON j.id = f.job "
            "WHERE f.started IS NOT NULL").fetchall()


def _of_class(cls: str | None) -> tuple[str, tuple[Any, ...]]:
    return ("WHERE cls = ?", (cls,)) if cls is not None else ("", ())

