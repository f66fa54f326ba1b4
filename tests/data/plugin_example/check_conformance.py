"""The plugin's own tests: jobtree's conformance suite, run against it
(``pytest check_conformance.py`` once the plugin is installed)."""

from __future__ import annotations

import pytest

from jobtree.batch.local import KILL_GRACE
from jobtree.testing import BatchCase, by_name
from jobtree.testing.conformance import *  # noqa: F403 - the suite's fixtures and tests


@pytest.fixture
def case() -> BatchCase:
    """The batch system under test: this plugin, found by its name."""
    return BatchCase("exampleLocal", by_name("exampleLocal"), kill_grace=KILL_GRACE)
