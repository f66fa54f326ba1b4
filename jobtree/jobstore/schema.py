"""The index's format: its tables, connecting to it, and opening an existing
one (checking its format, and upgrading an older one for a writer)."""

from __future__ import annotations

import enum
import json
import os
import pathlib
import sqlite3

from .. import _version
from ..errors import TreeError
from ..paths import TreePaths, pool_trees
from . import guard
from .records import COLUMNS

FORMAT_VERSION = 7
#: what changed: 2 added jobs.extra (gpus, nodes, queue, ... as JSON); 3 added
#: failures.started (when a failed attempt started, for the timeline); 4 added
#: return values: the tables returned and promised, and jobs.needs; 5 added what
#: each try asked for: jobs.asked (the current try's request beyond the
#: target's own, as JSON) and failures.asked (each failed try's, as JSON); 6
#: stores failures.log relative to the tree (a copied tree shows its own logs); 7
#: added priorities and requests edited by ``jobTreeRun --set``: jobs.priority
#: (0 for the jobs of an older index), jobs.pinned, and jobs_state now orders
#: each state's jobs by priority, so the master reads the ready ones in order

#: the index of jobs by state, by priority in each (format 7; before it, by
#: state alone): made with a new index, and again when an older one is upgraded
JOBS_STATE = "CREATE INDEX jobs_state ON jobs(state, priority DESC)"

