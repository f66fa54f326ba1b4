"""Pipelines that users get wrong: python bad.py CASE [jobtree options]."""

import sys
import threading
import time

from jobtree import Stack, Target


class HoldsLock(Target):
    def __init__(self):
        Target.__init__(self)
        self.name = "fine"
        self.guard = threading.Lock()


class AddsUnpicklableChild(Target):
    def run(self):
        self.addChildTarget(HoldsLock())


class Huge(Target):
    def __init__(self):
        Target.__init__(self, memory="100T")


class AddsHugeChild(Target):
    def run(self):
        self.addChildTarget(Huge())


class Sleeper(Target):
    def run(self):
        time.sleep(30)


class Quick(Target):
    def run(self):
        pass


CASES = {"unpicklable": HoldsLock, "unpicklable-child": AddsUnpicklableChild,
         "huge": Huge, "huge-child": AddsHugeChild, "sleeper": Sleeper, "quick": Quick}

if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("case", choices=sorted(CASES))
    Stack.addJobTreeOptions(parser)
    options = parser.parse_args()
    sys.exit(1 if Stack(CASES[options.case]()).startJobTree(options) else 0)
