"""A pipeline for the fork server's warm start: it notes every import of this
script (outside the master) and what each target saw, and can change its own
source while it runs."""

import argparse
import json
import os
import sys
import time

from jobtree import Stack, Target

VERSION = 1
OUT = os.environ.get("WARM_OUT")
if __name__ != "__main__" and OUT:
    with open(os.path.join(OUT, f"import.{os.getpid()}"), "w") as handle:
        handle.write(str(VERSION))
    print("this line is printed while the script is imported")


def note(name, **what):
    with open(os.path.join(OUT, name), "w") as handle:
        json.dump(dict(what, pid=os.getpid(), version=VERSION), handle)


class Leaf(Target):
    def __init__(self, n, tree):
        Target.__init__(self)
        self.n = n
        self.tree = tree

    def run(self):
        if self.n == 0 and os.path.exists(os.path.join(OUT, "fail")):
            raise RuntimeError("leaf 0 fails this time")
        note(f"leaf.{self.n}", inputs=os.listdir(os.path.join(self.tree, "jobs")))


class Editor(Target):
    """Changes this script on disk (VERSION = 2), then waits out the fork
    server's look at changed files."""

    def run(self):
        path = os.path.abspath(__file__)
        with open(path, encoding="utf-8") as handle:
            source = handle.read()
        with open(path + ".new", "w", encoding="utf-8") as handle:
            handle.write(source.replace("VERSION = 1\n", "VERSION = 2\n", 1))
        os.replace(path + ".new", path)
        time.sleep(1.5)


class After(Target):
    def run(self):
        note("after")


class Root(Target):
    def __init__(self, case, width, tree):
        Target.__init__(self)
        self.case = case
        self.width = width
        self.tree = tree

    def run(self):
        if self.case == "edit":
            self.addChildTarget(Editor())
            self.setFollowOnTarget(After())
            return
        for n in range(self.width):
            self.addChildTarget(Leaf(n, self.tree))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("case", choices=["fan", "edit"])
    parser.add_argument("--width", type=int, default=20)
    Stack.addJobTreeOptions(parser)
    options = parser.parse_args()
    failed = Stack(Root(options.case, options.width,
                        os.path.abspath(options.jobTree))).startJobTree(options)
    from jobtree import metrics

    print(json.dumps({"counts": dict(metrics.COUNTS)}))
    sys.exit(failed)
