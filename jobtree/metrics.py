"""Counters of this process's bookkeeping, for the benchmarks.

Off unless ``JOBTREE_METRICS=1`` is set in the environment; then the master
counts the index's transactions and SQL statements and every fsync jobtree
itself asks for (SQLite's own syncs are not counted: see benchmarks/).
"""

from __future__ import annotations

import collections
import os

#: whether counting is on (read once, at import)
ENABLED = os.environ.get("JOBTREE_METRICS") == "1"
#: transactions, statements, fsyncs, ... counted in this process
COUNTS: collections.Counter[str] = collections.Counter()


def count(name: str, n: int = 1) -> None:
    """Adds ``n`` to the counter ``name`` when counting is on."""
    if ENABLED:
        COUNTS[name] += n
