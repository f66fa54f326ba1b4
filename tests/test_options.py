"""Options that shape a run: chaining (--jobTime), --maxJobDuration,
--bigBatchSystem, logging, and options changed on a restart."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from conftest import run_command, run_script


def _pids(out: Path) -> list[str]:
    return [(out / f"link{n}").read_text() for n in range(5)]


def test_follow_ons_are_chained_within_jobTime(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = run_script("chain.py", "chain", "--out", str(out), "--jobTree", str(tmp_path / "jt"))
    assert done.returncode == 0, done.stderr
    assert len(set(_pids(out))) == 1  # one worker ran the whole chain
    for n in range(5):
        assert done.stderr.count(f"link {n} ran") == 1
    db = sqlite3.connect(tmp_path / "jt" / "tree.db")
    assert db.execute("SELECT COUNT(*) FROM jobs WHERE state = 4").fetchone()[0] == 5


def test_jobTime_zero_turns_chaining_off(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = run_script("chain.py", "chain", "--out", str(out), "--jobTree", str(tmp_path / "jt"),
                      "--jobTime", "0")
    assert done.returncode == 0, done.stderr
    assert len(set(_pids(out))) == 5


def test_maxJobDuration_kills_and_fails(tmp_path: Path) -> None:
    started = time.time()
    done = run_script("chain.py", "sleeper", "--out", str(tmp_path / "out"), "--jobTree",
                      str(tmp_path / "jt"), "--maxJobDuration", "1", "--retryCount", "1")
    assert done.returncode == 1
    assert time.time() - started < 40
    assert "over --maxJobDuration" in done.stderr
    assert "(timeout)" in done.stderr
    assert "failed 2 times" in done.stderr


def test_big_targets_go_to_the_big_batch_system(tmp_path: Path) -> None:
    done = run_script("chain.py", "big", "--out", str(tmp_path / "out"), "--jobTree",
                      str(tmp_path / "jt"), "--bigBatchSystem", "singleMachine",
                      "--bigMemoryThreshold", "2G", "--maxMemory", "1G")
    assert done.returncode == 0, done.stderr
    db = sqlite3.connect(tmp_path / "jt" / "tree.db")
    batches = dict(db.execute("SELECT cls, batch FROM jobs"))
    assert batches == {"Big": "singleMachine (big)", "Link": "singleMachine"}


def test_log_file_and_options_changed_on_restart(tmp_path: Path) -> None:
    log = tmp_path / "master.log"
    tree = tmp_path / "jt"
    done = run_script("chain.py", "chain", "--out", str(tmp_path / "out"), "--jobTree",
                      str(tree), "--logFile", str(log), "--maxThreads", "2")
    assert done.returncode == 0
    assert "link 3 ran" in log.read_text()
    again = run_command("run", "--jobTree", str(tree), "--maxThreads", "1", "--logDebug")
    assert again.returncode == 0, again.stderr
    assert "options changed since the last run" in again.stderr
    assert "maxThreads: 2 -> 1" in again.stderr
    assert "logLevel: 'INFO' -> 'DEBUG'" in again.stderr
    assert "the tree finished" in again.stderr
    # the log file option was stored with the tree and still applies
    assert log.read_text().count("the tree finished") == 2
    assert os.path.getsize(log) > 0


def test_failure_in_a_chained_follow_on_names_it(tmp_path: Path) -> None:
    env = dict(os.environ, CHAIN_FAIL="1")
    done = run_script("chain.py", "chain", "--out", str(tmp_path / "out"), "--jobTree",
                      str(tmp_path / "jt"), "--retryCount", "0", env=env)
    assert done.returncode == 1
    assert "in the chained follow-on Link(n=3" in done.stderr
    assert "RuntimeError: link 3 broke" in done.stderr
