"""The records the index's readers return: what a listing, a summary or a look
at a tree that may be damaged gives (see :mod:`.index`)."""

from __future__ import annotations

import dataclasses
import json
import sqlite3

from ..paths import TreePaths
from . import schema
from .records import JobState


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
    priority: int = 0
    """Its priority (ready targets are issued highest first)."""


@dataclasses.dataclass(frozen=True)
class Spread:
    """One measure over recorded runs (None where no run recorded it)."""

    low: float | None
    median: float | None
    mean: float | None
    high: float | None
    total: float | None


@dataclasses.dataclass(frozen=True)
class ClassUse:
    """What the runs of one class recorded with --stats were granted and used.

    "Asked" is the request as the master granted it: the target's own, the
    tree's defaults filling what it did not say; a follow-on chained into
    its predecessor's job had what that job was granted. Peaks, CPU and wall
    times are the recorded ones (seconds, bytes); None where no run
    recorded that measure.
    """

    cls: str
    runs: int
    memory_asked: tuple[int | None, int | None]
    """The least and the most memory asked."""
    memory_peak: int | None
    """The highest peak."""
    memory_over: int
    """Runs whose peak was over what they asked."""
    cpu_asked: tuple[float | None, float | None]
    cpu_time: float | None
    """CPU time of the runs that recorded both CPU and wall time."""
    cpu_wall: float | None
    """Wall time of those runs."""
    cpu_reserved: float | None
    """Cores asked times wall time, over those runs."""
    time_asked: tuple[float | None, float | None]
    """The shortest and longest estimate (``time``) given."""
    estimated: int
    """Runs that had an estimate."""
    wall_high: float | None
    wall_over: int
    """Runs that took longer than their estimate."""
    ranks: dict[str, dict[int, float]] = dataclasses.field(default_factory=dict)
    """Percentiles (nearest rank) of "memory" and "wall": {measure: {percent: value}}."""


@dataclasses.dataclass(frozen=True)
class FailedTries:
    """The failed tries of one class for one reason, and the most they asked
    (as granted: defaults applied)."""

    count: int
    memory: int | None
    cpu: float | None
    time: float | None
    """The longest estimate."""


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
