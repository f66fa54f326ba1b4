"""Targets that write into their local temp dirs and record where those were.

The root writes ``root`` (its local temp dir); with ``--hostile`` it then acts
as a neighbour on the same machine would: it renames the tree's local temp
root aside and plants, in its place, the folders the next target would use,
open to everyone (and another user's, when run as root). Its child and the
child's follow-on each write a file into their own local temp dir and record
its path (``child``, ``followon``), so a test can check where they wrote.
"""

import argparse
import os

from jobtree import Stack, Target

#: the uid the hostile neighbour plants its folders as (when run as root)
NEIGHBOUR = 54321


def record(out, name, folder):
    with open(os.path.join(folder, "secret"), "w") as handle:
        handle.write(name)
    with open(os.path.join(out, name), "w") as handle:
        handle.write(folder)


class Root(Target):
    def __init__(self, out, hostile):
        Target.__init__(self)
        self.out, self.hostile = out, hostile

    def run(self):
        local = self.getLocalTempDir()
        record(self.out, "root", local)
        if self.hostile:
            tree_root = os.path.dirname(os.path.dirname(local))  # .../<tree id>
            os.rename(tree_root, tree_root + ".aside")
            planted = tree_root
            for name in ("", "2.1", "2.1/0", "3.1", "3.1/0"):
                path = os.path.join(planted, name)
                os.makedirs(path, exist_ok=True)
                os.chmod(path, 0o777)
                if os.getuid() == 0:
                    os.chown(path, NEIGHBOUR, NEIGHBOUR)
        self.addChildTarget(Child(self.out))


class Child(Target):
    def __init__(self, out):
        Target.__init__(self)
        self.out = out

    def run(self):
        record(self.out, "child", self.getLocalTempDir())
        self.setFollowOnTarget(FollowOn(self.out))


class FollowOn(Target):
    def __init__(self, out):
        Target.__init__(self)
        self.out = out

    def run(self):
        record(self.out, "followon", self.getLocalTempDir())


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--hostile", action="store_true")
    Stack.addJobTreeOptions(parser)
    options = parser.parse_args()
    os.makedirs(options.out, exist_ok=True)
    raise SystemExit(1 if Stack(Root(options.out, options.hostile)).startJobTree(options) else 0)
