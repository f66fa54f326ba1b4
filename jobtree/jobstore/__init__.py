"""The on-disk job tree: an SQLite index, and the only code that knows its tables.

- :mod:`.records`: a job's state and the records read from and written to
  the index.
- :mod:`.schema`: the tables, connecting, opening (and upgrading) an index.
- :mod:`.index`: :class:`TreeIndex`, every read the commands, the reports
  and the readers of stored values make, through a read-only connection.
- :mod:`.store`: :class:`JobStore`, the one writer (the master's), a
  TreeIndex with the writes.
"""

from __future__ import annotations

from .index import (
    LISTING_COLUMNS,
    RUN_MEASURES,
    STATES,
    ClassUse,
    ConditionError,
    FailedTries,
    Issued,
    ListingRow,
    Peek,
    ReadError,
    Spread,
    TreeIndex,
    peek,
    state_name,
)
from .records import JobId, JobRow, JobState, NewJob, Settled, Step
from .schema import FORMAT_VERSION
from .store import JobStore

__all__ = [
    "FORMAT_VERSION",
    "LISTING_COLUMNS",
    "RUN_MEASURES",
    "STATES",
    "ClassUse",
    "ConditionError",
    "FailedTries",
    "Issued",
    "JobId",
    "JobRow",
    "JobState",
    "JobStore",
    "ListingRow",
    "NewJob",
    "Peek",
    "ReadError",
    "Settled",
    "Spread",
    "Step",
    "TreeIndex",
    "peek",
    "state_name",
]
