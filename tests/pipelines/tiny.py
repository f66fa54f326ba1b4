"""A classic jobTree-style script of tiny targets: every target gives its
memory in bytes, as jobTree's README does (``memory=1000000``), and the
children ask between 1 byte and 1 MB. Each child touches 8 MB (more than
it asked, far less than any real job needs), sleeps ``--sleep`` seconds
(so that a scheduler sampling memory every second sees it) and writes its
number; the root's follow-on adds them up into ``total``.
"""

import argparse
import os
import time

from jobtree import Stack, Target


class Root(Target):
    def __init__(self, out, width, sleep):
        Target.__init__(self, memory=1000000, cpu=1)
        self.out, self.width, self.sleep = out, width, sleep

    def run(self):
        for i in range(self.width):
            self.addChildTarget(Tiny(self.out, i, self.sleep, memory=1 + i * 50000))
        self.setFollowOnTarget(Total(self.out, self.width))


class Tiny(Target):
    def __init__(self, out, number, sleep, memory):
        Target.__init__(self, memory=memory, cpu=1)
        self.out, self.number, self.sleep = out, number, sleep

    def run(self):
        block = bytearray(8 * 1024 * 1024)  # 8 MB, touched
        block[::4096] = b"x" * len(block[::4096])
        time.sleep(self.sleep)  # long enough for a scheduler's memory sampling
        path = os.path.join(self.out, "n%d" % self.number)
        with open(path + ".tmp", "w") as handle:
            handle.write(str(self.number))
        os.replace(path + ".tmp", path)


class Total(Target):
    def __init__(self, out, width):
        Target.__init__(self, memory=1000000, cpu=1)
        self.out, self.width = out, width

    def run(self):
        total = sum(int(open(os.path.join(self.out, "n%d" % i)).read())
                    for i in range(self.width))
        with open(os.path.join(self.out, "total"), "w") as handle:
            handle.write(str(total))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--width", type=int, default=20)
    parser.add_argument("--sleep", type=float, default=2.0)
    Stack.addJobTreeOptions(parser)
    options = parser.parse_args()
    os.makedirs(options.out, exist_ok=True)
    root = Root(options.out, options.width, options.sleep)
    raise SystemExit(1 if Stack(root).startJobTree(options) else 0)
