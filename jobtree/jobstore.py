"""The on-disk job tree: an SQLite index, the only code that writes it.

Every job is one row. A job's ``parent`` is the target whose ``pending``
count its chain decrements when the chain closes; ``followon`` points to the
next target of the chain; ``chain`` is the id of the chain's founder (the key
of its global temp dir). All state changes go through this class, inside
explicit transactions that the master batches.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import json
import os
import pathlib
import sqlite3
import time
from typing import Any, Iterator, NewType, Sequence

from . import _version, metrics
from .errors import TreeError
from .paths import TreePaths, pool_trees
from .resources import Resources

JobId = NewType("JobId", int)

FORMAT_VERSION = 4
#: what changed: 2 added jobs.extra (gpus, nodes, queue, ... as JSON); 3 added
#: failures.started (when a failed attempt started, for the timeline); 4 added
#: return values: the tables returned and promised, and jobs.needs


class JobState(enum.IntEnum):
    """Where a job stands."""

    WAITING = 0
    """A follow-on waiting for its predecessor's children to finish."""
    READY = 1
    """Can be issued."""
    ISSUED = 2
    """Handed to a batch system (queued or running)."""
    RAN = 3
    """Ran; waiting for its children's chains to finish."""
    DONE = 4
    """Ran and all its children's chains finished."""
    FAILED = 5
    """Failed on every try; waits for a restart."""


