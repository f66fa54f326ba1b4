"""A target that records its local temp dir, then raises (or sets two follow-ons)."""

import argparse

from jobtree import Stack, Target


class Empty(Target):
    def run(self):
        pass


class Raiser(Target):
    def __init__(self, record, two):
        Target.__init__(self)
        self.record = record
        self.two = two

    def run(self):
        local = self.getLocalTempDir()
        open(local + "/file", "w").write("x")
        with open(self.record, "w") as handle:
            handle.write(local)
        if self.two:
            self.setFollowOnTarget(Empty())
            self.setFollowOnTarget(Empty())
        raise ValueError("deliberate failure")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--record", required=True)
    parser.add_argument("--twoFollowOns", action="store_true")
    Stack.addJobTreeOptions(parser)
    options = parser.parse_args()
    failed = Stack(Raiser(options.record, options.twoFollowOns)).startJobTree(options)
    raise SystemExit(1 if failed else 0)
