"""Status as data, for jobTreeStatus: the JSON document (``--json``), lists of
targets by filter (``--state``, ``--class``, ``--select``, ``--limit``), the
summary per target class (``--classes``) and the logs of a target's attempts
(``--log``). Everything here only reads the index, through a read-only
connection, so it never blocks a running master.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import re
import sqlite3
import time
from typing import Any

from ..errors import BadOptionError
from ..jobstore import JobState, JobStore
from ..paths import TreePaths
from ..report import failed_for_good
from ..resources import format_seconds

#: the name and version of the JSON document's schema (docs/status.schema.json)
SCHEMA = "jobtree-status/1"
#: the states a filter can name, and the index states each covers
STATES: dict[str, tuple[JobState, ...]] = {
    "waiting": (JobState.WAITING, JobState.RAN),
    "ready": (JobState.READY,),
    "running": (JobState.ISSUED,),
    "done": (JobState.DONE,),
    "failed": (JobState.FAILED,),
}
_NAMES = {int(state): name for name, states in STATES.items() for state in states}
_STATE_SQL = "CASE state " + " ".join(
    f"WHEN {value} THEN '{name}'" for value, name in sorted(_NAMES.items())) + " END"
#: the columns a --select condition can use (and a listing shows)
COLUMNS = ("id", "class", "state", "attempts", "description", "parent", "chain", "batch",
           "batch_id", "issued_at", "started_at", "cpu", "memory", "time", "disk")
_VIEW = (f"SELECT id, cls AS class, {_STATE_SQL} AS state, attempt AS attempts, description, "
         f"parent, chain, batch, batch_id, issued_at, started_at, cpu, memory, time, disk "
         f"FROM jobs")


# ------------------------------------------------------------- listings
@dataclasses.dataclass(frozen=True)
class Listed:
    """One target of a listing."""

    id: int
    cls: str
    state: str
    attempts: int
    seconds: float | None
    description: str

    def line(self) -> str:
        """The listing's line: id, class, state, attempts, wall time, description."""
        seconds = format_seconds(self.seconds)
        return (f"{self.id}\t{self.cls}\t{self.state}\t{self.attempts}\t{seconds}\t"
                f"{self.description}")

    def to_dict(self) -> dict[str, Any]:
        """The target as the JSON document has it."""
        return {"id": self.id, "class": self.cls, "state": self.state,
                "attempts": self.attempts, "seconds": self.seconds,
                "description": self.description}


def parse_state(value: str) -> str:
    """A --state value, checked.

    Raises:
        BadOptionError: it names no state.
    """
    if value not in STATES:
        raise BadOptionError(f"--state {value!r} is not a state; use one of: "
                             f"{', '.join(STATES)}.")
    return value


