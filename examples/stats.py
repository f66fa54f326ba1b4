#!/usr/bin/env python3
"""Mean and standard deviation of the numbers in many files, with return
values and promises.

A target's ``run()`` may return a value; jobtree stores it in the tree.
``target.rv()`` is a *promise* of that value: pass it to a target that runs
after ``target`` (here the follow-on of the target that added it), and the
value is there when that target runs. ``rv("key")`` promises a part of it.
So no step writes a file just to hand a number to the next step::

    Summarise                root: one Count per file, then Combine
     ├─ Count (each file)    returns {"n": ..., "sum": ..., "squares": ...}
     └─ Combine              follow-on, given [count.rv() for each Count]:
         └─ Report           child, given combine.rv("mean") and rv("sd")

Values survive a crash like the rest of the tree: after ``jobTreeRun`` (or
the same command again), finished counts are not computed again.

Try it::

    python examples/stats.py --generate 20 --inputDir /tmp/numbers \\
        --output /tmp/stats.txt --jobTree /tmp/jt-stats
"""

from __future__ import annotations

import argparse
import glob
import math
import os
import random
import sys

from jobtree import Stack, Target


class Count(Target):
    """The count, sum and sum of squares of the numbers in one file."""

    def __init__(self, path: str) -> None:
        super().__init__(memory="200M")
        self.path = path

    def run(self) -> dict[str, float]:
        n = total = squares = 0.0
        with open(self.path, encoding="ascii") as handle:
            for line in handle:
                if line.strip():
                    value = float(line)
                    n, total, squares = n + 1, total + value, squares + value * value
        return {"n": n, "sum": total, "squares": squares}


class Combine(Target):
    """Adds up the counts of every file; returns the mean and the sd."""

    def __init__(self, counts: list[dict[str, float]], output: str) -> None:
        super().__init__()
        self.counts = counts  # promises until this target runs: then the values
        self.output = output

    def run(self) -> dict[str, float]:
        n = sum(c["n"] for c in self.counts)
        total = sum(c["sum"] for c in self.counts)
        squares = sum(c["squares"] for c in self.counts)
        mean = total / n if n else math.nan
        sd = math.sqrt(max(squares / n - mean * mean, 0.0)) if n else math.nan
        self.addChildTarget(Report(self.rv("mean"), self.rv("sd"), int(n), self.output))
        return {"mean": mean, "sd": sd}


class Report(Target):
    """Writes the result: gets the mean and the sd from its parent's value."""

    def __init__(self, mean: float, sd: float, n: int, output: str) -> None:
        super().__init__()
        self.mean, self.sd, self.n, self.output = mean, sd, n, output

    def run(self) -> None:
        with open(self.output + ".tmp", "w", encoding="ascii") as handle:
            handle.write(f"n\t{self.n}\nmean\t{self.mean:.6f}\nsd\t{self.sd:.6f}\n")
        os.replace(self.output + ".tmp", self.output)
        self.logToMaster(f"{self.n} numbers: mean {self.mean:.4f}, sd {self.sd:.4f}")


class Summarise(Target):
    """The root: counts every file in parallel, then combines the counts."""

    def __init__(self, paths: list[str], output: str) -> None:
        super().__init__()
        self.paths, self.output = paths, output

    def run(self) -> None:
        counts = [self.addChildTarget(Count(path)) for path in self.paths]
        self.setFollowOnTarget(Combine([count.rv() for count in counts], self.output))


def generate(folder: str, files: int, seed: int = 11) -> None:
    """Writes ``files`` files of 1,000 normally distributed numbers each."""
    rng = random.Random(seed)
    os.makedirs(folder, exist_ok=True)
    for number in range(files):
        with open(os.path.join(folder, f"numbers{number:03d}.txt"), "w",
                  encoding="ascii") as handle:
            handle.writelines(f"{rng.gauss(10, 2):.6f}\n" for _ in range(1000))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputDir", required=True, help="a folder of files of numbers")
    parser.add_argument("--output", required=True, help="the file to write the result to")
    parser.add_argument("--generate", type=int, metavar="N",
                        help="first write N files of random numbers to --inputDir")
    Stack.addJobTreeOptions(parser)
    options = parser.parse_args()
    if options.generate:
        generate(options.inputDir, options.generate)
    paths = sorted(glob.glob(os.path.join(options.inputDir, "*.txt")))
    if not paths:
        parser.error(f"--inputDir {options.inputDir} holds no .txt files "
                     f"(use --generate N to make some)")
    return 1 if Stack(Summarise(paths, options.output)).startJobTree(options) else 0


if __name__ == "__main__":
    sys.exit(main())
