"""The workloads of benchmarks/suite.py: one tree (or one baseline) per process.

Each run prints one JSON line on stdout with its own measurements: ``wall``
(seconds around ``startJobTree``, or around the baseline's work), ``targets``
and ``done`` (rows of the index's ``jobs`` table, all and in state DONE),
``failed`` (what ``startJobTree`` returned), ``maxrss_kib`` (this process's
peak RSS: the master runs in it), ``counts`` (``jobtree.metrics.COUNTS``,
filled when ``JOBTREE_METRICS=1``) and ``problems`` (what a workload's own
check found wrong).

    python benchmarks/workloads.py fanout --targets 1000 --jobTree DIR
    python benchmarks/workloads.py chain --targets 1000 --jobTree DIR
    python benchmarks/workloads.py tree --depth 10 --jobTree DIR
    python benchmarks/workloads.py single --jobTree DIR
    python benchmarks/workloads.py scale --width 1000 --jobTree DIR
    python benchmarks/workloads.py fork --targets 1000 --maxThreads 2

Workers import this file to find the target classes, so the classes live at
the top level and the command line runs only under ``__main__``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sqlite3
import sys
import time
from typing import Any

from jobtree import Stack, Target

#: jobs.state of a finished target (jobtree.jobstore.JobState.DONE)
DONE = 4


class Trivial(Target):
    """A target that does nothing."""

    def __init__(self) -> None:
        Target.__init__(self)

    def run(self) -> None:
        pass


class FanOut(Target):
    """Adds ``width`` trivial children."""

    def __init__(self, width: int) -> None:
        Target.__init__(self)
        self.width = width

    def run(self) -> None:
        for _ in range(self.width):
            self.addChildTarget(Trivial())


class Link(Target):
    """One link of a follow-on chain: sets the next link while ``remaining`` > 0."""

    def __init__(self, remaining: int) -> None:
        Target.__init__(self)
        self.remaining = remaining

    def run(self) -> None:
        if self.remaining > 0:
            self.setFollowOnTarget(Link(self.remaining - 1))


class Node(Target):
    """A node of a binary tree of depth ``depth`` below it.

    A leaf marks its ``path`` done in ``folder``; an inner node adds the two
    nodes below it as children and a ``Check`` follow-on, which marks the
    node done once both children's subtrees are.
    """

    def __init__(self, depth: int, path: str, folder: str) -> None:
        Target.__init__(self)
        self.depth = depth
        self.path = path
        self.folder = folder

    def run(self) -> None:
        if self.depth == 0:
            mark(self.folder, self.path)
            return
        for branch in "01":
            self.addChildTarget(Node(self.depth - 1, self.path + branch, self.folder))
        self.setFollowOnTarget(Check(self.path, self.folder))


class Check(Target):
    """The follow-on of an inner node: both children's subtrees must be done."""

    def __init__(self, path: str, folder: str) -> None:
        Target.__init__(self)
        self.path = path
        self.folder = folder

    def run(self) -> None:
        missing = [self.path + b for b in "01" if not is_marked(self.folder, self.path + b)]
        if missing:
            mark(self.folder, f"VIOLATION-{self.path}")
            raise RuntimeError(f"follow-on of {self.path!r} ran before {missing}")
        mark(self.folder, self.path)


class Fan(Target):
    """Adds ``width`` children; below the top, each child is a trivial leaf."""

    def __init__(self, width: int, levels: int) -> None:
        Target.__init__(self)
        self.width = width
        self.levels = levels

    def run(self) -> None:
        for _ in range(self.width):
            if self.levels > 1:
                self.addChildTarget(Fan(self.width, self.levels - 1))
            else:
                self.addChildTarget(Trivial())


def mark(folder: str, path: str) -> None:
    """Leaves the empty file that says ``path`` is done (``R`` names the root)."""
    with open(os.path.join(folder, f"R{path}"), "w"):
        pass


def is_marked(folder: str, path: str) -> bool:
    """Whether ``path`` is marked done in ``folder``."""
    return os.path.exists(os.path.join(folder, f"R{path}"))


def count_jobs(db_path: str) -> tuple[int, int]:
    """(all jobs, jobs in state DONE) of the index at ``db_path``."""
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        total = db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]
        done = db.execute("SELECT COUNT(*) FROM jobs WHERE state = ?", (DONE,)).fetchone()[0]
    finally:
        db.close()
    return total, done


def tree_problems(depth: int, folder: str) -> list[str]:
    """What is wrong with the marks a binary tree of ``depth`` left in ``folder``."""
    names = os.listdir(folder)
    problems = [f"order broken: {n}" for n in names if n.startswith("RVIOLATION-")][:3]
    expected = 2 ** (depth + 1) - 1
    if len(names) != expected:
        problems.append(f"{len(names)} nodes marked done, not {expected}")
    return problems


def run_tree(root: Target, options: argparse.Namespace) -> dict[str, Any]:
    """Runs the tree of ``root`` and returns the measurements of the run."""
    from jobtree import metrics

    started = time.perf_counter()
    failed = Stack(root).startJobTree(options)
    wall = time.perf_counter() - started
    targets, done = count_jobs(os.path.join(options.jobTree, "tree.db"))
    return {"wall": wall, "targets": targets, "done": done, "failed": failed,
            "counts": dict(metrics.COUNTS), "problems": []}


def fork_baseline(children: int, alive: int) -> dict[str, Any]:
    """Forks ``children`` processes that exit at once, at most ``alive`` at a time."""
    import jobtree.worker  # noqa: F401  (the warm process a worker would be forked from)

    started = time.perf_counter()
    running = 0
    for _ in range(children):
        if running == alive:
            os.wait()
            running -= 1
        if os.fork() == 0:
            os._exit(0)
        running += 1
    for _ in range(running):
        os.wait()
    wall = time.perf_counter() - started
    return {"wall": wall, "targets": children, "done": children, "failed": 0,
            "counts": {}, "problems": []}


def parse(argv: list[str]) -> argparse.Namespace:
    """The workload, its sizes and jobtree's options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("workload", choices=("fanout", "chain", "tree", "single", "scale",
                                             "fork"))
    parser.add_argument("--targets", type=int, default=1000,
                        help="children of the fan-out, links of the chain, forks of fork")
    parser.add_argument("--depth", type=int, default=10, help="depth of the binary tree")
    parser.add_argument("--width", type=int, default=1000, help="width of each scale level")
    Stack.addJobTreeOptions(parser)
    return parser.parse_args(argv)


def run(options: argparse.Namespace) -> dict[str, Any]:
    """Runs the chosen workload and returns its measurements."""
    kind = options.workload
    if kind == "fork":
        return fork_baseline(options.targets, options.maxThreads or os.cpu_count() or 1)
    options.jobTree = os.path.abspath(options.jobTree)
    if kind == "fanout":
        return run_tree(FanOut(options.targets), options)
    if kind == "chain":
        return run_tree(Link(options.targets), options)
    if kind == "single":
        return run_tree(Trivial(), options)
    if kind == "scale":
        return run_tree(Fan(options.width, 2), options)
    folder = os.path.join(os.path.dirname(options.jobTree), "marks")
    os.makedirs(folder, exist_ok=True)
    measured = run_tree(Node(options.depth, "", folder), options)
    measured["problems"] = tree_problems(options.depth, folder)
    return measured


def main(argv: list[str]) -> int:
    """Runs one workload and prints its measurements as one JSON line."""
    measured = run(parse(argv))
    measured["maxrss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps(measured), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