def targets(db: sqlite3.Connection, state: str | None = None, cls: str | None = None,
            select: str | None = None, limit: int | None = None,
            now: float | None = None) -> list[Listed]:
    """The targets that match every filter given, by id.

    Args:
        state: one of STATES.
        cls: a class, as jobtree records it (``module.Class``) or by its last part.
        select: an SQL condition over COLUMNS, e.g. ``"attempts > 1"``.
        limit: the most to return.
        now: the time running targets' seconds are counted to.

    Raises:
        BadOptionError: the --select condition is not valid.
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
    if select:
        where.append(f"({select})")
    sql = (f"WITH t AS ({view}) SELECT id, class, state, attempts, description, started_at "
           f"FROM t" + (f" WHERE {' AND '.join(where)}" if where else "")
           + " ORDER BY id LIMIT ?")
    args.append(-1 if limit is None else limit)
    try:
        rows = db.execute(sql, args).fetchall()
    except sqlite3.Error as err:
        if select is None:
            raise
        raise BadOptionError(
            f"--select {select!r} is not a valid condition ({err}); write an SQL condition "
            f"over {', '.join(COLUMNS)}, e.g. \"attempts > 1 AND class LIKE '%Sort%'\".") from None
    walls = _walls(db, [row[0] for row in rows])
    moment = time.time() if now is None else now
    listed = []
    for job, kind, name, attempts, description, started in rows:
        seconds = walls.get(job)
        if name == "running" and started is not None:
            seconds = max(0.0, moment - started)
        listed.append(Listed(job, kind, name, attempts, seconds, description))
    return listed


def _walls(db: sqlite3.Connection, jobs: list[int]) -> dict[int, float]:
    """The recorded run time of each of ``jobs`` (trees run with --stats)."""
    walls: dict[int, float] = {}
    for start in range(0, len(jobs), 500):
        part = jobs[start:start + 500]
        walls.update(db.execute(
            f"SELECT job, SUM(wall) FROM stats WHERE job IN ({', '.join('?' * len(part))}) "
            f"GROUP BY job", part).fetchall())
    return walls


# ------------------------------------------------------------ per class
@dataclasses.dataclass(frozen=True)
class ClassSummary:
    """The targets of one class: how many in each state, and their median run time."""

    cls: str
    counts: dict[str, int]
    median: float | None
    runs: int

    def to_dict(self) -> dict[str, Any]:
        """The summary as the JSON document has it."""
        return {"class": self.cls, "counts": self.counts, "median_seconds": self.median,
                "runs": self.runs}


def classes(db: sqlite3.Connection) -> list[ClassSummary]:
    """Every target class, by the number of its targets (most first)."""
    counts: dict[str, dict[str, int]] = {}
    for kind, state, count in db.execute(
            "SELECT cls, state, COUNT(*) FROM jobs GROUP BY cls, state"):
        mine = counts.setdefault(kind, dict.fromkeys(STATES, 0))
        mine[_NAMES[state]] += count
    runs = dict(db.execute("SELECT cls, COUNT(wall) FROM stats GROUP BY cls").fetchall())
    found = []
    for kind, mine in counts.items():
        median = None
        if runs.get(kind):
            median = db.execute(
                "SELECT wall FROM stats WHERE cls = ? AND wall IS NOT NULL ORDER BY wall "
                "LIMIT 1 OFFSET ?", (kind, (runs[kind] - 1) // 2)).fetchone()[0]
        found.append(ClassSummary(kind, mine, median, int(runs.get(kind, 0))))
    return sorted(found, key=lambda c: (-sum(c.counts.values()), c.cls))


def class_lines(summaries: list[ClassSummary]) -> list[str]:
    """The --classes table."""
    header = ["class", *STATES, "median run"]
    rows = [[s.cls, *(str(s.counts[name]) for name in STATES),
             format_seconds(s.median)] for s in summaries]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                       for i, (cell, w) in enumerate(zip(row, widths)))
             for row in [header, *rows]]
    if not any(s.runs for s in summaries):
        lines.append("(median run times are recorded for trees run with --stats)")
    return lines


# ------------------------------------------------------------------ logs
def logs(paths: TreePaths, store: JobStore, job: int,
         attempt: int | None = None) -> list[tuple[int, str]]:
    """The kept logs of a target's attempts: (attempt, path), oldest first.

    Raises:
        BadOptionError: there is no such target, or no log is kept for it.
    """
    try:
        row = store.job(job)
    except KeyError:
        raise BadOptionError(f"--log {job}: the tree has no target {job}. List targets with "
                             f"jobTreeStatus --jobTree {paths.root} --state failed.") from None
    found = []
    for path in glob.glob(os.path.join(paths.logs, f"{job}.*.log")):
        match = re.fullmatch(rf"{job}\.(\d+)\.log", os.path.basename(path))
        if match and (attempt is None or int(match.group(1)) == attempt):
            found.append((int(match.group(1)), path))
    if not found:
        which = f"attempt {attempt} of " if attempt is not None else ""
        raise BadOptionError(
            f"No log is kept for {which}target {job} ({row.description}, {_NAMES[row.state]}, "
            f"{row.attempt} attempts): jobtree keeps the logs of failed attempts and of "
            f"attempts that are running, and removes those of attempts that succeeded.")
    return sorted(found)


# ------------------------------------------------------------- document
def document(paths: TreePaths, store: JobStore, db: sqlite3.Connection,
             master: dict[str, Any], issued: dict[str, Any], now: float,
             limit: int) -> dict[str, Any]:
    """The ``--json`` document (schema SCHEMA; see docs/status.schema.json).

    Args:
        master: whether a master runs the tree, and what it recorded.
        issued: how many issued targets run and how many are queued.
        limit: the most running and failed targets to list.
    """
    meta = store.meta()
    counts = store.counts()
    total = sum(counts.values())
    options = meta.get("options") or {}
    running = db.execute(
        "SELECT id, cls, description, attempt, batch, batch_id, issued_at, started_at "
        "FROM jobs WHERE state = ? ORDER BY id LIMIT ?",
        (int(JobState.ISSUED), limit + 1)).fetchall()
    failed = failed_targets(store)
    return {
        "schema": SCHEMA,
        "tree": paths.root,
        "created": meta.get("created"),
        "jobtree_version": meta.get("jobtree_version"),
        "pipeline": {"script": meta.get("script"), "root_class": meta.get("root_class")},
        "batch_system": options.get("batchSystem"),
        "options": options,
        "master": master,
        "counts": {"total": total, "done": counts[JobState.DONE],
                   "issued": counts[JobState.ISSUED], "running": issued["running"],
                   "queued": issued["queued"], "ready": counts[JobState.READY],
                   "waiting": counts[JobState.WAITING] + counts[JobState.RAN],
                   "failed": counts[JobState.FAILED]},
        "complete": counts[JobState.DONE] == total,
        "running": [{"id": job, "class": kind, "description": description,
                     "attempt": attempt, "batch": batch, "batch_id": batch_id,
                     "issued_at": issued_at, "started_at": started_at,
                     "seconds": max(0.0, now - started_at) if started_at else None}
                    for job, kind, description, attempt, batch, batch_id, issued_at, started_at
                    in running[:limit]],
        "failed": failed[:limit],
        "truncated": {"running": len(running) > limit, "failed": len(failed) > limit},
    }


def failed_targets(store: JobStore) -> list[dict[str, Any]]:
    """Every target that failed for good, by its last failed attempt."""
    return [{"id": f["job"], "class": f["cls"], "description": f["description"],
             "attempts": tries, "reason": f["reason"], "exit_code": f["exit_code"],
             "message": f["message"], "log": f["log"], "batch": f["batch"],
             "batch_id": f["batch_id"], "at": f["at"]}
            for f, tries in failed_for_good(store)]
