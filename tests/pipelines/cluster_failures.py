"""Targets that fail the ways a cluster makes them fail: over their time limit
(``timeLimit``), and asking for what the scheduler refuses. Each records that
it started."""

import argparse
import os
import time

from jobtree import Stack, Target


def slow(out):
    open(os.path.join(out, "slow-started"), "w").close()
    time.sleep(60)


def greedy(out):
    open(os.path.join(out, "greedy-ran"), "w").close()


def root(target, out, kind):
    if kind == "overtime":
        target.addChildFn(slow, (out,), time=1, timeLimit=3)
    else:  # far more memory than any node has: sbatch refuses it
        target.addChildFn(greedy, (out,), memory="100T")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--kind", choices=["overtime", "refused"], required=True)
    Stack.addJobTreeOptions(parser)
    options = parser.parse_args()
    os.makedirs(options.out, exist_ok=True)
    raise SystemExit(1 if Stack(Target.makeTargetFn(root, (options.out, options.kind)))
                     .startJobTree(options) else 0)
