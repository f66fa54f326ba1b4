"""A test pipeline: a tree of Nodes with follow-ons that records every
execution, for checking ordering and temp dirs.

Every execution writes events/<path>.<kind>.<run id> holding "start end".
"""

import argparse
import os
import time
import uuid

from jobtree import Stack, Target


def record(events, path, kind, start, extra=""):
    name = os.path.join(events, f"{path}.{kind}.{uuid.uuid4().hex}")
    with open(name + ".tmp", "w") as handle:
        handle.write(f"{start!r} {time.time()!r} {extra}\n")
    os.rename(name + ".tmp", name)


class Node(Target):
    def __init__(self, path, depth, fanout, events, parent_file=None):
        Target.__init__(self, memory="50M")
        self.path = path
        self.depth = depth
        self.fanout = fanout
        self.events = events
        self.parent_file = parent_file

    def run(self):
        start = time.time()
        local = self.getLocalTempDir()
        assert os.listdir(local) == [], "local temp dir not empty at start"
        with open(os.path.join(local, "scratch"), "w") as handle:
            handle.write("x")
        if self.parent_file is not None:
            # the parent's chain global temp dir is visible to its children
            assert open(self.parent_file).read() == "from " + self.path[:-2], self.parent_file
        shared = os.path.join(self.getGlobalTempDir(), "shared.txt")
        with open(shared, "w") as handle:
            handle.write("from " + self.path)
        if self.depth > 0:
            for i in range(self.fanout):
                self.addChildTarget(Node(self.path + f"c{i}", self.depth - 1, self.fanout,
                                         self.events, shared))
            self.setFollowOnTarget(Follow(self.path, self.events, shared))
        time.sleep(0.01)
        record(self.events, self.path, "node", start,
               f"{local} {self.getGlobalTempDir()}")


class Follow(Target):
    def __init__(self, path, events, shared):
        Target.__init__(self)
        self.path = path
        self.events = events
        self.shared = shared

    def run(self):
        start = time.time()
        # the global temp dir of the chain survives until the chain's end
        assert open(self.shared).read() == "from " + self.path
        assert os.path.dirname(self.shared) == self.getGlobalTempDir()
        record(self.events, self.path, "follow", start, self.getGlobalTempDir())


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--fanout", type=int, default=3)
    parser.add_argument("--events", required=True)
    Stack.addJobTreeOptions(parser)
    options = parser.parse_args()
    os.makedirs(options.events, exist_ok=True)
    failed = Stack(Node("r", options.depth, options.fanout, options.events)).startJobTree(options)
    raise SystemExit(1 if failed else 0)
