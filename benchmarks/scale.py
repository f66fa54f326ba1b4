"""Benchmark: the master's cost per target as the tree grows.

Runs trees of growing size with an in-process batch system (each worker runs
inside this process), so the numbers are the master's and the worker's own
work without process start-up: per-target time should stay flat and the peak
memory bounded as the tree grows (DESIGN.md, invariant 6).

    python benchmarks/scale.py [--sizes 1000,10000,50000]
"""

from __future__ import annotations

import argparse
import collections
import os
import resource
import shutil
import sys
import tempfile
import time
from typing import Sequence

from jobtree import Target, serialize, tree
from jobtree.batch import BatchJobId, BatchSystem, ExitReason, JobSpec, Update
from jobtree.jobstore import JobStore, NewJob
from jobtree.master import Master
from jobtree.options import default_options, resolve
from jobtree.paths import TreePaths
from jobtree.resources import Resources
from jobtree.target import class_name
from jobtree.worker import Worker


class Leaf(Target):
    def run(self) -> None:
        pass


class Fan(Target):
    """Adds ``width`` children of which each adds ``width`` leaves (two levels)."""

    def __init__(self, width: int, depth: int) -> None:
        Target.__init__(self)
        self.width = width
        self.depth = depth

    def run(self) -> None:
        for _ in range(self.width):
            self.addChildTarget(Fan(self.width, self.depth - 1) if self.depth > 1 else Leaf())
        self.setFollowOnTarget(Leaf())


class InProcess(BatchSystem):
    """Runs each issued worker in this process when asked for an update."""

    name = "inProcess"

    def __init__(self) -> None:
        self.queue: collections.OrderedDict[BatchJobId, JobSpec] = collections.OrderedDict()
        self.count = 0

    def limits(self) -> Resources:
        return Resources(cpu=64, memory=1024 ** 4)

    def capacity(self) -> int:
        return 100

    def issue(self, spec: JobSpec) -> BatchJobId:
        self.count += 1
        self.queue[BatchJobId(str(self.count))] = spec
        return BatchJobId(str(self.count))

    def kill(self, ids: Sequence[BatchJobId]) -> None:
        pass

    def issued(self) -> set[BatchJobId]:
        return set(self.queue)

    def running(self) -> dict[BatchJobId, float]:
        return {}

    def next_update(self, timeout: float) -> Update | None:
        if not self.queue:
            return None
        batch_id, spec = self.queue.popitem(last=False)
        code = Worker(spec.argv[3], int(spec.argv[4]), int(spec.argv[5])).run()
        return Update(batch_id, code, ExitReason.FINISHED)


def run_tree(size: int, scratch: str) -> tuple[int, float]:
    width = max(2, round(size ** 0.5))
    options = default_options()
    options.jobTree = os.path.join(scratch, f"tree{size}")
    options.logLevel = "WARNING"
    config, _ = resolve(options)
    paths = TreePaths(config.jobTree)
    root = Fan(width, 2)
    tree.create(paths, NewJob(class_name(root), "root", None, None, None, None,
                              serialize.dump_target(root)), config,
                {"script": None, "root_class": "Fan"})
    store = JobStore.open(paths)
    started = time.perf_counter()
    failed = Master(store, config, {"main": InProcess()}).run()
    elapsed = time.perf_counter() - started
    targets = sum(store.counts().values())
    store.close()
    assert failed == 0
    return targets, elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000,50000")
    options = parser.parse_args()
    scratch = tempfile.mkdtemp(prefix="jobtree-bench-scale-")
    os.environ.setdefault("JOBTREE_QUIET", "1")
    sys.stderr = open(os.devnull, "w")  # the workers' banners
    try:
        for size in (int(s) for s in options.sizes.split(",")):
            targets, elapsed = run_tree(size, scratch)
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            db = os.path.getsize(os.path.join(scratch, f"tree{size}", "tree.db")) / 1e6
            print(f"scale: {targets} targets in {elapsed:.1f} s, "
                  f"{1e6 * elapsed / targets:.0f} us per target (master + in-process worker), "
                  f"peak RSS {peak:.0f} MiB, index {db:.1f} MB", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
