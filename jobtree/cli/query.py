"""Status as data, for jobTreeStatus: the JSON document (``--json``), lists of
targets by filter (``--state``, ``--class``, ``--select``, ``--limit``), the
summary per target class (``--classes``) and the logs of a target's attempts
(``--log``). Everything here only reads the index, through the job store's
read-only TreeIndex, so it never blocks a running master.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import re
import time
from typing import Any

from ..errors import BadOptionError
from ..jobstore import (LISTING_COLUMNS, STATES, ConditionError, ConditionTimeout, JobState,
                        TreeIndex, state_name)
from ..paths import TreePaths
from ..report import failed_for_good, tree_defaults, tries_of
from ..resources import format_seconds

#: the name and version of the JSON document's schema (docs/status.schema.json)
SCHEMA = "jobtree-status/1"
#: the columns a --select condition can use (and a listing shows)
COLUMNS = LISTING_COLUMNS


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
    priority: int = 0

    def line(self) -> str:
        """The listing's line: id, class, state, attempts, wall time, priority,
        description."""
        seconds = format_seconds(self.seconds)
        return (f"{self.id}\t{self.cls}\t{self.state}\t{self.attempts}\t{seconds}\t"
                f"{self.priority}\t{self.description}")

    def to_dict(self) -> dict[str, Any]:
        """The target as the JSON document has it."""
        return {"id": self.id, "class": self.cls, "state": self.state,
                "attempts": self.attempts, "seconds": self.seconds,
                "priority": self.priority, "description": self.description}


def parse_state(value: str) -> str:
    """A --state value, checked.

    Raises:
        BadOptionError: it names no state.
    """
    if value not in STATES:
        raise BadOptionError(f"--state {value!r} is not a state; use one of: "
                             f"{', '.join(STATES)}.")
    return value


def targets(index: TreeIndex, state: str | None = None, cls: str | None = None,
            select: str | None = None, limit: int | None = None,
            now: float | None = None, timeout: float | None = None) -> list[Listed]:
    """The targets that match every filter given, by id.

    Args:
        state: one of STATES.
        cls: a class, as jobtree records it (``module.Class``) or by its last part.
        select: an SQL condition over COLUMNS, e.g. ``"attempts > 1"``.
        limit: the most to return.
        now: the time running targets' seconds are counted to.
        timeout: the seconds the listing may take (--selectTimeout; None: no limit).

    Raises:
        BadOptionError: the --select condition is not valid, or ran over ``timeout``.
    """
    try:
        rows = index.listing(state, cls, select, limit, timeout)
    except ConditionTimeout:
        what = f"--select {select!r}" if select else "The listing"
        raise BadOptionError(
            f"{what} ran for more than --selectTimeout {timeout:g} seconds and was stopped "
            f"(a condition that never ends, such as an unbounded WITH RECURSIVE, or a heavy "
            f"one on a big tree). Simplify the condition, or give it more time with "
            f"--selectTimeout SECONDS (0: no limit).") from None
    except ConditionError as err:
        raise BadOptionError(
            f"--select {select!r} is not a valid condition ({err}); write an SQL condition "
            f"over {', '.join(COLUMNS)}, e.g. \"attempts > 1 AND class LIKE '%Sort%'\".") from None
    moment = time.time() if now is None else now
    listed = []
    for row in rows:
        seconds = row.wall
        if row.state == "running" and row.started_at is not None:
            seconds = max(0.0, moment - row.started_at)
        listed.append(Listed(row.id, row.cls, row.state, row.attempts, seconds, row.description,
                             row.priority))
    return listed


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


def classes(index: TreeIndex) -> list[ClassSummary]:
    """Every target class, by the number of its targets (most first)."""
    found = [ClassSummary(*row) for row in index.classes()]
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
def logs(paths: TreePaths, index: TreeIndex, job: int,
         attempt: int | None = None) -> list[tuple[int, str]]:
    """The kept logs of a target's attempts: (attempt, path), oldest first.

    Raises:
        BadOptionError: there is no such target, or no log is kept for it.
    """
    try:
        row = index.job(job)
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
        state = state_name(row.state)
        raise BadOptionError(
            f"No log is kept for {which}target {job} ({row.description}, {state}, "
            f"{row.attempt} attempts): jobtree keeps the logs of failed attempts and of "
            f"attempts that are running, and removes those of attempts that succeeded.")
    return sorted(found)


# ------------------------------------------------------------- document
def document(paths: TreePaths, index: TreeIndex, master: dict[str, Any],
             issued: dict[str, Any], now: float, limit: int) -> dict[str, Any]:
    """The ``--json`` document (schema SCHEMA; see docs/status.schema.json).

    Args:
        master: whether a master runs the tree, and what it recorded.
        issued: how many issued targets run and how many are queued.
        limit: the most running and failed targets to list.
    """
    meta = index.meta()
    counts = index.counts()
    total = sum(counts.values())
    options = meta.get("options") or {}
    running = index.jobs_in(JobState.ISSUED, limit + 1)
    failed = failed_targets(index)
    defaults = tree_defaults(meta)
    retried = index.retried(limit + 1)
    tries = {row.id: tries_of(row, failures, defaults) for row, failures in retried}
    tries.update((row.id, tries_of(row, failures, defaults)) for row, failures in
                 index.retried(0, [f["id"] for f in failed[:limit] if f["id"] not in tries]))
    for item in failed[:limit]:
        item["tries"] = tries.get(item["id"], [])
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
        "running": [{"id": row.id, "class": row.cls, "description": row.description,
                     "attempt": row.attempt, "priority": row.priority,
                     "batch": row.batch, "batch_id": row.batch_id,
                     "issued_at": row.issued_at, "started_at": row.started_at,
                     "seconds": max(0.0, now - row.started_at) if row.started_at else None}
                    for row in running[:limit]],
        "failed": failed[:limit],
        "retried": [{"id": row.id, "class": row.cls, "description": row.description,
                     "state": state_name(row.state), "tries": tries[row.id]}
                    for row, _ in retried[:limit]],
        "truncated": {"running": len(running) > limit, "failed": len(failed) > limit,
                      "retried": len(retried) > limit},
        "warnings": warnings(index, limit),
    }


def warnings(index: TreeIndex, limit: int) -> dict[str, Any]:
    """The targets' warnings: how many, and the latest ``limit``."""
    count, latest = index.warnings(limit)
    return {"total": count,
            "latest": [{"id": job, "description": description, "at": at, "text": text}
                       for at, job, description, text in latest]}


def failed_targets(index: TreeIndex) -> list[dict[str, Any]]:
    """Every target that failed for good, by its last failed attempt."""
    return [{"id": f["job"], "class": f["cls"], "description": f["description"],
             "attempts": tries, "reason": f["reason"], "exit_code": f["exit_code"],
             "message": f["message"], "log": f["log"], "batch": f["batch"],
             "batch_id": f["batch_id"], "at": f["at"]}
            for f, tries in failed_for_good(index)]
