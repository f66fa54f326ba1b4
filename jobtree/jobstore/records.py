"""The records of the index: a job's state, a job as the index holds it, and
what a worker's run adds to it.

Every job is one row. A job's ``parent`` is the target whose ``pending``
count its chain decrements when the chain closes; ``followon`` points to the
next target of the chain; ``chain`` is the id of the chain's founder (the key
of its global temp dir).
"""

from __future__ import annotations

import dataclasses
import enum
import json
from typing import Any, NewType, Sequence

from ..resources import Resources

JobId = NewType("JobId", int)


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


#: the columns of a JobRow, in its order
COLUMNS = ("id", "state", "parent", "predecessor", "chain", "followon", "pending",
           "attempt", "tries_left", "cls", "description", "cpu", "memory", "time",
           "disk", "batch", "batch_id", "issued_at", "started_at", "extra", "needs", "asked",
           "priority", "pinned")


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
    asked: str | None = None
    """What its current (or last) try asks beyond the target's own request, as
    JSON (None: just that); see :mod:`jobtree.escalation`."""
    priority: int = 0
    """Its priority: ready jobs are issued highest first (ties by id)."""
    pinned: str | None = None
    """The request values ``jobTreeRun --set`` changed, which the next try asks
    as they are (not grown after an earlier try ran out of memory or time),
    as JSON ``{"after": attempt, "fields": [...]}``: they hold for the tries
    after ``attempt`` until one of them fails; see :meth:`pinned_fields`."""

    def pinned_fields(self, last_failed: int | None) -> frozenset[str]:
        """The request fields the next try asks as the job's own request says,
        given the attempt number of its latest failed try (None: none failed)."""
        if not self.pinned:
            return frozenset()
        pin = json.loads(self.pinned)
        if last_failed is not None and last_failed > int(pin.get("after", 0)):
            return frozenset()  # a try after the edit failed: it grows as usual
        return frozenset(pin.get("fields") or ())

    def resources(self) -> Resources:
        """What the job asked for (None where the tree's defaults apply)."""
        data = json.loads(self.extra) if self.extra else {}
        data.update(cpu=self.cpu, memory=self.memory, time=self.time, disk=self.disk)
        return Resources.from_dict(data)


def job_row(values: Sequence[Any]) -> JobRow:
    """A JobRow from the values of COLUMNS, in their order."""
    data = dict(zip(COLUMNS, values))
    data["state"] = JobState(data["state"])
    return JobRow(**data)


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
    priority: int = 0
    """Its priority (the target's ``priority``)."""

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
    priority: int = 0
    """The target's priority."""


@dataclasses.dataclass
class Settled:
    """What one ingestion did, for the master to act on after commit."""

    closed_chains: list[int] = dataclasses.field(default_factory=list)
    messages: list[tuple[int, str, str]] = dataclasses.field(default_factory=list)
    new_ready: int = 0
    done: int = 0
    root_done: bool = False
