"""A classic jobTree script, as its README and tests write targets, run
unchanged: every target says ``time=1, memory=1000000, cpu=1`` (an estimate
of a second and a megabyte, given in bytes) or, as jobTree's own tests do,
``time=random.random() * 10`` and a memory between 1 byte and 100 MB; each
runs for longer than its estimate (``--seconds``), touches a little memory,
and writes its number; the root's follow-on adds them up into ``total``.
"""

import argparse
import os
import random
import time

from jobtree import Stack, Target

MB = 1000 * 1000


class Root(Target):
    def __init__(self, out, width, seconds):
        Target.__init__(self, time=1, memory=1000000, cpu=1)
        self.out, self.width, self.seconds = out, width, seconds

    def run(self):
        for i in range(self.width):
            if i % 2 == 0:
                child = Work(self.out, i, self.seconds, time=1, memory=1000000)
            else:
                child = Work(self.out, i, self.seconds, time=random.random() * 10,
                             memory=int(1 + random.random() * 100 * MB))
            self.addChildTarget(child)
        self.setFollowOnTarget(Total(self.out, self.width))


class Work(Target):
    def __init__(self, out, number, seconds, time, memory):
        Target.__init__(self, time=time, memory=memory, cpu=1)
        self.out, self.number, self.seconds = out, number, seconds

    def run(self):
        block = bytearray(8 * MB)  # more than some of them asked, as such scripts do
        block[::4096] = b"x" * len(block[::4096])
        time.sleep(self.seconds)
        path = os.path.join(self.out, "n%d" % self.number)
        with open(path + ".tmp", "w") as handle:
            handle.write(str(self.number))
        os.replace(path + ".tmp", path)


class Total(Target):
    def __init__(self, out, width):
        Target.__init__(self, time=1, memory=1000000, cpu=1)
        self.out, self.width = out, width

    def run(self):
        total = sum(int(open(os.path.join(self.out, "n%d" % i)).read())
                    for i in range(self.width))
        with open(os.path.join(self.out, "total"), "w") as handle:
            handle.write(str(total))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--width", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=5.0)
    Stack.addJobTreeOptions(parser)
    options = parser.parse_args()
    os.makedirs(options.out, exist_ok=True)
    raise SystemExit(1 if Stack(Root(options.out, options.width, options.seconds))
                     .startJobTree(options) else 0)
