"""A root with N children that each sleep a little: a run that lasts a few
seconds, for the master's progress output."""

import argparse
import sys
import time

from jobtree import Stack, Target


class Nap(Target):
    def __init__(self, seconds):
        Target.__init__(self)
        self.seconds = seconds

    def run(self):
        time.sleep(self.seconds)


class Root(Target):
    def __init__(self, count, seconds):
        Target.__init__(self)
        self.count = count
        self.seconds = seconds

    def run(self):
        for _ in range(self.count):
            self.addChildTarget(Nap(self.seconds))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=0.2)
    Stack.addJobTreeOptions(parser)
    options = parser.parse_args()
    sys.exit(Stack(Root(options.count, options.seconds)).startJobTree(options))
