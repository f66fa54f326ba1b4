"""Targets for pilots: WIDTH one-core children that sleep SLEEP seconds and
one two-core child (which fits no one-core pilot), then a follow-on that
checks them all. Each child holds a lock on its own file while it runs and
leaves ``overlap-N`` if another run of it held the lock (two runs of one
target at once); it records every start (``start-N-PID``) and writes the
scheduler job it ran in to ``N``.
"""

import argparse
import fcntl
import os
import time

from jobtree import Stack, Target


def job_id():
    return os.environ.get("SLURM_JOB_ID") or os.environ.get("JOB_ID") or "?"


def child(out, number, sleep):
    with open(os.path.join(out, "start-%d-%d" % (number, os.getpid())), "w") as handle:
        handle.write(job_id())
    lock = open(os.path.join(out, "lock-%d" % number), "a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        open(os.path.join(out, "overlap-%d" % number), "w").close()
    time.sleep(sleep)
    path = os.path.join(out, str(number))
    with open(path + ".tmp", "w") as handle:
        handle.write(job_id())
    os.replace(path + ".tmp", path)


def check(out, width):
    missing = [i for i in range(width + 1) if not os.path.exists(os.path.join(out, str(i)))]
    if missing:
        raise RuntimeError("missing outputs: %s" % missing)
    with open(os.path.join(out, "total"), "w") as handle:
        handle.write(str(width + 1))


class Root(Target):
    def __init__(self, out, width, sleep):
        Target.__init__(self, memory="100M", cpu=1)
        self.out, self.width, self.sleep = out, width, sleep

    def run(self):
        for i in range(self.width):
            self.addChildFn(child, (self.out, i, self.sleep), memory="100M", cpu=1)
        self.addChildFn(child, (self.out, self.width, 0), memory="100M", cpu=2)
        self.setFollowOnFn(check, (self.out, self.width), memory="100M")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    Stack.addJobTreeOptions(parser)
    parser.add_argument("--out", required=True)
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--sleep", type=float, default=0.0)
    options = parser.parse_args()
    os.makedirs(options.out, exist_ok=True)
    raise SystemExit(Stack(Root(options.out, options.width, options.sleep))
                     .startJobTree(options))
