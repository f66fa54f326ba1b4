"""Benchmark: the sort example on a generated input (default 10 MB).

Prints the time to sort (input generation excluded), the number of targets
and whether the output equals Python's sort.

    python benchmarks/sort.py [--size 10M] [--N 1000000] [--maxThreads N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time

EXAMPLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples", "sort.py")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="10M")
    parser.add_argument("--N", default="1000000")
    parser.add_argument("--maxThreads", default=None)
    options = parser.parse_args()
    scratch = tempfile.mkdtemp(prefix="jobtree-bench-sort-")
    try:
        data = os.path.join(scratch, "input.txt")
        generated = subprocess.run(
            [sys.executable, EXAMPLE, "--generate", options.size, "--fileToSort", data,
             "--output", os.path.join(scratch, "ignored.txt"), "--N", "1G",
             "--jobTree", os.path.join(scratch, "gen-tree"), "--logLevel", "WARNING"],
            capture_output=True, text=True)
        if generated.returncode != 0:
            print(generated.stderr, file=sys.stderr)
            return 1
        output = os.path.join(scratch, "sorted.txt")
        argv = [sys.executable, EXAMPLE, "--fileToSort", data, "--output", output,
                "--N", options.N, "--jobTree", os.path.join(scratch, "tree"),
                "--logLevel", "WARNING"]
        if options.maxThreads:
            argv += ["--maxThreads", options.maxThreads]
        started = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True)
        elapsed = time.perf_counter() - started
        if done.returncode != 0:
            print(done.stderr, file=sys.stderr)
            return 1
        with open(data, "rb") as handle:
            expected = sorted(handle.read().splitlines(keepends=True))
        with open(output, "rb") as handle:
            correct = handle.read().splitlines(keepends=True) == expected
        db = sqlite3.connect(os.path.join(scratch, "tree", "tree.db"))
        targets = db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]
        db.close()
        size = os.path.getsize(data)
        print(f"sort: {size / 1e6:.1f} MB, {len(expected)} lines, N={options.N}: "
              f"{elapsed:.2f} s, {targets} targets, output {'correct' if correct else 'WRONG'}")
        return 0 if correct else 1
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
