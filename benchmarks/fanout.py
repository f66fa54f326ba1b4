"""Benchmark: a fan-out of N trivial targets on singleMachine.

Prints the wall time of the whole run (start of the script to the end of the
master), the time per target, and the master's peak memory.

    python benchmarks/fanout.py [--targets 1000] [--maxThreads N]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time

from workloads import FanOut

from jobtree import Stack


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--targets", type=int, default=1000)
    Stack.addJobTreeOptions(parser)
    options = parser.parse_args()
    scratch = tempfile.mkdtemp(prefix="jobtree-bench-")
    if options.jobTree == "./jobTree":
        options.jobTree = os.path.join(scratch, "tree")
    options.logLevel = options.logLevel or "WARNING"
    started = time.perf_counter()
    failed = Stack(FanOut(options.targets)).startJobTree(options)
    elapsed = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    shutil.rmtree(scratch, ignore_errors=True)
    total = options.targets + 1
    print(f"fanout: {total} targets in {elapsed:.2f} s "
          f"({1000 * elapsed / total:.1f} ms per target, {total / elapsed:.0f} targets/s), "
          f"master peak RSS {peak:.0f} MiB, {failed} failed, cores {os.cpu_count()}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
