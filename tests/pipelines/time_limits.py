"""Time as jobTree scripts give it, unchanged: classic targets whose ``time``
is far below what they run for (an estimate: they finish), a target over its
``timeLimit``, and one over ``--maxJobDuration`` (both stopped)."""

import argparse
import os
import random
import time as clock

from jobtree import Stack, Target


class Classic(Target):
    """As jobTree's README writes a target: the time given is a guess."""

    def __init__(self, out, name, seconds, time):
        Target.__init__(self, time=time, cpu=1)
        self.out = out
        self.name = name
        self.seconds = seconds

    def run(self):
        clock.sleep(self.seconds)
        open(os.path.join(self.out, self.name), "w").close()


def sleeper(out, name, seconds):
    open(os.path.join(out, name + "-started"), "w").close()
    clock.sleep(seconds)
    open(os.path.join(out, name), "w").close()


def root(target, out, kind):
    if kind == "estimate":
        target.addChildTarget(Classic(out, "one", 4, time=1))
        target.addChildTarget(Classic(out, "random", 4, time=random.random()))
    elif kind == "limit":
        target.addChildFn(sleeper, (out, "limited", 60), time=1, timeLimit=3)
    else:  # run with --maxJobDuration
        target.addChildFn(sleeper, (out, "long", 60), time=1)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--kind", choices=["estimate", "limit", "duration"], required=True)
    Stack.addJobTreeOptions(parser)
    options = parser.parse_args()
    os.makedirs(options.out, exist_ok=True)
    raise SystemExit(1 if Stack(Target.makeTargetFn(root, (options.out, options.kind)))
                     .startJobTree(options) else 0)
