"""jobtree.Pool.map against multiprocessing.Pool.map on the same machine.

    python benchmarks/pool.py [--inputs 10000] [--processes N] [--repeat 3]

Maps a trivial function over the inputs, each pool with the same number of
processes, and prints one line per case: the median wall time of ``repeat``
runs from making the pool to having the results (jobtree: each run in a new
pool folder, so nothing is read back from an earlier run). Also times
jobtree's second call of the same map on the same folder (results read from
the tree) and a map with ``chunksize=1`` over a tenth of the inputs (one
target per input). Every result is checked.
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
