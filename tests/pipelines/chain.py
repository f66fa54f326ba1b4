"""A chain of follow-ons with no children (chained in one worker by --jobTime),
a sleeper for --maxJobDuration, and a big target for --bigBatchSystem."""

import argparse
import os
import sys
import time

from jobtree import Stack, Target


class Link(Target):
    def __init__(self, n, out, memory=None):
        Target.__init__(self, memory=memory)
        self.n = n
        self.out = out

    def run(self):
        with open(os.path.join(self.out, f"link{self.n}"), "w") as handle:
            handle.write(str(os.getpid()))
        self.logToMaster(f"link {self.n} ran")
        if self.n == 3 and os.environ.get("CHAIN_FAIL"):
            raise RuntimeError("link 3 broke")
        if self.n < 4:
            self.setFollowOnTarget(Link(self.n + 1, self.out))


class Sleeper(Target):
    def __init__(self, out):
        Target.__init__(self)
        self.out = out

    def run(self):
        time.sleep(60)


class Big(Target):
    def __init__(self, out):
        Target.__init__(self, memory="3G")
        self.out = out

    def run(self):
        self.addChildTarget(Link(4, self.out, memory="100M"))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("case")
    parser.add_argument("--out", required=True)
    Stack.addJobTreeOptions(parser)
    options = parser.parse_args()
    os.makedirs(options.out, exist_ok=True)
    root = {"chain": lambda: Link(0, options.out), "sleeper": lambda: Sleeper(options.out),
            "big": lambda: Big(options.out)}[options.case]()
    sys.exit(1 if Stack(root).startJobTree(options) else 0)
