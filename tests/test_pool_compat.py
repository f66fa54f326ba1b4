"""jobtree.Pool as a drop-in for multiprocessing.Pool: what a worker sees
(the caller's sys.argv), a call's identity across pool sizes, exceptions
raised as themselves, no surprise caching, overlapping calls, callbacks run
before get() returns, streaming imap, and the smaller differences."""

from __future__ import annotations

import copy
import gc
import itertools
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings
import weakref
from multiprocessing.pool import MaybeEncodingError, RemoteTraceback
from pathlib import Path
from typing import Any, Iterator

import pytest

from jobtree import Pool, PoolError

ROOT = Path(__file__).resolve().parents[1]


def noted(folder: str, x: int) -> int:
    """Notes each run of an input in ``folder``/runs."""
    with open(os.path.join(folder, "runs"), "a", encoding="utf-8") as handle:
        handle.write(f"{x}\n")
    return x * x


def _runs(folder: Path) -> list[int]:
    path = folder / "runs"
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def _python(code: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    script = cwd / "script.py"
    script.write_text(textwrap.dedent(code))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(script), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


# ------------------------------------------------------------ issue 14.6
def test_a_worker_sees_the_callers_sys_argv(tmp_path: Path) -> None:
    done = _python("""
        import sys
        from jobtree import Pool
        def argv(_):
            return sys.argv
        if __name__ == "__main__":
            with Pool(2) as pool:
                print(pool.map(argv, range(2)) == [sys.argv] * 2, pool.apply(argv, (0,)))
    """, tmp_path, "one", "--two")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split(None, 1) == ["True", f"[{str(tmp_path / 'script.py')!r}, "
                                                  f"'one', '--two']\n"]


def test_the_same_call_from_a_pool_of_another_size_continues_its_tree(tmp_path: Path) -> None:
    work = [(str(tmp_path), x) for x in range(40)]
    folder = str(tmp_path / "pool")
    with Pool(2, jobTree=folder) as pool:
        first = pool.starmap(noted, work)
    with Pool(3, jobTree=folder) as pool:
        assert pool.starmap(noted, work) == first == [x * x for x in range(40)]
    assert sorted(_runs(tmp_path)) == list(range(40))  # nothing ran twice
    assert len([p for p in (tmp_path / "pool").iterdir() if p.is_dir()]) == 1


# ---------------------------------------------------------------- issue 17
def raises_key(folder: str, x: int) -> int:
    noted(folder, x)
    if x == 3:
        raise KeyError(f"no {x}")
    return x


def killed(x: int) -> int:
    if x == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return x


def locked(x: int) -> Any:
    return threading.Lock() if x == 2 else x


def meet(folder: str, x: int, others: int) -> bool:
    """Waits (at most a minute) until ``others`` more calls have come here:
    True only if they run at the same time as this one."""
    Path(folder, f"here-{x}").touch()
    deadline = time.monotonic() + 60
    while len(list(Path(folder).glob("here-*"))) < others + 1:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def talk(x: int) -> int:
    print(f"out {x}")
    print(f"err {x}", file=sys.stderr)
    if x == 1:
        raise ValueError("after talking")
    return x


def test_an_exception_of_the_function_is_raised_as_itself_at_once(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """No retry (retryCount=2 is for chunks killed or lost); the cause names
    the input, the traceback, the log and the tree; the error_callback gets
    the exception itself; nothing else is printed."""
    work = [(str(tmp_path), x) for x in range(6)]
    seen: list[BaseException] = []
    with Pool(2, retryCount=2) as pool:
        with pytest.raises(KeyError) as caught:
            pool.starmap(raises_key, work, chunksize=1)
        result = pool.starmap_async(raises_key, work[3:4], error_callback=seen.append)
        with pytest.raises(KeyError):
            result.get(timeout=60)
    assert type(seen[0]) is KeyError and seen[0].args == ("no 3",)
    cause = caught.value.__cause__
    assert isinstance(cause, RemoteTraceback)
    assert "input #3 (" in cause.tb and "raise KeyError(f\"no {x}\")" in cause.tb, cause.tb
    assert "Log: " in cause.tb and "starmap-raises_key-" in cause.tb
    error = cause.error  # type: ignore[attr-defined]
    assert isinstance(error, PoolError) and error.failures[0].attempts == 1
    assert _runs(tmp_path).count(3) == 2  # once per call: never retried
    assert "raises_key" not in capfd.readouterr().err


def test_a_killed_chunk_is_retried_then_a_pool_error(tmp_path: Path) -> None:
    with Pool(2, retryCount=1) as pool:
        with pytest.raises(PoolError) as caught:
            pool.map(killed, range(3), chunksize=1)
    (failure,) = caught.value.failures
    assert failure.index is None and failure.inputs == range(1, 2) and failure.attempts == 2


def test_an_unpicklable_result_names_the_input_and_its_type() -> None:
    with Pool(2) as pool:
        with pytest.raises(MaybeEncodingError) as caught:
            pool.map(locked, range(4), chunksize=2)
    text = caught.value.__cause__.tb  # type: ignore[union-attr]
    assert "input #2 (2)" in text and "of type lock cannot be pickled" in text, text


def draw(_: int) -> float:
    return random.random()


def test_identical_calls_run_afresh_without_a_folder(tmp_path: Path) -> None:
    with Pool(2) as pool:
        assert pool.map(draw, range(3)) != pool.map(draw, range(3))
        assert pool.apply(time.time) != pool.apply(time.time)
    folder = str(tmp_path / "pool")
    with Pool(2, jobTree=folder) as pool:  # with a folder, the stored results
        assert pool.map(draw, range(3)) == pool.map(draw, range(3))


def test_async_calls_made_together_run_at_the_same_time_in_one_tree(tmp_path: Path) -> None:
    with Pool(4) as pool:
        results = [pool.apply_async(meet, (str(tmp_path), x, 3)) for x in range(4)]
        assert [r.get(timeout=120) for r in results] == [True] * 4
        assert len({r.tree for r in results}) == 1


def wait_for(path: str) -> bool:
    """Waits (at most a minute) until ``path`` exists."""
    deadline = time.monotonic() + 60
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_call_made_while_another_runs_starts_at_once(tmp_path: Path) -> None:
    """The first call waits for a file that only the second call makes: it
    finishes only if the second runs while it does, on the processes it
    left free."""
    flag = str(tmp_path / "flag")
    with Pool(2) as pool:
        first = pool.apply_async(wait_for, (flag,))
        while not first.ready() and not list(Path(pool.folder).glob("*/tree.db")):
            time.sleep(0.05)  # (its tree exists: it runs)
        assert pool.apply(Path.touch, (Path(flag),)) is None
        assert first.get(timeout=120) is True
        assert first.tree != pool.apply_async(abs, (1,)).tree


def test_calls_made_together_continue_from_their_tree(tmp_path: Path) -> None:
    folder = str(tmp_path / "pool")
    with Pool(2, jobTree=folder) as pool:
        results = [pool.apply_async(noted, (str(tmp_path), x)) for x in range(5)]
        assert [r.get(timeout=60) for r in results] == [x * x for x in range(5)]
        assert len({r.tree for r in results}) == 1
    with Pool(2, jobTree=folder) as pool:  # the same calls: read back
        again = [pool.apply_async(noted, (str(tmp_path), x)) for x in range(5)]
        assert [r.get(timeout=60) for r in again] == [x * x for x in range(5)]
        assert pool.apply(noted, (str(tmp_path), 2)) == 4  # one of them, alone
    assert sorted(_runs(tmp_path)) == list(range(5))


def test_the_callback_runs_before_get_and_wait_return() -> None:
    seen: list[Any] = []

    def slow(value: Any) -> None:
        time.sleep(0.2)
        seen.append(value)

    with Pool(2) as pool:
        pool.apply_async(abs, (-3,), callback=slow).wait()
        assert seen == [3]
        assert pool.map_async(abs, [-1], callback=slow).get() == [1] and seen == [3, [1]]


def test_imap_reads_its_input_as_it_needs_it() -> None:
    read: list[int] = []

    def endless() -> Iterator[int]:
        for x in itertools.count():
            read.append(x)
            yield x

    with Pool(2) as pool:
        assert list(itertools.islice(pool.imap(abs, endless()), 5)) == [0, 1, 2, 3, 4]
        assert len(read) < 1000  # an endless input is read a few hundred at a time

        def broken() -> Iterator[int]:
            yield from range(5)
            raise LookupError("the input broke")

        it = pool.imap_unordered(abs, broken())
        assert sorted(itertools.islice(it, 5)) == [0, 1, 2, 3, 4]
        with pytest.raises(LookupError):
            next(it)
        # closing the pool reads what is left, so join() waits for it all
        it = pool.imap(abs, (-x for x in range(700)))
        assert next(it) == 0
        pool.close()
        pool.join()
        assert list(it) == list(range(1, 700))


def test_the_smaller_differences_are_gone(recwarn: pytest.WarningsRecorder) -> None:
    warnings.simplefilter("always")
    for processes in (0, -1):
        with pytest.raises(ValueError):
            Pool(processes)
    for value in (0, -1, 0.5, "12"):
        with pytest.raises(ValueError):
            Pool(3, maxtasksperchild=value)  # type: ignore[arg-type]
    pool = Pool(1)
    empty = pool.map_async(abs, [])
    assert empty.ready() and empty.get(timeout=0) == []  # at once: no tree
    objects = [Scaler(x) for x in range(3)]
    refs = [weakref.ref(o) for o in objects]
    assert [s.factor for s in pool.map(copy.copy, objects)] == [0, 1, 2]
    del objects
    gc.collect()
    assert all(ref() is None for ref in refs)  # nothing kept of the last call
    with pool:
        pass
    with pytest.raises(ValueError):
        with pool:
            pass
    pool.join()
    del pool
    gc.collect()
    assert not [w for w in recwarn.list if issubclass(w.category, ResourceWarning)], [
        str(w.message) for w in recwarn.list]


class Scaler:
    def __init__(self, factor: int) -> None:
        self.factor = factor


def test_what_a_worker_prints_reaches_the_callers_terminal_and_its_log(
        tmp_path: Path) -> None:
    done = _python("""
        import sys
        sys.path.insert(0, %r)
        from jobtree import Pool
        from test_pool_compat import talk
        if __name__ == "__main__":
            with Pool(2, jobTree="pool") as pool:
                try:
                    pool.map(talk, range(2), chunksize=1)
                except ValueError as err:
                    print("log:", err.__cause__.error.failures[0].log)
    """ % str(Path(__file__).parent), tmp_path)
    assert done.returncode == 0, done.stderr
    assert "out 0" in done.stdout and "out 1" in done.stdout, done.stdout
    assert "err 0" in done.stderr and "err 1" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr.split("jobtree ERROR")[0]  # the worker's own report
    log = done.stdout.split("log: ")[1].strip()
    assert "out 1" in Path(log).read_text() and "err 1" in Path(log).read_text()
