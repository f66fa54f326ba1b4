"""A pipeline for the requeue test: WIDTH children, each recording every run
of it (start and end, with the Slurm job running it) and holding a lock
while it runs, so that two runs of one target at once leave an ``overlap``
file. Child 0's first run waits for ``go`` (the test requeues its job
meanwhile)."""

import argparse
import fcntl
import os
import time

from jobtree import Stack, Target


class Root(Target):
    def __init__(self, out, width):
        Target.__init__(self, memory="50M")
        self.out, self.width = out, width

    def run(self):
        for i in range(self.width):
            self.addChildFn(work, (self.out, i), memory="50M", time=5)


def _record(out, i, what):
    job = os.environ.get("SLURM_ARRAY_JOB_ID")
    job = f"{job}_{os.environ.get('SLURM_ARRAY_TASK_ID')}" if job else os.environ.get(
        "SLURM_JOB_ID", "-")
    with open(os.path.join(out, f"{i}.runs"), "a") as handle:
        handle.write(f"{what} {time.time()} {job} {os.getpid()}\n")


def work(out, i):
    lock = os.open(os.path.join(out, f"{i}.lock"), os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        open(os.path.join(out, f"{i}.overlap"), "w").close()
    _record(out, i, "start")
    if i == 0 and not os.path.exists(os.path.join(out, "go")):
        for _ in range(1200):  # held until the test has requeued its job (bounded)
            if os.path.exists(os.path.join(out, "go")):
                break
            time.sleep(0.1)
    else:
        time.sleep(1)
    _record(out, i, "end")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--width", type=int, default=6)
    Stack.addJobTreeOptions(parser)
    options = parser.parse_args()
    os.makedirs(options.out, exist_ok=True)
    raise SystemExit(1 if Stack(Root(options.out, options.width)).startJobTree(options) else 0)
