"""Targets with priorities, and targets that record what they were given.

--mode order: the root adds 20 children of mixed priorities, through every
helper that takes the keyword (a Target subclass, addChildFn,
addChildTargetFn and addChildCommand);
each appends its name to --out as it runs, so the file holds the run order.

--mode given: the root adds one child (memory 100M, time 10, priority 0)
that appends "name memory time cpu priority" to --out, and fails unless the
file --gate exists.
"""

import argparse
import os
import sys

from jobtree import Stack, Target

#: the priority of each of the 20 children, in the order they are added
PRIORITIES = [0, 5, -1, 5, 10, 0, 3, -1, 10, 2, 0, 7, 3, 5, -2, 0, 1, 7, 2, 10]


def record(out, name):
    with open(out, "a") as handle:
        handle.write(f"{name}\n")


def record_target(target, out, name):
    record(out, name)


class Leaf(Target):
    def __init__(self, out, name, gate=None, **keywords):
        Target.__init__(self, **keywords)
        self.out, self.name, self.gate = out, name, gate

    def run(self):
        if self.gate is not None:
            with open(self.out, "a") as handle:
                handle.write(f"{self.name} {self.getMemory()} {self.getRunTime():g} "
                             f"{self.getCpu():g} {self.getPriority()}\n")
            if not os.path.exists(self.gate):
                raise RuntimeError(f"the gate {self.gate} is closed")
            return
        record(self.out, self.name)


class Root(Target):
    def __init__(self, mode, out, gate):
        Target.__init__(self)
        self.mode, self.out, self.gate = mode, out, gate

    def run(self):
        if self.mode == "given":
            self.addChildTarget(Leaf(self.out, "leaf", self.gate, memory="100M", time=10))
            return
        for n, priority in enumerate(PRIORITIES):
            name = f"c{n:02d}p{priority}"
            kind = n % 4
            if kind == 0:
                self.addChildTarget(Leaf(self.out, name, priority=priority))
            elif kind == 1:
                self.addChildFn(record, (self.out, name), priority=priority)
            elif kind == 2:
                self.addChildTargetFn(record_target, (self.out, name), priority=priority)
            else:
                self.addChildCommand(f"echo {name} >> {self.out}", priority=priority)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    Stack.addJobTreeOptions(parser)
    parser.add_argument("--mode", choices=["order", "given"], default="order")
    parser.add_argument("--out", required=True)
    parser.add_argument("--gate")
    options = parser.parse_args()
    sys.exit(Stack(Root(options.mode, options.out, options.gate)).startJobTree(options))
