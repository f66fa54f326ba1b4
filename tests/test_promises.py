"""Return values and promises (Target.rv()) on singleMachine: resolved before
the dependent runs, parts of values, large values as files, misuse refused
with a clear message, and values that survive a SIGKILL of the master."""

from __future__ import annotations

import ast
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import PIPELINES, run_command, run_script

import jobtree


def _run(tmp_path: Path, mode: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_script("promises.py", "--mode", mode, "--out", str(tmp_path / "out"),
                      "--jobTree", str(tmp_path / "tree"), "--maxThreads", "2",
                      "--logLevel", "WARNING", *extra)


def _read(tmp_path: Path, name: str) -> list[object]:
    lines = (tmp_path / "out" / name).read_text().splitlines()
    return [ast.literal_eval(line) if line != "ran" else line for line in lines]


def _db(tmp_path: Path) -> sqlite3.Connection:
    return sqlite3.connect(tmp_path / "tree" / "tree.db")


def test_a_follow_on_gets_the_values_of_its_founders_children(tmp_path: Path) -> None:
    done = _run(tmp_path, "sum")
    assert done.returncode == 0, done.stderr
    assert _read(tmp_path, "total") == [[0, 1, 4, 9, 16]]
    with _db(tmp_path) as db:
        stored = dict(db.execute("SELECT j.cls, COUNT(*) FROM returned r "
                                 "JOIN jobs j ON j.id = r.job GROUP BY j.cls"))
        (root_value,) = db.execute("SELECT data FROM returned WHERE job = 1").fetchone()
    # every run() that returned something is stored: the root, five squares, the total
    assert stored == {"Root": 1, "Square": 5, "Total": 1}
    import pickle

    assert pickle.loads(root_value) == "root of sum"
    assert jobtree.getReturnValue(str(tmp_path / "tree")) == "root of sum"
    with _db(tmp_path) as db:
        (total,) = db.execute("SELECT id FROM jobs WHERE cls = 'Total'").fetchone()
    assert jobtree.getReturnValue(str(tmp_path / "tree"), total) == 30
    with pytest.raises(jobtree.TreeError, match="has no target 99"):
        jobtree.getReturnValue(str(tmp_path / "tree"), 99)


def test_a_promise_can_take_a_part_of_a_value(tmp_path: Path) -> None:
    done = _run(tmp_path, "parts")
    assert done.returncode == 0, done.stderr
    assert _read(tmp_path, "parts") == [([7, 8], 8, {"key": [7, 8], "other": "x"})]


def test_a_child_gets_the_value_of_the_target_that_added_it(tmp_path: Path) -> None:
    done = _run(tmp_path, "parent")
    assert done.returncode == 0, done.stderr
    assert _read(tmp_path, "parent") == ["root of parent"]


def test_a_chained_follow_on_gets_its_predecessors_value_in_the_same_worker(
        tmp_path: Path) -> None:
    done = _run(tmp_path, "chained")
    assert done.returncode == 0, done.stderr
    ((word, pid),) = _read(tmp_path, "chained")  # type: ignore[misc]
    assert word == "chained"
    with _db(tmp_path) as db:
        # the follow-on was chained: it never had a pickle of its own issued
        runs = db.execute("SELECT COUNT(*) FROM jobs WHERE cls = 'Record' AND attempt = 0"
                          ).fetchone()[0]
    assert runs == 1


def test_a_large_value_is_kept_as_a_file_not_in_the_index(tmp_path: Path) -> None:
    done = _run(tmp_path, "large")
    assert done.returncode == 0, done.stderr
    assert _read(tmp_path, "large") == ["x" * 300_000]
    with _db(tmp_path) as db:
        rows = db.execute("SELECT r.data, r.file FROM returned r JOIN jobs j ON j.id = r.job "
                          "WHERE j.cls = 'Answer'").fetchall()
    ((data, name),) = rows
    assert data is None and name
    assert (tmp_path / "tree" / "values" / name).stat().st_size > 300_000


def test_a_promise_to_a_sibling_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    done = _run(tmp_path, "sibling", "--retryCount", "3")
    assert done.returncode == 1
    status = run_command("status", "--jobTree", str(tmp_path / "tree"), "--verbose")
    text = status.stdout
    assert "PromiseError" in text and "run in parallel" in text, text
    assert "follow-on" in text
    assert not (tmp_path / "out" / "sibling").exists()
    with _db(tmp_path) as db:
        (tries,) = db.execute("SELECT attempt FROM jobs WHERE cls = 'Root'").fetchone()
    assert tries == 1  # a misuse is not retried


def test_the_root_may_promise_its_value_to_a_follow_on_added_before_the_start(
        tmp_path: Path) -> None:
    done = _run(tmp_path, "preadded")
    assert done.returncode == 0, done.stderr
    assert _read(tmp_path, "preadded") == [99]


def test_an_unpicklable_promised_value_fails_its_target_clearly(tmp_path: Path) -> None:
    done = _run(tmp_path, "unpicklable")
    assert done.returncode == 1
    status = run_command("status", "--jobTree", str(tmp_path / "tree"), "--verbose").stdout
    assert "returned a lock, which cannot be" in status and "rv()" in status, status
    assert not (tmp_path / "out" / "lock").exists()


def test_dependents_of_a_failed_target_wait_and_run_once_it_is_fixed(tmp_path: Path) -> None:
    fixed = tmp_path / "fixed"
    done = _run(tmp_path, "failing", "--fixed", str(fixed), "--retryCount", "1")
    assert done.returncode == 1
    assert "its value (rv()) is promised" in done.stderr, done.stderr
    assert not (tmp_path / "out" / "after-flaky").exists()
    with pytest.raises(jobtree.TreeError, match="has not run successfully yet .it is failed"):
        jobtree.getReturnValue(str(tmp_path / "tree"), 2)
    fixed.touch()
    again = run_command("run", "--jobTree", str(tmp_path / "tree"))
    assert again.returncode == 0, again.stderr
    assert _read(tmp_path, "after-flaky") == [42]
    assert jobtree.getReturnValue(str(tmp_path / "tree"), 2) == 42
    assert _read(tmp_path, "flaky") == ["ran"] * 3


def test_values_survive_a_sigkill_of_the_master(tmp_path: Path) -> None:
    """Four quick children finish; the master is killed while the fifth runs.
    After jobTreeRun, the follow-on gets all five values and the four are not
    run again."""
    out = tmp_path / "out"
    master = subprocess.Popen(
        [sys.executable, str(PIPELINES / "promises.py"), "--mode", "slow", "--out", str(out),
         "--jobTree", str(tmp_path / "tree"), "--maxThreads", "5", "--logLevel", "WARNING"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert master.poll() is None, "the tree finished before the master was killed"
            assert time.monotonic() < deadline, "the quick children did not finish"
            try:
                with _db(tmp_path) as db:
                    (finished,) = db.execute(
                        "SELECT COUNT(*) FROM returned r JOIN jobs j ON j.id = r.job "
                        "WHERE j.cls = 'Square'").fetchone()
            except sqlite3.Error:
                finished = 0
            if finished == 4:
                break
            time.sleep(0.1)
    finally:
        master.send_signal(signal.SIGKILL)
        master.wait()
    again = run_command("run", "--jobTree", str(tmp_path / "tree"))
    assert again.returncode == 0, again.stderr
    assert _read(tmp_path, "total") == [[0, 1, 4, 9, 16]]
    ran = {n: len(_read(tmp_path, f"square-{n}")) for n in range(5)}
    assert [ran[n] for n in range(4)] == [1, 1, 1, 1], ran
    assert ran[4] == 2  # the slow one was running when the master died


def test_values_are_whole_after_many_sigkills_of_the_master(tmp_path: Path) -> None:
    """Kill the master at random moments while sixty children return values;
    after each kill jobTreeRun continues. The follow-on gets every value, and
    no square's value was committed twice."""
    import random

    rng = random.Random(8)
    out, tree = tmp_path / "out", tmp_path / "tree"
    first = [sys.executable, str(PIPELINES / "promises.py"), "--mode", "wide", "--out",
             str(out), "--jobTree", str(tree), "--maxThreads", "4", "--logLevel", "WARNING"]
    again = [sys.executable, "-m", "jobtree.cli.run", "--jobTree", str(tree)]
    kills = 0
    for round_ in range(40):
        # the script until the tree exists (a kill may come before it is made:
        # creation is atomic), then jobTreeRun
        made = (tree / "tree.db").exists()
        master = subprocess.Popen(again if made else first,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            master.wait(timeout=rng.uniform(0.3, 1.2))
        except subprocess.TimeoutExpired:
            master.send_signal(signal.SIGKILL)
            master.wait()
            kills += 1
            continue
        assert master.returncode == 0
        break
    else:
        raise AssertionError("the tree did not finish in 40 rounds")
    assert kills >= 2
    assert _read(tmp_path, "total")[-1] == [n * n for n in range(60)]
    with _db(tmp_path) as db:
        values = db.execute("SELECT COUNT(*), COUNT(DISTINCT r.job) FROM returned r "
                            "JOIN jobs j ON j.id = r.job WHERE j.cls = 'Square'").fetchone()
        squares = db.execute("SELECT COUNT(*) FROM jobs WHERE cls = 'Square'").fetchone()[0]
    assert values == (60, 60) and squares == 60
