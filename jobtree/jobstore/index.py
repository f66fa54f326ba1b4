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
import json
import os
import sqlite3
from typing import Any, Iterator, Sequence

from .. import metrics
from ..paths import TreePaths
from ..resources import Resources
from . import commits, guard, schema
from .records import JobRow, JobState, job_row
from .views import ClassUse, FailedTries, Issued, ListingRow, Peek, Spread, peek

__all__ = ["LISTING_COLUMNS", "RUN_MEASURES", "STATES", "ClassUse", "ConditionError",
           "ConditionTimeout", "FailedTries", "Issued", "ListingRow", "Peek", "ReadError",
           "Spread", "TreeIndex", "peek", "state_name"]

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
                   "disk", "priority")
_VIEW = (f"SELECT id, cls AS class, {_STATE_SQL} AS state, attempt AS attempts, description, "
         f"parent, chain, batch, batch_id, issued_at, started_at, cpu, memory, time, disk, "
         f"{{priority}} AS priority FROM jobs")
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


class ConditionTimeout(ConditionError):
    """A listing's condition ran over the time it was given, and was stopped."""


@guard.guard_class
class TreeIndex:
    """The index of one tree, read-only. Open it with :meth:`open`.

    Its methods raise :class:`~jobtree.jobstore.guard.IndexDamagedError` (a
    TreeError) when they find the index damaged.
    """

    def __init__(self, paths: TreePaths, connection: sqlite3.Connection) -> None:
        self.paths = paths
        self._db = connection
        self._in_transaction = False
        self._watch: guard.Watch | None = None
        if metrics.ENABLED:
            connection.set_trace_callback(lambda _: metrics.count("statements"))
        self._select = schema.job_columns(connection)

    @classmethod
    def open(cls, paths: TreePaths) -> TreeIndex:
        """Opens the index of an existing tree read-only, for a command: Ctrl-C
        stops a long query (KeyboardInterrupt), and :meth:`listing` can be given
        a time limit.

        Raises:
            TreeError: there is no index, it is damaged or rolled back
                (:class:`~jobtree.jobstore.commits.RolledBackError`), or a newer
                jobtree wrote it.
        """
        mark = commits.read(paths)  # before the index, which a master may be ahead of
        index = cls(paths, schema.open_index(paths, readonly=True))
        try:
            index._watch = guard.Watch()
            index._db.set_progress_handler(index._watch, guard.WATCH_STEPS)
            commits.rolled_back(paths, mark, index.commits())
        except BaseException:
            index.close()
            raise
        return index

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
        self._execute("BEGIN")
        self._in_transaction = True
        try:
            yield
        except BaseException:
            self._in_transaction = False
            with contextlib.suppress(sqlite3.Error):  # the error in flight says more
                self._db.execute("ROLLBACK")
            raise
        self._in_transaction = False
        self._execute("COMMIT")

    def _execute(self, sql: str) -> None:
        """Runs one statement that is not inside a guarded method."""
        try:
            self._db.execute(sql)
        except sqlite3.DatabaseError as err:
            raise self._translated(err) from err

    def _translated(self, err: sqlite3.DatabaseError) -> BaseException:
        """What to raise for an SQLite error outside a guarded method."""
        return guard.translate(self.paths, err, self._watch)

    def commits(self) -> int | None:
        """How many transactions the master committed (None for a tree made
        before jobtree counted them); see :mod:`.commits`."""
        row = self._db.execute("SELECT value FROM meta WHERE key = ?",
                               (commits.META_KEY,)).fetchone()
        return int(json.loads(row[0])) if row else None

    def check_whole(self) -> None:
        """Reads every page of the index (SQLite's ``quick_check``): slow on a
        huge tree.

        Raises:
            IndexDamagedError: a page is damaged.
        """
        found = [row[0] for row in self._db.execute("PRAGMA quick_check(10)")]
        if found != ["ok"]:
            raise guard.damaged(self.paths, "; ".join(found))

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
        cursor = self._db.execute(
            "SELECT id, state, parent, predecessor, chain, pending, cls, description, "
            "chain_closed FROM jobs ORDER BY id LIMIT ?", (-1 if limit is None else limit,))
        return self._rows(cursor)

    def _rows(self, cursor: sqlite3.Cursor) -> Iterator[tuple[Any, ...]]:
        """The rows of a cursor read lazily, its errors as guarded methods give them."""
        try:
            yield from cursor
        except sqlite3.DatabaseError as err:
            raise self._translated(err) from err

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
        found = [dict(zip(keys, r)) for r in rows]
        for failure in found:
            failure["log"] = self.log_path(failure["log"], failure["job"], failure["attempt"])
        return found

    def log_path(self, stored: str | None, job: int, attempt: int) -> str | None:
        """Where the log of a failed try recorded as ``stored`` is now: in this
        tree, wherever it was when the try failed. Format 6 stores it relative
        to the tree; an older tree's absolute path to ``logs/<job>.<attempt>.log``
        is mapped into this tree, and any other path is shown as it is."""
        if not stored:
            return stored
        if not os.path.isabs(stored):
            return os.path.join(self.paths.root, stored)
        name = os.path.basename(stored)
        if (name == f"{job}.{attempt}.log"
                and os.path.basename(os.path.dirname(stored)) == "logs"):
            return os.path.join(self.paths.logs, name)
        return stored

    def retried(self, limit: int, jobs: Sequence[int] | None = None
                ) -> list[tuple[JobRow, list[dict[str, Any]]]]:
        """Targets with failed tries (the first ``limit`` by id, or ``jobs``),
        each with its failed tries, oldest first: attempt, at, reason, message
        and asked (what the try asked, as JSON; None in an index before format 5)."""
        if jobs is None:
            jobs = [r[0] for r in self._db.execute(
                "SELECT DISTINCT job FROM failures ORDER BY job LIMIT ?", (limit,))]
        asked = "asked" if schema.has_column(self._db, "failures", "asked") else "NULL"
        keys = ("attempt", "at", "reason", "message", "asked")
        return [(self.job(job), [dict(zip(keys, r)) for r in self._db.execute(
            f"SELECT attempt, at, reason, message, {asked} FROM failures WHERE job = ? "
            f"ORDER BY attempt", (job,))]) for job in jobs]

    def latest_messages(self, limit: int) -> list[tuple[float, str, str]]:
        """The latest ``limit`` logToMaster messages: (time, target, text), oldest first."""
        rows = self._db.execute(
            "SELECT m.at, j.description, m.text FROM messages m JOIN jobs j ON j.id = m.job "
            "ORDER BY m.rowid DESC LIMIT ?", (limit,)).fetchall()
        return [(at, description, text) for at, description, text in reversed(rows)]

    def warnings(self, limit: int) -> tuple[int, list[tuple[float, int, str, str]]]:
        """The targets' messages at level WARNING or above (jobtree's own, such
        as a value that could not be stored, and logToMaster's): how many, and
        the latest ``limit`` as (time, job, target, text), oldest first."""
        (count,) = self._db.execute("SELECT COUNT(*) FROM messages WHERE level >= 30"
                                    ).fetchone()
        rows = self._db.execute(
            "SELECT m.at, m.job, j.description, m.text FROM messages m JOIN jobs j "
            "ON j.id = m.job WHERE m.level >= 30 ORDER BY m.rowid DESC LIMIT ?",
            (limit,)).fetchall() if count else []
        return int(count), [(at, job, description, text)
                            for at, job, description, text in reversed(rows)]

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
                condition: str | None = None, limit: int | None = None,
                timeout: float | None = None) -> list[ListingRow]:
        """The targets that match every filter given, by id.

        Args:
            state: one of STATES.
            cls: a class, as jobtree records it (``module.Class``) or by its last part.
            condition: an SQL condition over LISTING_COLUMNS, e.g. ``"attempts > 1"``.
            limit: the most to return.
            timeout: the seconds the query may run (an index opened with
                :meth:`open`; None: no limit).

        Raises:
            ConditionError: SQLite cannot run ``condition``.
            ConditionTimeout: the query ran over ``timeout``.
        """
        where: list[str] = []
        args: list[Any] = []
        view = _VIEW.format(priority="priority" if schema.has_column(
            self._db, "jobs", "priority") else "0")  # an older index read as it is
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
               f"started_at, priority FROM t" + (f" WHERE {' AND '.join(where)}" if where else "")
               + " ORDER BY id LIMIT ?")
        args.append(-1 if limit is None else limit)
        if self._watch is not None:
            self._watch.limit(timeout)
        try:
            rows = self._db.execute(sql, args).fetchall()
            walls = self._walls([row[0] for row in rows])
        except sqlite3.Error as err:
            found = guard.translate(self.paths, err, self._watch)
            if isinstance(found, guard.QueryTimeout):
                raise ConditionTimeout(str(timeout)) from None
            if found is not err:
                raise found from err
            if condition is None:
                raise
            raise ConditionError(str(err)) from None
        finally:
            if self._watch is not None:
                self._watch.limit(None)
        return [ListingRow(*row[:6], wall=walls.get(row[0]), priority=row[6]) for row in rows]

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

    def class_use(self, defaults: Resources, percents: Sequence[int] = (50, 95)
                  ) -> list[ClassUse]:
        """Per class of the runs recorded with --stats (most wall time first),
        what they were granted and what they used, in a few passes over the
        index whatever its size.

        Args:
            defaults: the tree's default resources (--defaultMemory, ...).
            percents: the percentiles of peak memory and wall time to find.
        """
        ranks = {measure: self._percentiles(measure, percents) for measure in ("memory", "wall")}
        rows = self._db.execute(_CLASS_USE, {"cpu": defaults.cpu, "memory": defaults.memory,
                                             "time": defaults.time}).fetchall()
        return [ClassUse(cls=row[0], runs=row[1], memory_asked=(row[2], row[3]),
                         memory_peak=row[4], memory_over=int(row[5]),
                         cpu_asked=(row[6], row[7]), cpu_time=row[8], cpu_wall=row[9],
                         cpu_reserved=row[10], time_asked=(row[11], row[12]),
                         estimated=row[13], wall_high=row[14], wall_over=int(row[15]),
                         ranks={m: found.get(row[0], {}) for m, found in ranks.items()})
                for row in rows]

    def _percentiles(self, measure: str, percents: Sequence[int]
                     ) -> dict[str, dict[int, float]]:
        """{class: {percent: value}} of one of RUN_MEASURES: the nearest rank,
        the smallest value at least ``percent`` % of the runs reach."""
        if measure not in RUN_MEASURES:
            raise ValueError(f"{measure!r} is not one of {RUN_MEASURES}")
        wanted = {int(p) for p in percents}
        ranks = ", ".join(f"({p} * n + 99) / 100" for p in sorted(wanted))
        found: dict[str, dict[int, float]] = {}
        for cls, n, rank, value in self._db.execute(
                f"SELECT cls, n, k, x FROM (SELECT cls, {measure} AS x, ROW_NUMBER() OVER "
                f"(PARTITION BY cls ORDER BY {measure}) AS k, COUNT(*) OVER (PARTITION BY cls) "
                f"AS n FROM stats WHERE {measure} IS NOT NULL) WHERE k IN ({ranks})"):
            for percent in wanted:
                if (percent * n + 99) // 100 == rank:
                    found.setdefault(cls, {})[percent] = value
        return found

    def failed_tries(self, defaults: Resources) -> dict[str, dict[str, FailedTries]]:
        """{class: {reason: its failed tries}} of every failed attempt, with the
        request as granted: what the try asked (an index of format 5 keeps it,
        grown after out of memory or over time), else the target's own request
        with the defaults applied."""
        found: dict[str, dict[str, FailedTries]] = {}
        asked = ("f.asked" if schema.has_column(self._db, "failures", "asked")
                 else "NULL")
        for cls, reason, count, memory, cpu, estimate in self._db.execute(
                f"SELECT j.cls, f.reason, COUNT(*), "
                f"MAX(COALESCE(json_extract({asked}, '$.memory'), j.memory, ?)), "
                f"MAX(COALESCE(json_extract({asked}, '$.cpu'), j.cpu, ?, 1)), "
                f"MAX(COALESCE(json_extract({asked}, '$.time'), j.time, ?)) FROM failures f "
                f"JOIN jobs j ON j.id = f.job GROUP BY j.cls, f.reason",
                (defaults.memory, defaults.cpu, defaults.time)):
            found.setdefault(cls, {})[reason] = FailedTries(count, memory, cpu, estimate)
        return found

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