_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY,
    state INTEGER NOT NULL,
    parent INTEGER,
    predecessor INTEGER,
    chain INTEGER NOT NULL,
    followon INTEGER,
    pending INTEGER NOT NULL DEFAULT 0,
    attempt INTEGER NOT NULL DEFAULT 0,
    tries_left INTEGER NOT NULL,
    cls TEXT NOT NULL,
    description TEXT NOT NULL,
    cpu REAL, memory INTEGER, time REAL, disk INTEGER,
    pickle BLOB,
    batch TEXT, batch_id TEXT, issued_at REAL, started_at REAL,
    chain_closed INTEGER NOT NULL DEFAULT 0,
    run_id TEXT,
    extra TEXT,
    needs TEXT
);
CREATE INDEX jobs_state ON jobs(state);
CREATE TABLE failures (
    job INTEGER NOT NULL, attempt INTEGER NOT NULL, at REAL NOT NULL,
    reason TEXT NOT NULL, exit_code INTEGER, batch TEXT, batch_id TEXT,
    log TEXT, message TEXT, permanent INTEGER NOT NULL, started REAL,
    PRIMARY KEY (job, attempt)
);
CREATE TABLE messages (
    job INTEGER NOT NULL, at REAL NOT NULL, level INTEGER NOT NULL, text TEXT NOT NULL
);
CREATE TABLE stats (
    job INTEGER NOT NULL, cls TEXT NOT NULL, wall REAL, cpu REAL, wait REAL,
    memory INTEGER, started REAL
);
"""
#: the tables format 4 added: part of a new index, and made when an older one
#: is upgraded
_SCHEMA_4 = """
CREATE TABLE IF NOT EXISTS returned (job INTEGER PRIMARY KEY, data BLOB, file TEXT);
CREATE TABLE IF NOT EXISTS promised (token TEXT PRIMARY KEY, job INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS promised_job ON promised(job);
"""
_SCHEMA += _SCHEMA_4

#: whether this SQLite has UPDATE ... RETURNING (3.35 and newer)
_RETURNING = sqlite3.sqlite_version_info >= (3, 35)

_COLUMNS = ("id", "state", "parent", "predecessor", "chain", "followon", "pending",
            "attempt", "tries_left", "cls", "description", "cpu", "memory", "time",
            "disk", "batch", "batch_id", "issued_at", "started_at", "extra", "needs")


@dataclasses.dataclass(frozen=True)
class JobRow:
    """One job as the index holds it (without its pickle)."""

    id: JobId
    state: JobState
    parent: JobId | None
    predecessor: JobId | None
    chain: JobId
    followon: JobId | None
    pending: int
    attempt: int
    tries_left: int
    cls: str
    description: str
    cpu: float | None
    memory: int | None
    time: float | None
    disk: int | None
    batch: str | None
    batch_id: str | None
    issued_at: float | None
    started_at: float | None
    extra: str | None = None
    needs: str | None = None
    """The promise tokens the job's target holds, as a JSON list (or None)."""

    def resources(self) -> Resources:
        """What the job asked for (None where the tree's defaults apply)."""
        data = json.loads(self.extra) if self.extra else {}
        data.update(cpu=self.cpu, memory=self.memory, time=self.time, disk=self.disk)
        return Resources.from_dict(data)


@dataclasses.dataclass(frozen=True)
class NewJob:
    """A target a worker created, as it goes into the index."""

    cls: str
    description: str
    cpu: float | None
    memory: int | None
    time: float | None
    disk: int | None
    pickle: bytes
    extra: dict[str, Any] | None = None
    needs: Sequence[str] = ()
    """Tokens of the promises its pickle holds."""
    token: str | None = None
    """Its own promise token, if ``rv()`` was called on it."""

    @property
    def extra_json(self) -> str | None:
        """``extra`` as the index stores it."""
        return json.dumps(self.extra, sort_keys=True) if self.extra else None

    @property
    def needs_json(self) -> str | None:
        """``needs`` as the index stores it."""
        return json.dumps(sorted(self.needs)) if self.needs else None


@dataclasses.dataclass(frozen=True)
class Step:
    """One target a worker ran: itself, or a follow-on it chained.

    ``children`` and ``followon`` are what the step added; a chained step
    (index > 0) is the previous step's follow-on and had no pickle stored.
    """

    cls: str
    description: str
    children: Sequence[NewJob]
    followon: NewJob | None
    messages: Sequence[tuple[int, str]]
    stats: dict[str, float] | None
    value: tuple[str, Any] | None = None
    """What run() returned: ("inline", pickle) or ("file", name in values/)."""
    token: str | None = None
    """The target's promise token, if ``rv()`` was called on it."""


@dataclasses.dataclass
class Settled:
    """What one ingestion did, for the master to act on after commit."""

    closed_chains: list[int] = dataclasses.field(default_factory=list)
    messages: list[tuple[int, str, str]] = dataclasses.field(default_factory=list)
    new_ready: int = 0
    done: int = 0
    root_done: bool = False


def _row(values: Sequence[Any]) -> JobRow:
    data = dict(zip(_COLUMNS, values))
    data["state"] = JobState(data["state"])
    return JobRow(**data)


class JobStore:
    """The index of one tree. Open it with :meth:`open` or :meth:`create`."""

    def __init__(self, paths: TreePaths, connection: sqlite3.Connection,
                 readonly: bool) -> None:
        self.paths = paths
        self._db = connection
        self._readonly = readonly
        self._in_transaction = False
        self._next_id = 0
        if metrics.ENABLED:
            connection.set_trace_callback(lambda _: metrics.count("statements"))
        names = {row[1] for row in connection.execute("PRAGMA table_info(jobs)")}
        # a format-1 tree opened read-only has no extra column
        self._select = ", ".join(c if c in names else f"NULL AS {c}" for c in _COLUMNS)
        if not readonly:
            self._next_id = (self._db.execute("SELECT MAX(id) FROM jobs").fetchone()[0] or 0) + 1

    # ------------------------------------------------------------ opening
    @staticmethod
    def _connect(path: str, readonly: bool) -> sqlite3.Connection:
        if readonly:
            db = sqlite3.connect(pathlib.Path(path).absolute().as_uri() + "?mode=ro", uri=True,
                                 isolation_level=None, timeout=30)
        else:
            db = sqlite3.connect(path, isolation_level=None, timeout=30)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=30000")
        return db

    @classmethod
    def initialise(cls, paths: TreePaths, meta: dict[str, Any], root: NewJob,
                   tries: int) -> None:
        """Writes a new index holding the root job (in a folder not yet public)."""
        db = cls._connect(paths.db, readonly=False)
        try:
            db.executescript(_SCHEMA)
            db.execute("BEGIN IMMEDIATE")
            meta = dict(meta, format_version=FORMAT_VERSION,
                        jobtree_version=_version.__version__, created=time.time())
            db.executemany("INSERT INTO meta VALUES (?, ?)",
                           [(k, json.dumps(v)) for k, v in meta.items()])
            db.execute(
                "INSERT INTO jobs (id, state, parent, predecessor, chain, tries_left, cls,"
                " description, cpu, memory, time, disk, pickle, extra) "
                "VALUES (1, ?, NULL, NULL, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (JobState.READY, tries, root.cls, root.description, root.cpu, root.memory,
                 root.time, root.disk, root.pickle, root.extra_json))
            if root.token:
                db.execute("INSERT INTO promised VALUES (?, 1)", (root.token,))
            db.execute("COMMIT")
        finally:
            db.close()

    @classmethod
    def open(cls, paths: TreePaths, readonly: bool = False) -> JobStore:
        """Opens the index of an existing tree.

        Raises:
            TreeError: there is no index, or a newer jobtree wrote it.
        """
        if not os.path.isfile(paths.db):
            calls = pool_trees(paths)
            if calls is not None:
                names = sorted(os.path.basename(call.root) for call in calls)
                shown = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")
                raise TreeError(
                    f"{paths.root} is a Pool's folder, which holds one job tree per call "
                    f"({shown or 'none yet'}). Give one of them as --jobTree, such as "
                    f"--jobTree {os.path.join(paths.root, names[0] if names else 'NAME')}.")
            raise TreeError(
                f"{paths.root} is not a job tree (it has no tree.db). Check the "
                f"--jobTree path; a new tree is made by running your pipeline script.")
        try:
            db = cls._connect(paths.db, readonly)
            rows = dict(db.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError as err:
            raise TreeError(
                f"The index {paths.db} cannot be read ({err}). If the disk or file system "
                f"is at fault, fix it and try again; if another program overwrote the "
                f"file, the tree cannot be recovered: remove it with jobTreeClean and start "
                f"again.") from err
        version = json.loads(rows.get("format_version", "0"))
        if version > FORMAT_VERSION:
            db.close()
            raise TreeError(
                f"{paths.root} was written by jobtree "
                f"{json.loads(rows.get('jobtree_version', '?'))} in format {version}; this "
                f"jobtree ({_version.__version__}) reads format {FORMAT_VERSION} at most. "
                f"Continue it with the newer jobtree.")
        if version < FORMAT_VERSION and not readonly:
            for table, column, kind in (("jobs", "extra", "TEXT"),  # format 2
                                        ("failures", "started", "REAL"),  # 3
                                        ("jobs", "needs", "TEXT")):  # 4
                if column not in {r[1] for r in db.execute(f"PRAGMA table_info({table})")}:
                    db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
            db.executescript(_SCHEMA_4)
            db.execute("UPDATE meta SET value = ? WHERE key = 'format_version'",
                       (json.dumps(FORMAT_VERSION),))
        return cls(paths, db, readonly)

    def close(self) -> None:
        """Closes the index."""
        self._db.close()

    # -------------------------------------------------------- transactions
    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Runs the block as one transaction (nested blocks join the outer one)."""
        if self._in_transaction:
            yield
            return
        self._db.execute("BEGIN IMMEDIATE")
        self._in_transaction = True
        try:
            yield
        except BaseException:
            self._in_transaction = False
            self._db.execute("ROLLBACK")
            raise
        self._in_transaction = False
        self._db.execute("COMMIT")
        metrics.count("transactions")

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """Reads the block from one consistent view of the index, so counts and
        listings taken in it agree while a master writes. Yields the connection,
        for read queries JobStore does not offer."""
        if self._in_transaction:
            yield self._db
            return
        self._db.execute("BEGIN")
        self._in_transaction = True
        try:
            yield self._db
        finally:
            self._in_transaction = False
            self._db.execute("COMMIT")

    # --------------------------------------------------------------- meta
    def meta(self) -> dict[str, Any]:
        """Every stored meta value."""
        return {k: json.loads(v) for k, v in self._db.execute("SELECT key, value FROM meta")}

    def set_meta(self, key: str, value: Any) -> None:
        """Stores one meta value."""
        with self.transaction():
            self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    # -------------------------------------------------------------- reads
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
        return _row(row)

    def jobs_in(self, state: JobState, limit: int = -1) -> list[JobRow]:
        """Jobs in one state, oldest first."""
        rows = self._db.execute(
            f"SELECT {self._select} FROM jobs WHERE state = ? ORDER BY id LIMIT ?",
            (int(state), limit))
        return [_row(r) for r in rows]

    def ready(self, limit: int) -> list[tuple[JobRow, bytes]]:
        """Up to ``limit`` ready jobs, oldest first, with their pickled targets."""
        rows = self._db.execute(
            f"SELECT {self._select}, pickle FROM jobs WHERE state = ? ORDER BY id LIMIT ?",
            (int(JobState.READY), limit))
        return [(_row(r[:-1]), bytes(r[-1])) for r in rows]

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

    def stats_rows(self) -> list[tuple[str, float, float, float, int]]:
        """(class, wall, cpu, wait, memory) of every recorded run."""
        return list(self._db.execute("SELECT cls, wall, cpu, wait, memory FROM stats"))

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

    def returned(self, job_id: int) -> tuple[str, Any] | None:
        """What the job's run() returned, as :meth:`values_for` gives it, or
        None if it returned nothing (or has not run)."""
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

    def attempts(self, jobs: Sequence[int]) -> list[tuple[int, int]]:
        """(job, attempts so far) of ``jobs``."""
        return [(job, int(self._db.execute("SELECT attempt FROM jobs WHERE id = ?",
                                           (job,)).fetchone()[0])) for job in jobs]

    def is_promised(self, job_id: int) -> bool:
        """Whether ``rv()`` was called on the job's target (its value is promised)."""
        try:
            return self._db.execute("SELECT 1 FROM promised WHERE job = ? LIMIT 1",
                                    (job_id,)).fetchone() is not None
        except sqlite3.OperationalError:  # a tree of format 3 or older, read-only
            return False

    def value_files(self) -> set[str]:
        """The names of the value files the index refers to."""
        return {r[0] for r in self._db.execute(
            "SELECT file FROM returned WHERE file IS NOT NULL")}

    def links(self, limit: int | None = None) -> Iterator[tuple[Any, ...]]:
        """(id, state, parent, predecessor, chain, pending, cls, description,
        chain_closed) of every job (a walk over the whole index), or of the
        first ``limit`` by id: those form the top of the tree, since a job's
        parent and predecessor are always older than it."""
        return iter(self._db.execute(
            "SELECT id, state, parent, predecessor, chain, pending, cls, description, "
            "chain_closed FROM jobs ORDER BY id LIMIT ?", (-1 if limit is None else limit,)))

    def chain_is_closed(self, chain_id: int) -> bool:
        """Whether the chain founded by ``chain_id`` has finished (or never existed)."""
        row = self._db.execute("SELECT chain_closed FROM jobs WHERE id = ?",
                               (chain_id,)).fetchone()
        return row is None or bool(row[0])

    # ------------------------------------------------------------- writes
    def mark_issued(self, job_id: int, batch: str, now: float,
                    attempt: int | None = None) -> int:
        """Marks a ready job issued and returns its new attempt number.

        Args:
            attempt: the job's attempt number as read in this transaction, if
                the caller has it (saves a read).

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
            "issued_at = ?, started_at = NULL WHERE id = ? AND state = ? AND attempt = ?",
            (int(JobState.ISSUED), attempt + 1, batch, now, job_id, int(JobState.READY),
             attempt))
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
        return _row(row) if row is not None else None

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
                    new=NewJob(step.cls, step.description, None, None, None, None, b""),
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
            " description, cpu, memory, time, disk, pickle, run_id, extra, needs) "
            "VALUES (?, ?, ?, NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?)",
            ((first + n, int(JobState.READY), parent, first + n, tries, c.cls, c.description,
              c.cpu, c.memory, c.time, c.disk, c.pickle, c.extra_json, c.needs_json)
             for n, c in enumerate(children)))
        return first

    def _insert(self, state: JobState, parent: int | None, predecessor: int | None,
                chain: int | None, tries: int, new: NewJob, pickle: bytes | None,
                run_id: str | None) -> JobId:
        job_id = self._next_id
        self._next_id += 1
        self._db.execute(
            "INSERT INTO jobs (id, state, parent, predecessor, chain, tries_left, cls,"
            " description, cpu, memory, time, disk, pickle, run_id, extra, needs) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (job_id, int(state), parent, predecessor, chain if chain is not None else job_id,
             tries, new.cls, new.description, new.cpu, new.memory, new.time, new.disk,
             pickle, run_id, new.extra_json, new.needs_json))
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
                       started: float | None = None) -> bool | None:
        """Records a failed attempt; the job is retried or fails for good.

        Args:
            started: when the attempt started, if known (else when the master
                saw it start, if it did).

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
        permanent = permanent or tries_left <= 0
        self._db.execute(
            "INSERT OR REPLACE INTO failures (job, attempt, at, reason, exit_code, batch, "
            "batch_id, log, message, permanent, started) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (job_id, attempt, now, reason, exit_code, batch, batch_id, log, message,
             int(permanent), started if started is not None else seen_start))
        self._db.execute(
            "UPDATE jobs SET state = ?, tries_left = ?, batch_id = NULL WHERE id = ?",
            (int(JobState.FAILED if permanent else JobState.READY), max(tries_left - 1, 0),
             job_id))
        return permanent

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