SCHEMA = f"""
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
    needs TEXT,
    asked TEXT,
    priority INTEGER NOT NULL DEFAULT 0,
    pinned TEXT
);
{JOBS_STATE};
CREATE TABLE failures (
    job INTEGER NOT NULL, attempt INTEGER NOT NULL, at REAL NOT NULL,
    reason TEXT NOT NULL, exit_code INTEGER, batch TEXT, batch_id TEXT,
    log TEXT, message TEXT, permanent INTEGER NOT NULL, started REAL, asked TEXT,
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
SCHEMA_4 = """
CREATE TABLE IF NOT EXISTS returned (job INTEGER PRIMARY KEY, data BLOB, file TEXT);
CREATE TABLE IF NOT EXISTS promised (token TEXT PRIMARY KEY, job INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS promised_job ON promised(job);
"""
SCHEMA += SCHEMA_4

#: the columns added since format 1, by the format that added them
_ADDED = (("jobs", "extra", "TEXT"),  # format 2
          ("failures", "started", "REAL"),  # 3
          ("jobs", "needs", "TEXT"),  # 4
          ("jobs", "asked", "TEXT"), ("failures", "asked", "TEXT"),  # 5
          ("jobs", "priority", "INTEGER NOT NULL DEFAULT 0"), ("jobs", "pinned", "TEXT"))  # 7
#: what a reader of an older index (read as it is) gets for a column it lacks
_MISSING = {"priority": "0"}


def connect(path: str, readonly: bool) -> sqlite3.Connection:
    """A connection to the index at ``path``: a reader's (see :func:`reader_mode`;
    it never blocks the writer), or the writer's, in WAL mode."""
    if readonly:
        mode = reader_mode(path)
        db = sqlite3.connect(pathlib.Path(path).absolute().as_uri() + mode.value, uri=True,
                             isolation_level=None, timeout=30)
        if mode is ReaderMode.ALONE:
            db.execute("PRAGMA query_only=1")
    else:
        db = sqlite3.connect(path, isolation_level=None, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA busy_timeout=30000")
    return db


class ReaderMode(enum.Enum):
    """How a reader opens the index (the value is its URI's query), so that it
    sees what a master commits yet leaves no files behind on a tree nobody runs."""

    SHARED = "?mode=ro"
    """``tree.db-wal`` is there (a master has the index open, or one stopped
    without closing it): read-only, through the master's write-ahead log and
    its shared-memory index."""
    ALONE = "?mode=rw"
    """No write-ahead log, and the tree is writable: a read-write connection
    that refuses every change (``PRAGMA query_only``). SQLite makes the -wal
    and -shm files it needs and, as the last connection to close, removes
    them again (a read-only one would leave them behind). A master that
    starts meanwhile shares them as usual."""
    IMMUTABLE = "?mode=ro&immutable=1"
    """No write-ahead log in a tree nobody can write in (no master can run
    it): the file is read as it is, which needs no -shm file."""


def reader_mode(path: str) -> ReaderMode:
    """How a reader opens the index at ``path`` now."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.exists(path + "-wal"):
        return ReaderMode.SHARED
    if os.access(folder, os.W_OK) and os.access(path, os.W_OK):
        return ReaderMode.ALONE
    return ReaderMode.IMMUTABLE


def check_writable(paths: TreePaths) -> None:
    """Refuses to continue a tree that cannot be written (a read-only directory,
    index or file system), before a master starts on it.

    Raises:
        TreeError: saying that the tree is read-only, not damaged.
    """
    for path in (paths.root, paths.db, paths.db + "-wal", paths.db + "-shm"):
        if os.path.exists(path) and not os.access(path, os.W_OK):
            what = "directory" if path == paths.root else "file"
            raise TreeError(
                f"The job tree {paths.root} is read-only (the {what} {path} cannot be "
                f"written): jobtree can show it (jobTreeStatus, jobTreeStats) and read its "
                f"values, but continuing it writes in it. The tree itself is intact. Make it "
                f"writable again (chmod -R u+w {paths.root}, or mount its file system "
                f"read-write), then continue with:  jobTreeRun --jobTree {paths.root}")


def open_index(paths: TreePaths, readonly: bool) -> sqlite3.Connection:
    """Opens the index of an existing tree; a writer's is upgraded to FORMAT_VERSION.

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
        db = connect(paths.db, readonly)
        rows = dict(db.execute("SELECT key, value FROM meta").fetchall())
    except sqlite3.DatabaseError as err:
        raise _unreadable(paths, err) from err
    version = json.loads(rows.get("format_version", "0"))
    if version > FORMAT_VERSION:
        db.close()
        raise TreeError(
            f"{paths.root} was written by jobtree "
            f"{json.loads(rows.get('jobtree_version', '?'))} in format {version}; this "
            f"jobtree ({_version.__version__}) reads format {FORMAT_VERSION} at most. "
            f"Continue it with the newer jobtree.")
    if version < FORMAT_VERSION and not readonly:
        _upgrade(db)
    return db


def _unreadable(paths: TreePaths, err: sqlite3.DatabaseError) -> TreeError:
    """The error that says why the index cannot be opened; never advice to
    remove a tree that may well be intact."""
    if guard.is_damaged(err):
        return guard.damaged(paths, err)
    if guard.is_read_only(err) or not os.access(paths.root, os.W_OK):
        return TreeError(
            f"The index {paths.db} cannot be read ({err}): the tree is read-only and its "
            f"index has a write-ahead log (tree.db-wal) left by a master that did not close "
            f"it, which only a writable tree can read. The tree is intact: make it writable "
            f"again (chmod -R u+w {paths.root}), then look again.")
    return TreeError(
        f"The index {paths.db} cannot be read ({err}). Check that the file and its "
        f"directory can be read and that the disk and file system are sound, then try "
        f"again.")


def _upgrade(db: sqlite3.Connection) -> None:
    """Brings an index of an older format to FORMAT_VERSION."""
    for table, column, kind in _ADDED:
        if column not in _columns(db, table):
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
    db.executescript(SCHEMA_4)
    # format 6: a failed try's log as a path in the tree (logs/<job>.<attempt>.log),
    # wherever the tree was when it was recorded
    db.execute("UPDATE failures SET log = 'logs/' || job || '.' || attempt || '.log' "
               "WHERE log LIKE '%/logs/' || job || '.' || attempt || '.log'")
    # format 7: the ready jobs by priority
    db.execute("DROP INDEX IF EXISTS jobs_state")
    db.execute(JOBS_STATE)
    db.execute("UPDATE meta SET value = ? WHERE key = 'format_version'",
               (json.dumps(FORMAT_VERSION),))


def _columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in db.execute(f"PRAGMA table_info({table})")}


def job_columns(db: sqlite3.Connection) -> str:
    """The select list of a JobRow; an older index read as it is (read-only)
    gives NULL (priority: 0) for the columns it does not have yet."""
    names = _columns(db, "jobs")
    return ", ".join(c if c in names else f"{_MISSING.get(c, 'NULL')} AS {c}"
                     for c in COLUMNS)


def has_column(db: sqlite3.Connection, table: str, column: str) -> bool:
    """Whether the index has ``table.column`` (an older one read as it is may not)."""
    return column in _columns(db, table)
