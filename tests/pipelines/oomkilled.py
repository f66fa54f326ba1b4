"""A tree whose one leaf asks for less memory than it needs (150M, and it
touches 260 MiB) and is killed for it by the kernel's out-of-memory killer,
as on a machine that runs out of memory: the leaf puts itself in a memory
cgroup (cgroup v1, which needs root) limited to what its try was given, so
the kernel SIGKILLs it when it goes over. Its next try asks for twice as
much, and finishes.
"""

import argparse
import os

from jobtree import Stack, Target

MIB = 1024 ** 2
CGROUPS = "/sys/fs/cgroup/memory"


class Leaf(Target):
    def __init__(self, touch):
        Target.__init__(self, memory="150M", time=5)
        self.touch = touch

    def run(self):
        with open("/proc/self/statm") as handle:
            resident = int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        group = os.path.join(CGROUPS, "jobtree-test-%d" % os.getpid())
        os.makedirs(group, exist_ok=True)
        with open(os.path.join(group, "memory.limit_in_bytes"), "w") as handle:
            handle.write(str(resident + self.getMemory()))
        with open(os.path.join(group, "cgroup.procs"), "w") as handle:
            handle.write(str(os.getpid()))
        data = bytearray(self.touch * MIB)
        data[::4096] = b"x" * len(data[::4096])  # touched: resident


def root(target, touch):
    target.addChildTarget(Leaf(touch))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--touch", type=int, default=260, help="MiB the leaf touches")
    Stack.addJobTreeOptions(parser)
    options = parser.parse_args()
    raise SystemExit(1 if Stack(Target.makeTargetFn(root, (options.touch,)))
                     .startJobTree(options) else 0)
