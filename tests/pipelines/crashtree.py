"""The crash-test pipeline: a tree of Nodes whose follow-ons add up their
children's outputs. Every execution leaves a record naming its own run id and
the run id of the execution of its parent that created it."""

import argparse
import os
import time
import uuid

from jobtree import Stack, Target


def write_atomic(path, text):
    with open(path + ".tmp%d" % os.getpid(), "w") as handle:
        handle.write(text)
    os.rename(path + ".tmp%d" % os.getpid(), path)


class Node(Target):
    def __init__(self, path, depth, fanout, base, creator, memory="20M"):
        Target.__init__(self, memory=memory)
        self.memory = memory
        self.path = path
        self.depth = depth
        self.fanout = fanout
        self.base = base
        self.creator = creator

    def run(self):
        me = uuid.uuid4().hex
        write_atomic(os.path.join(self.base, "runs", f"{self.path}.{me}"), self.creator)
        time.sleep(0.02 * (hash(self.path) % 4))
        if self.depth == 0:
            write_atomic(os.path.join(self.base, "out", self.path), str(len(self.path)))
            return
        for i in range(self.fanout):
            self.addChildTarget(Node(f"{self.path}-{i}", self.depth - 1, self.fanout,
                                     self.base, me, self.memory))
        self.setFollowOnTarget(Sum(self.path, self.fanout, self.base, self.memory))


class Sum(Target):
    def __init__(self, path, fanout, base, memory="20M"):
        Target.__init__(self, memory=memory)
        self.path = path
        self.fanout = fanout
        self.base = base

    def run(self):
        total = 0
        for i in range(self.fanout):
            with open(os.path.join(self.base, "out", f"{self.path}-{i}")) as handle:
                total += int(handle.read())
        write_atomic(os.path.join(self.base, "out", self.path), str(total))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--fanout", type=int, default=4)
    parser.add_argument("--memory", default="20M",
                        help="memory of every target (Grid Engine limits virtual memory: "
                             "Python needs more than 20M there)")
    Stack.addJobTreeOptions(parser)
    options = parser.parse_args()
    for sub in ("runs", "out"):
        os.makedirs(os.path.join(options.base, sub), exist_ok=True)
    root = Node("r", options.depth, options.fanout, options.base, "script", options.memory)
    raise SystemExit(1 if Stack(root).startJobTree(options) else 0)
