"""The baseline of the sort benchmark: examples/sort.py's merge sort without jobtree.

The same algorithm as the example's Down/Up targets: split the input in two
at a line boundary near the middle until a range is at most ``--N`` bytes,
sort each range in memory into a temporary file, then merge sibling files
pairwise up the binary tree of splits with ``heapq.merge``. One Python
process runs it with a ``multiprocessing.Pool`` of ``--processes`` workers:
all leaves are sorted in parallel, then each level of merges in parallel.

    python benchmarks/mpsort.py --input IN --output OUT [--N 100000] [--processes 2]

Prints one JSON line: ``{"wall": seconds, "ranges": number of sorted ranges}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import heapq
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import time


@dataclasses.dataclass
class Split:
    """A node of the tree of splits: bytes [start, end) of the input, sorted into
    ``output``; an inner node has two ``halves`` and a ``height`` above its leaves."""

    start: int
    end: int
    output: str
    halves: tuple[Split, Split] | None = None
    height: int = 0


def line_boundary(path: str, start: int, end: int) -> int | None:
    """A line boundary strictly inside (start, end), near the middle, or None."""
    with open(path, "rb") as handle:
        for probe in (start + (end - start) // 2, start):
            handle.seek(probe)
            boundary = probe + len(handle.readline())
            if start < boundary < end:
                return boundary
    return None


def build(path: str, start: int, end: int, chunk: int, folder: str, name: str) -> Split:
    """Splits [start, end) of ``path`` until each range is at most ``chunk`` bytes."""
    node = Split(start, end, os.path.join(folder, f"{name or 'all'}.txt"))
    middle = line_boundary(path, start, end) if end - start > chunk else None
    if middle is not None:
        first = build(path, start, middle, chunk, folder, name + "0")
        second = build(path, middle, end, chunk, folder, name + "1")
        node.halves = (first, second)
        node.height = 1 + max(first.height, second.height)
    return node


def nodes(root: Split) -> list[Split]:
    """Every node of the tree below (and including) ``root``."""
    found, todo = [], [root]
    while todo:
        node = todo.pop()
        found.append(node)
        todo.extend(node.halves or ())
    return found


def sort_range(task: tuple[str, int, int, str]) -> None:
    """Sorts the lines of bytes [start, end) of a file in memory into ``output``."""
    path, start, end, output = task
    with open(path, "rb") as handle:
        handle.seek(start)
        lines = handle.read(end - start).splitlines(keepends=True)
    if lines and not lines[-1].endswith(b"\n"):
        lines[-1] += b"\n"
    lines.sort()
    with open(output, "wb") as handle:
        handle.writelines(lines)


def merge_pair(task: tuple[str, str, str]) -> None:
    """Merges two sorted files into ``output``, a line at a time."""
    first, second, output = task
    with open(first, "rb") as one, open(second, "rb") as two, open(output, "wb") as out:
        out.writelines(heapq.merge(one, two))


def parallel_sort(path: str, output: str, chunk: int, processes: int) -> int:
    """Sorts the lines of ``path`` into ``output``; returns the number of ranges."""
    folder = tempfile.mkdtemp(prefix="mpsort-")
    try:
        root = build(path, 0, os.path.getsize(path), chunk, folder, "")
        every = nodes(root)
        leaves = [(path, n.start, n.end, n.output) for n in every if n.halves is None]
        with multiprocessing.Pool(processes=processes) as pool:
            pool.map(sort_range, leaves, chunksize=1)
            for height in range(1, root.height + 1):
                level = [(n.halves[0].output, n.halves[1].output, n.output)
                         for n in every if n.height == height and n.halves is not None]
                pool.map(merge_pair, level, chunksize=1)
        shutil.move(root.output, output)
        return len(leaves)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str]) -> int:
    """Sorts --input into --output and prints the wall time as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--N", type=int, default=100_000, help="largest range sorted in memory")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    options = parser.parse_args(argv)
    started = time.perf_counter()
    ranges = parallel_sort(options.input, options.output, options.N, options.processes)
    print(json.dumps({"wall": time.perf_counter() - started, "ranges": ranges}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
