"""The batch-system conformance suite, for jobtree's batch systems and plugins.

:mod:`jobtree.testing.conformance` holds the tests (it needs pytest);
this package and :mod:`jobtree.testing.harness` do not. A plugin's authors
run the suite against their batch system as that module's doc shows, and
docs/plugins.md walks through it.
"""

from __future__ import annotations

from .harness import QUICK, BatchCase, Jobs, by_name, cluster_files, collect

__all__ = ["QUICK", "BatchCase", "Jobs", "by_name", "cluster_files", "collect"]
