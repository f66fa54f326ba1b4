"""The on-disk job tree: an SQLite index, and the only code that knows its tables.

- :mod:`.records`: a job's state and the records read from and written to
  the index.
- :mod:`.schema`: the tables, connecting, opening (and upgrading) an index.
- :mod:`.index`: :class:`TreeIndex`, every read the commands, the reports
  and the readers of stored values make, through a read-only connection.
- :mod:`.store`: :class:`JobStore`, the one writer (the master's), a
  TreeIndex with the writes.
- :mod:`.views`: the records the readers return.
- :mod:`.guard`: SQLite's errors as the user should see them (a damaged
  index), and stopping a long query (Ctrl-C, a time limit).
- :mod:`.commits`: the commit counter beside the index, which tells an index
  that lost its write-ahead log.
"""

from __future__ import annotations

from .index import (
    LISTING_COLUMNS,
    RUN_MEASURES,
    STATES,
    ClassUse,
    ConditionError,
    ConditionTimeout,
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
from .commits import RolledBackError
from .guard import IndexDamagedError
from .records import JobId, JobRow, JobState, NewJob, Settled, Step
from .schema import FORMAT_VERSION, check_writable
from .store import JobStore

__all__ = [
    "FORMAT_VERSION",
    "LISTING_COLUMNS",
    "RUN_MEASURES",
    "STATES",
    "ClassUse",
    "ConditionError",
    "ConditionTimeout",
    "FailedTries",
    "IndexDamagedError",
    "Issued",
    "JobId",
    "JobRow",
    "JobState",
    "JobStore",
    "ListingRow",
    "NewJob",
    "Peek",
    "ReadError",
    "RolledBackError",
    "Settled",
    "Spread",
    "Step",
    "TreeIndex",
    "check_writable",
    "peek",
    "state_name",
]
