#!/usr/bin/env python3
"""A tree whose classes ask clearly too much or too little, for jobTreeStats's
requested-against-used table.

- Hungry (two of them) asks 10M, one core and a second, and touches 150 MB.
- Idle asks 2G, two cores and an hour, and sleeps a moment; its follow-on
  Tail asks 10M but is chained into Idle's job, so it had what Idle was given.
- Plain asks nothing (the tree's defaults). It is made in a function, and
  named ``Plain<b>&"`` there, a name that HTML must escape.

With ``--starve``, the root also adds Starved, which asks 100M and raises
MemoryError on every try, so no run of its class is ever recorded.
"""

import argparse
import sys
import time

from jobtree import Stack, Target

MB = 1024 * 1024


class Hungry(Target):
    def __init__(self):
        Target.__init__(self, memory="10M", cpu=1, time="1s")

    def run(self):
        block = bytearray(150 * MB)
        for offset in range(0, len(block), 4096):  # touch every page
            block[offset] = 1
        del block


class Tail(Target):
    def __init__(self):
        Target.__init__(self, memory="10M")

    def run(self):
        pass


class Idle(Target):
    def __init__(self):
        Target.__init__(self, memory="2G", cpu=2, time="1h")

    def run(self):
        time.sleep(0.3)
        self.setFollowOnTarget(Tail())


def plain():
    class Plain(Target):
        def run(self):
            pass
    Plain.__name__ = Plain.__qualname__ = 'Plain<b>&"'
    return Plain()


class Starved(Target):
    def __init__(self):
        Target.__init__(self, memory="100M")

    def run(self):
        raise MemoryError("wanted far more than 100M")


class Root(Target):
    def __init__(self, starve):
        Target.__init__(self)
        self.starve = starve

    def run(self):
        if self.starve:
            self.addChildTarget(Starved())
        self.addChildTarget(Hungry())
        self.addChildTarget(Hungry())
        self.addChildTarget(Idle())
        self.addChildTarget(plain())


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--starve", action="store_true")
    Stack.addJobTreeOptions(parser)
    options = parser.parse_args()
    sys.exit(Stack(Root(options.starve)).startJobTree(options))
