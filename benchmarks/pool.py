"""jobtree.Pool.map against multiprocessing.Pool.map on the same machine.

    python benchmarks/pool.py [--inputs 10000] [--processes N] [--repeat 3]

Maps a trivial function over the inputs, each pool with the same number of
processes, and prints one line per case: the median wall time of ``repeat``
runs from making the pool to having the results (jobtree: each run in a new
pool folder, so nothing is read back from an earlier run). Also times
jobtree's second call of the same map on the same folder (results read from
the tree) and a map with ``chunksize=1`` over a tenth of the inputs (one
target per input). Every result is checked.

Then the async calls, each pool made beforehand (not timed): 20
``apply_async`` of a trivial function against one ``map`` of the same 20
inputs, and 8 overlapping ``apply_async`` calls of 0.3 s each on a pool of
4 processes (the ideal is 0.6 s).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jobtree  # noqa: E402


def trivial(x: int) -> int:
    return x + 1


def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def _async_cases(repeat: int) -> list[tuple[str, float]]:
    """The async cases, each pool made before the clock starts."""
    inputs = list(range(20))
    rows = []
    for label, make in (("multiprocessing", multiprocessing.Pool), ("jobtree", jobtree.Pool)):
        with make(4) as pool:
            pool.map(trivial, [0])  # warm

            def twenty_applies() -> None:
                results = [pool.apply_async(trivial, (x,)) for x in inputs]
                assert [r.get() for r in results] == [x + 1 for x in inputs]

            def one_map() -> None:
                assert pool.map(trivial, inputs) == [x + 1 for x in inputs]

            def overlapping() -> None:
                results = [pool.apply_async(nap, (0.3,)) for _ in range(8)]
                assert [r.get() for r in results] == [0.3] * 8

            rows.append((f"{label}: 20 apply_async, then get() each", _timed(twenty_applies,
                                                                               repeat)))
            rows.append((f"{label}: one map of the same 20 inputs", _timed(one_map, repeat)))
            rows.append((f"{label}: 8 overlapping apply_async of 0.3 s, Pool(4)",
                         _timed(overlapping, repeat)))
    return rows


def _timed(run: object, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        run()  # type: ignore[operator]
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=10_000)
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeat", type=int, default=3)
    options = parser.parse_args()
    inputs, processes = list(range(options.inputs)), options.processes
    expected = [x + 1 for x in inputs]

    def with_multiprocessing() -> None:
        with multiprocessing.Pool(processes) as pool:
            assert pool.map(trivial, inputs) == expected

    folder = tempfile.mkdtemp(prefix="jobtree-pool-bench-")
    runs = iter(range(10 ** 6))

    def with_jobtree(chunksize: int | None = None, count: int = len(inputs)) -> None:
        with jobtree.Pool(processes, jobTree=os.path.join(folder, str(next(runs)))) as pool:
            assert pool.map(trivial, inputs[:count], chunksize=chunksize) == expected[:count]

    stored = os.path.join(folder, "stored")
    with jobtree.Pool(processes, jobTree=stored) as pool:
        pool.map(trivial, inputs)

    def read_back() -> None:
        with jobtree.Pool(processes, jobTree=stored) as again:
            assert again.map(trivial, inputs) == expected

    tenth = max(1, len(inputs) // 10)
    cases = [
        (f"multiprocessing.Pool.map, {len(inputs):,} inputs", with_multiprocessing),
        (f"jobtree.Pool.map, {len(inputs):,} inputs, default chunksize", with_jobtree),
        ("jobtree.Pool.map, the same call again (stored results)", read_back),
        (f"jobtree.Pool.map, {tenth:,} inputs, chunksize=1 ({tenth:,} targets)",
         lambda: with_jobtree(1, tenth)),
    ]
    print(f"{processes} processes, median of {options.repeat} runs, "
          f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    base = None
    for name, run in cases:
        seconds = _timed(run, options.repeat)
        base = base or seconds
        print(f"{name:<62} {seconds:7.3f} s  ({seconds / base:5.1f}x)")
    for name, seconds in _async_cases(options.repeat):
        print(f"{name:<62} {seconds:7.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