#: per class, the request each recorded run was granted against what it used.
#: A step is chained when its predecessor ran in the same worker run (same
#: run_id); ``up`` walks each chained step back to the job that ran it.
_CLASS_USE = """
WITH RECURSIVE up(job, at) AS (
    SELECT j.id, p.id FROM stats s JOIN jobs j ON j.id = s.job
        JOIN jobs p ON p.id = j.predecessor AND p.run_id = j.run_id
    UNION ALL
    SELECT up.job, p.id FROM up JOIN jobs c ON c.id = up.at
        JOIN jobs p ON p.id = c.predecessor AND p.run_id = c.run_id
),
ran_in(job, at) AS (SELECT job, MIN(at) FROM up GROUP BY job),
runs AS (
    SELECT s.cls AS cls, s.wall AS wall, s.memory AS memory,
        CASE WHEN s.wall IS NOT NULL THEN s.cpu END AS cpu,
        COALESCE(g.cpu, :cpu, 1) AS want_cpu, COALESCE(g.memory, :memory) AS want_memory,
        COALESCE(g.time, :time) AS want_time
    FROM stats s LEFT JOIN ran_in r ON r.job = s.job
        LEFT JOIN jobs g ON g.id = COALESCE(r.at, s.job)
)
SELECT cls, COUNT(*), MIN(want_memory), MAX(want_memory), MAX(memory),
    TOTAL(memory > want_memory), MIN(want_cpu), MAX(want_cpu), SUM(cpu),
    SUM(CASE WHEN cpu IS NOT NULL THEN wall END),
    SUM(CASE WHEN cpu IS NOT NULL THEN want_cpu * wall END),
    MIN(want_time), MAX(want_time), COUNT(want_time), MAX(wall), TOTAL(wall > want_time)
FROM runs GROUP BY cls ORDER BY SUM(wall) DESC, cls
"""


def _of_class(cls: str | None) -> tuple[str, tuple[Any, ...]]:
    return ("WHERE cls = ?", (cls,)) if cls is not None else ("", ())

