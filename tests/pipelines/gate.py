"""A root whose children wait for a gate file before they write their output:
a run that lasts exactly as long as a test wants, for remote trees."""

import argparse
import os
import sys
import time

from helper_remote import mark  # a local module: copied to the remote side too

from jobtree import Stack, Target


class Waiter(Target):
    def __init__(self, gate, output, number):
        Target.__init__(self)
        self.gate, self.output, self.number = gate, output, number

    def run(self):
        while not os.path.exists(self.gate):
            time.sleep(0.1)
        with open(os.path.join(self.output, f"{self.number}.txt"), "w") as handle:
            handle.write(mark(self.number))


class Root(Target):
    def __init__(self, gate, output, count):
        Target.__init__(self)
        self.gate, self.output, self.count = gate, output, count

    def run(self):
        self.logToMaster(f"starting {self.count} waiters")
        for number in range(self.count):
            self.addChildTarget(Waiter(self.gate, self.output, number))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--gate", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--count", type=int, default=3)
    Stack.addJobTreeOptions(parser)
    options = parser.parse_args()
    sys.exit(3 if Stack(Root(options.gate, options.output, options.count)).startJobTree(options)
             else 0)
