"""jobtree.Pool on singleMachine: the multiprocessing.Pool calls, results in
input order, retries, the error of a permanent failure, continuing a failed
or killed call without recomputing finished chunks, stored results,
functions defined in __main__, and a 10,000-input map in chunks."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import PIPELINES, run_command

import jobtree
from jobtree import BadOptionError, Pool, PoolError, TargetDefinitionError, TreeError

ROOT = Path(__file__).resolve().parents[1]


# functions the pool's workers import from this module
def square(x: int) -> int:
    return x * x


def slow_first(x: int) -> int:
    time.sleep(1.5 if x == 0 else 0.0)
    return x + 100


def noted(folder: str, x: int) -> int:
    """Notes each run of an input in ``folder``; fails while ``folder``/broken exists."""
    with open(os.path.join(folder, "runs"), "a", encoding="utf-8") as handle:
        handle.write(f"{x}\n")
    if x == 3 and os.path.exists(os.path.join(folder, "broken")):
        raise ValueError(f"input {x} is broken")
    return -x


def fails_once(folder: str, x: int) -> int:
    marker = os.path.join(folder, f"tried-{x}")
    if not os.path.exists(marker):
        open(marker, "w").close()
        raise RuntimeError("a transient failure")
    return x


def sleeper(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


_SETTING: dict[str, str] = {}


def remember(value: str) -> None:
    _SETTING["value"] = value


def with_setting(x: int) -> tuple[str | None, int]:
    return _SETTING.get("value"), x


class Scaler:
    def __init__(self, factor: int) -> None:
        self.factor = factor

    def scale(self, x: int) -> int:
        return x * self.factor


def _runs(folder: Path) -> list[int]:
    path = folder / "runs"
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def _trees(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir())


def _chunk_rows(tree: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(tree / "tree.db") as db:
        return db.execute("SELECT id, state, memory, cpu, time, description FROM jobs "
                          "WHERE cls = 'jobtree.pooltree.Chunk' ORDER BY id").fetchall()


# ------------------------------------------------------------------- calls
def test_map_returns_results_in_input_order_when_chunks_finish_out_of_order(
        tmp_path: Path) -> None:
    with Pool(4, jobTree=str(tmp_path / "pool")) as pool:
        assert pool.map(slow_first, range(8), chunksize=1) == [x + 100 for x in range(8)]
        # the first chunk finished last: unordered results come in finishing order
        unordered = list(pool.imap_unordered(slow_first, range(8), chunksize=2))
        assert sorted(unordered) == [x + 100 for x in range(8)] and unordered[0] != 100
        assert list(pool.imap(slow_first, range(6), chunksize=2)) == [
            x + 100 for x in range(6)]


def test_starmap_apply_and_async_results(tmp_path: Path) -> None:
    seen: list[Any] = []
    with Pool(2, jobTree=str(tmp_path / "pool")) as pool:
        assert pool.starmap(pow, [(2, 3), (3, 2), (10, 0)]) == [8, 9, 1]
        assert pool.apply(divmod, (17, 5)) == (3, 2)
        assert pool.apply(int, ("ff",), {"base": 16}) == 255
        slow = pool.apply_async(sleeper, (2.0,))
        with pytest.raises(ValueError):
            slow.successful()
        with pytest.raises(multiprocessing.TimeoutError):
            slow.get(timeout=0.05)
        assert not slow.ready()
        done = pool.map_async(square, range(5), callback=seen.append)
        assert slow.get(timeout=60) == 2.0 and slow.ready() and slow.successful()
        assert done.get(timeout=60) == [0, 1, 4, 9, 16]
        pool.close()
        pool.join()
    assert seen == [[0, 1, 4, 9, 16]]


def test_the_initializer_runs_in_every_chunk_process(tmp_path: Path) -> None:
    with Pool(2, remember, ("set up",), 10, jobTree=str(tmp_path / "pool")) as pool:
        assert pool.map(with_setting, range(4), chunksize=2) == [
            ("set up", x) for x in range(4)]
    assert _SETTING == {}  # it ran in the workers, not here


def test_methods_of_different_objects_are_different_calls(tmp_path: Path) -> None:
    with Pool(2, jobTree=str(tmp_path / "pool")) as pool:
        assert pool.map(Scaler(2).scale, [1, 2]) == [2, 4]
        assert pool.map(Scaler(3).scale, [1, 2]) == [3, 6]
        assert pool.map(Scaler(2).scale, [1, 2]) == [2, 4]  # read back
    assert len(_trees(tmp_path / "pool")) == 2


def test_a_failing_chunk_is_retried(tmp_path: Path) -> None:
    folder = str(tmp_path)
    with Pool(2, jobTree=str(tmp_path / "pool"), retryCount=2, retryErrors=True) as pool:
        # each input fails once: each chunk of two fails twice, then succeeds
        assert pool.starmap(fails_once, [(folder, x) for x in range(4)],
                            chunksize=2) == [0, 1, 2, 3]
    assert len(list(tmp_path.glob("tried-*"))) == 4
    with sqlite3.connect(_trees(tmp_path / "pool")[0] / "tree.db") as db:
        failures = db.execute("SELECT COUNT(*) FROM failures").fetchone()[0]
    assert failures == 4


def test_a_permanent_failure_names_the_input_and_the_same_call_continues(
        tmp_path: Path) -> None:
    """The error names input 3 with its traceback and log; the tree is kept,
    and the same call, once the cause is fixed, runs only the failed chunk."""
    (tmp_path / "broken").touch()
    work = [(str(tmp_path), x) for x in range(10)]
    pool = Pool(2, jobTree=str(tmp_path / "pool"), retryCount=1, retryErrors=True)
    with pytest.raises(ValueError) as caught:
        pool.starmap(noted, work, chunksize=2)
    error = caught.value.__cause__.error  # type: ignore[union-attr]
    assert isinstance(error, PoolError)
    message = str(error)
    assert "input #3 ((" in message and "ValueError: input 3 is broken" in message, message
    assert "after 2 tries" in message and "Remote traceback" in message, message
    assert 'in noted\n    raise ValueError(f"input {x} is broken")' in message, message
    assert "jobtree/pooltree.py" not in message  # the traceback is the user's, not jobtree's
    (failure,) = error.failures
    assert failure.index == 3 and failure.inputs == range(2, 4) and failure.attempts == 2
    assert failure.log and os.path.exists(failure.log)
    assert "ValueError: input 3 is broken" in Path(failure.log).read_text()
    assert Path(error.tree).is_dir() and error.tree in message
    status = run_command("status", "--jobTree", error.tree)
    assert status.returncode == 0 and "1 target failed for good" in status.stdout, status.stdout
    before = _runs(tmp_path)
    assert sorted(before) == sorted([*range(10), 2, 3])  # the failed chunk ran twice
    (tmp_path / "broken").unlink()
    assert pool.starmap(noted, work, chunksize=2) == [-x for x in range(10)]
    assert sorted(_runs(tmp_path)) == sorted([*before, 2, 3])  # only that chunk again
    pool.terminate()


def test_a_finished_call_returns_its_stored_results_without_running(tmp_path: Path) -> None:
    work = [(str(tmp_path), x) for x in range(6)]
    with Pool(2, jobTree=str(tmp_path / "pool")) as pool:
        first = pool.starmap(noted, work)
    runs = _runs(tmp_path)
    began = time.monotonic()
    with Pool(2, jobTree=str(tmp_path / "pool")) as pool:
        again = pool.starmap(noted, work)
        assert pool.starmap(noted, work) == first
    assert again == first == [-x for x in range(6)]
    assert _runs(tmp_path) == runs
    assert time.monotonic() - began < 5
    assert len(_trees(tmp_path / "pool")) == 1


def test_a_killed_call_continues_without_recomputing_finished_chunks(tmp_path: Path) -> None:
    """SIGKILL the script (and with it the master) midway; the same script
    again finishes the map, and chunks finished before the kill do not run."""
    out, folder = tmp_path / "out", tmp_path / "pool"
    out.mkdir()
    env = {**os.environ, "POOLMAP_OUT": str(out), "POOLMAP_SLEEP": "0.3"}
    args = [sys.executable, str(PIPELINES / "poolmap.py"), "--pool", str(folder),
            "--inputs", "24", "--chunksize", "2", "--processes", "2"]
    script = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    done: list[tuple[Any, ...]] = []
    while len(done) < 4:
        assert script.poll() is None, script.communicate()
        assert time.monotonic() < deadline, "the chunks did not finish"
        time.sleep(0.1)
        trees = _trees(folder) if folder.exists() else []
        try:
            done = [r for r in _chunk_rows(trees[0]) if r[1] == 4] if trees else []
        except sqlite3.Error:
            done = []
    script.send_signal(signal.SIGKILL)
    script.communicate()
    (tree,) = _trees(folder)
    finished = {r[0] for r in _chunk_rows(tree) if r[1] == 4}
    finished_inputs = {x for r in _chunk_rows(tree) if r[0] in finished
                       for x in _inputs_of(r[5])}
    again = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    results = json.loads(again.stdout)["results"]
    assert results == [{"input": x, "square": x * x} for x in range(24)]
    runs = _runs(out)
    assert all(runs.count(x) == 1 for x in finished_inputs), (finished_inputs, runs)
    assert set(runs) == set(range(24))


def _inputs_of(description: str) -> range:
    span = description.rsplit(" ", 1)[1]
    first, _, last = span.partition("-")
    return range(int(first), int(last or first) + 1)


def test_ten_thousand_inputs_in_chunks(tmp_path: Path) -> None:
    with Pool(2, jobTree=str(tmp_path / "pool")) as pool:
        assert pool.map(square, range(10_000), chunksize=500) == [x * x for x in range(10_000)]
        assert pool.map(square, range(10_000)) == [x * x for x in range(10_000)]
    chunked, default = (_chunk_rows(t) for t in sorted(
        _trees(tmp_path / "pool"), key=lambda t: len(_chunk_rows(t)), reverse=True))
    assert len(chunked) == 20 and all(r[1] == 4 for r in chunked)
    assert len(default) == 8  # about four chunks per process, as multiprocessing


def test_more_chunks_than_one_target_adds_go_through_groups(tmp_path: Path) -> None:
    # a builtin: the workers need not import this test module (and pytest) each
    with Pool(2, jobTree=str(tmp_path / "pool")) as pool:
        assert pool.map(abs, range(-2500, 0), chunksize=1) == list(range(2500, 0, -1))
    (tree,) = _trees(tmp_path / "pool")
    with sqlite3.connect(tree / "tree.db") as db:
        groups = db.execute("SELECT COUNT(*) FROM jobs WHERE cls = 'jobtree.pooltree.Group'"
                            ).fetchone()[0]
    assert groups == 3 and len(_chunk_rows(tree)) == 2500


def test_per_call_resources_go_to_each_chunk(tmp_path: Path) -> None:
    with Pool(2, jobTree=str(tmp_path / "pool")) as pool:
        assert pool.map(square, range(10), chunksize=4, memory="300M", cpu=1,
                        time="2s") == [x * x for x in range(10)]
    (tree,) = _trees(tmp_path / "pool")
    # the fork server imports the chunks' module and the function's once, for all
    config = json.loads((tree / "config.json").read_text())
    assert config["preload_modules"] == ["jobtree.pooltree", __name__]
    rows = _chunk_rows(tree)
    assert [(r[2], r[3], r[4]) for r in rows] == [
        (300 * 1024 ** 2, 1.0, 8.0), (300 * 1024 ** 2, 1.0, 8.0), (300 * 1024 ** 2, 1.0, 4.0)]


def test_terminate_stops_the_running_call_and_the_same_call_continues_it(
        tmp_path: Path) -> None:
    pool = Pool(2, jobTree=str(tmp_path / "pool"))
    result = pool.map_async(sleeper, [0.1, 30.0, 0.1])
    deadline = time.monotonic() + 30
    while not _trees(tmp_path / "pool") or not any(
            r[1] == 2 and "input 1" in r[5] for r in _safe_rows(tmp_path / "pool")):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    began = time.monotonic()
    pool.terminate()
    assert time.monotonic() - began < 20
    with pytest.raises(PoolError, match="was stopped .the pool was terminated.") as caught:
        result.get(timeout=5)
    assert "the same call continues it" in str(caught.value)
    (tree,) = _trees(tmp_path / "pool")
    states = {r[5].rsplit(" ", 1)[1]: r[1] for r in _chunk_rows(tree)}
    assert states["1"] != 4  # the long input did not finish: it will run again


def _safe_rows(folder: Path) -> list[tuple[Any, ...]]:
    """The chunk rows of the one tree in ``folder``, or none while there is none."""
    try:
        return _chunk_rows(_trees(folder)[0])
    except (sqlite3.Error, IndexError, OSError):
        return []


def test_a_callback_may_terminate_the_pool(tmp_path: Path) -> None:
    pool = Pool(2)
    folder = Path(pool.folder)
    result = pool.map_async(square, [1, 2], callback=lambda _: pool.terminate())
    assert result.get(timeout=60) == [1, 4]
    pool.join()
    assert not folder.exists()


def test_a_pool_without_a_folder_uses_a_temporary_one(tmp_path: Path) -> None:
    pool = Pool(2)
    assert pool.map(square, [1, 2, 3]) == [1, 4, 9]
    folder = Path(pool.folder)
    assert folder.is_dir()
    pool.close()
    pool.join()
    assert not folder.exists()


# -------------------------------------------------------------- __main__
def _python(code: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, *args], input=textwrap.dedent(code), cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=120)


def test_functions_of_an_interactive_session_are_pickled_by_value(tmp_path: Path) -> None:
    """Code fed to python on stdin has no file to import: as in a notebook."""
    done = _python("""
        from jobtree import Pool
        OFFSET = 1000
        def shifted(x):
            return x + OFFSET
        with Pool(2, jobTree="pool") as pool:
            print(pool.map(shifted, range(5)), pool.map(lambda x: -x, [1, 2]))
    """, tmp_path, "-")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[1000, 1001, 1002, 1003, 1004] [-1, -2]"


def test_a_fixed_interactive_function_continues_the_failed_call(tmp_path: Path) -> None:
    code = """
        from jobtree import Pool
        def half(x):
            if x == 2:
                raise ZeroDivisionError("not yet")
            return x / 2
        pool = Pool(2, jobTree="pool", retryCount=0)
        try:
            pool.map(half, range(4), chunksize=1)
        except ZeroDivisionError as err:
            print("failed:", err.__cause__.error.failures[0].index)
        def half(x):
            return x / 2
        print(pool.map(half, range(4), chunksize=1))
        pool.terminate()
    """
    done = _python(code, tmp_path, "-")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["failed: 2", "[0.0, 0.5, 1.0, 1.5]"]
    assert len(_trees(tmp_path / "pool")) == 1


def test_a_function_defined_under_the_main_guard_is_pickled_by_value(tmp_path: Path) -> None:
    script = tmp_path / "guarded.py"
    script.write_text(textwrap.dedent("""
        import dataclasses
        from jobtree import Pool
        @dataclasses.dataclass
        class Point:
            x: int
        def top(x):
            return x * 3
        def point(x):
            return Point(x)
        if __name__ == "__main__":
            def inner(x):
                return top(x) + 1
            with Pool(2, jobTree="pool") as pool:
                print(pool.map(inner, range(4)), pool.map(top, range(4)))
                points = pool.map(point, range(3))
                print(all(type(p) is Point for p in points), [p.x for p in points])
    """))
    done = _python("", tmp_path, str(script))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["[1, 4, 7, 10] [0, 3, 6, 9]", "True [0, 1, 2]"]


def test_ctrl_c_stops_the_call_cleanly_and_the_same_call_continues(tmp_path: Path) -> None:
    script = tmp_path / "interrupted.py"
    script.write_text(textwrap.dedent("""
        import os, sys, time
        from jobtree import Pool
        def nap(x):
            if os.path.exists("slow"):
                time.sleep(60)
            return x
        if __name__ == "__main__":
            with Pool(2, jobTree="pool") as pool:
                print(pool.map(nap, range(4), chunksize=2))
    """))
    (tmp_path / "slow").touch()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while sum(1 for r in _safe_rows(tmp_path / "pool") if r[1] == 2) < 2:
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    time.sleep(1.0)  # the workers are in nap()
    began = time.monotonic()
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert time.monotonic() - began < 20
    assert process.returncode != 0 and "KeyboardInterrupt" in err, err
    (tree,) = _trees(tmp_path / "pool")
    assert all(r[1] == 1 for r in _chunk_rows(tree))  # back to ready, no try counted
    (tmp_path / "slow").unlink()
    again = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "[0, 1, 2, 3]"


def test_a_pool_at_the_top_of_an_unguarded_script_is_a_clear_error(tmp_path: Path) -> None:
    script = tmp_path / "unguarded.py"
    script.write_text(textwrap.dedent("""
        from jobtree import Pool
        def double(x):
            return 2 * x
        pool = Pool(2, jobTree="pool", retryCount=0)
        print(pool.map(double, range(3)))
        pool.terminate()
    """))
    done = _python("", tmp_path, str(script))
    assert done.returncode == 1
    assert "PoolError" in done.stderr and "__name__ == \"__main__\"" in done.stderr, done.stderr


# ------------------------------------------------------------------ errors
def test_bad_options_and_inputs_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(BadOptionError, match="Did you mean retryCount"):
        Pool(jobTree=str(tmp_path / "a"), retryCont=1)
    with pytest.raises(BadOptionError, match="--maxThreads must be at least 1"):
        Pool(jobTree=str(tmp_path / "a"), maxThreads=0)
    with pytest.raises(BadOptionError, match="processes"):
        Pool(0, jobTree=str(tmp_path / "a"))
    classic = tmp_path / "classic"
    made = subprocess.run([sys.executable, str(PIPELINES / "promises.py"), "--jobTree",
                           str(classic), "--mode", "parent", "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    with pytest.raises(TreeError, match="is a job tree, not a Pool's folder"):
        Pool(jobTree=str(classic))
    with Pool(2, jobTree=str(tmp_path / "a")) as pool:
        with pytest.raises(TypeError, match="cannot pickle") as caught:
            pool.map(square, [1, threading.Lock()])  # raised as itself, with a note
        assert "Input #1 (<unlocked" in caught.value.__notes__[0]
        with pytest.raises(BadOptionError, match="chunksize"):
            pool.map(square, [1], chunksize=0)
        lock = threading.Lock()
        with pytest.raises(TargetDefinitionError, match="The function .*<lambda> .* cannot be "
                                                        "pickled .TypeError: cannot pickle"):
            pool.map(lambda x: (lock, x), [1])
        assert pool.map(square, []) == [] and list(pool.imap(square, iter([]))) == []
    with pytest.raises(ValueError, match="not running"):
        pool.map(square, [1])


def test_status_on_a_pool_folder_shows_its_calls(tmp_path: Path) -> None:
    folder = str(tmp_path / "pool")
    with Pool(2, jobTree=folder) as pool:
        pool.map(square, range(3))
        one = run_command("status", "--jobTree", folder, "--json")
        assert one.returncode == 0, one.stderr  # the one call's tree
        assert json.loads(one.stdout)["counts"]["done"] == 4
        rerun = run_command("run", "--jobTree", folder, "--logLevel", "INFO")
        assert rerun.returncode == 0 and "4 targets done" in rerun.stderr, rerun.stderr
        pool.starmap(pow, [(2, 2)])
    status = run_command("status", "--jobTree", folder)
    assert status.returncode == 0, status.stderr
    assert status.stdout.startswith(f"Pool folder {folder}: 2 calls"), status.stdout
    assert "a Pool call: map of square over 3 inputs, 1 per target" in status.stdout
    assert "a Pool call: starmap of pow over 1 input," in status.stdout
    listing = run_command("status", "--jobTree", folder, "--json")
    assert listing.returncode == 2
    assert "a Pool's folder" in listing.stderr and "map-square-" in listing.stderr
    cleaned = run_command("clean", "--jobTree", folder)
    assert cleaned.returncode == 0, cleaned.stderr
    assert cleaned.stdout.count("Removed the job tree") == 2, cleaned.stdout
    assert "Removed the Pool folder" in cleaned.stdout and not os.path.exists(folder)


def test_the_names_are_exported() -> None:
    assert jobtree.Pool is Pool and jobtree.PoolError is PoolError
    assert {"Pool", "PoolError", "AsyncResult", "Promise", "PromiseError",
            "getReturnValue"} <= set(jobtree.__all__)


def test_a_calls_priority_goes_to_its_targets(tmp_path: Path) -> None:
    with Pool(2, jobTree=str(tmp_path / "pool")) as pool:
        assert pool.map(square, range(4), chunksize=1, priority=3) == [0, 1, 4, 9]
        assert pool.apply_async(square, (5,), priority=-2).get() == 25
    priorities = []
    for tree in _trees(tmp_path / "pool"):
        with sqlite3.connect(tree / "tree.db") as db:
            priorities.append(sorted(p for (p,) in db.execute(
                "SELECT priority FROM jobs WHERE cls = 'jobtree.pooltree.Chunk'")))
    assert sorted(priorities) == [[-2], [3, 3, 3, 3]]
