"""The promise of issue 13, as its acceptance reads: a classic jobTree script
runs unchanged, and finishes, on singleMachine, real Slurm (memory enforced)
and real Grid Engine, although its targets' time estimates are far below
what they run for and their memory requests are tiny, in bytes."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PIPELINES, quick_cluster_config, require_scheduler


@pytest.mark.parametrize("system", ["singleMachine", "slurm", "gridEngine"])
def test_a_classic_script_runs_unchanged(tmp_path: Path, system: str) -> None:
    if system != "singleMachine":
        require_scheduler(system)
    out, tree = tmp_path / "out", tmp_path / "tree"
    width = 6
    done = subprocess.run(
        [sys.executable, str(PIPELINES / "classic.py"), "--out", str(out),
         "--width", str(width), "--seconds", "5", "--jobTree", str(tree),
         "--batchSystem", system, "--retryCount", "0", "--maxThreads", "6",
         "--clusterConfig", str(quick_cluster_config(tmp_path))],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (out / "total").read_text() == str(sum(range(width)))
    with sqlite3.connect(tree / "tree.db") as db:
        # not one try lost: every target ran once, and none failed
        assert db.execute("SELECT COUNT(*) FROM failures").fetchone()[0] == 0
        asked = {m for (m,) in db.execute("SELECT memory FROM jobs WHERE cls LIKE '%Work'")}
    assert 1000000 in asked  # the index keeps what the targets asked
