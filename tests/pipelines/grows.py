"""A tree whose one leaf asks for less memory than it needs (150M, and it
touches 260 MiB), so its first try runs out of memory and the next one,
asking for twice as much, finishes.

On singleMachine, which enforces no memory, the leaf caps its own address
space at what its try was given (as Grid Engine's h_vmem does), so a try
given too little raises MemoryError. On a cluster the scheduler enforces the
request; a try given less than the leaf touches holds it (up to --hold
seconds), so that a scheduler sampling memory (Slurm's OverMemoryKill) sees
it and stops the job, however loaded the machine is.
"""

import argparse
import resource
import sys
import time

from jobtree import Stack, Target

MIB = 1024 ** 2


class Grows(Target):
    def __init__(self, memory, touch, hold, cap):
        if memory == "ladder":  # the request as a function of the try: 100M, 400M, ...
            Target.__init__(self, time=5, request=lambda attempt, reason: {
                "memory": f"{100 * 4 ** (attempt - 1)}M"})
        else:
            Target.__init__(self, memory=memory, time=5)
        self.touch, self.hold, self.cap = touch, hold, cap

    def run(self):
        if self.cap:
            with open("/proc/self/statm") as handle:
                used = int(handle.read().split()[0]) * resource.getpagesize()
            # the address space the interpreter has, plus what this try was given
            resource.setrlimit(resource.RLIMIT_AS,
                               (used + self.getMemory(), resource.RLIM_INFINITY))
        data = b"x" * (self.touch * MIB)
        if self.getMemory() < self.touch * MIB:
            # given too little: wait (up to --hold seconds) for the scheduler to see it
            time.sleep(self.hold)
        print(len(data), self.getMemory() // MIB)


class Root(Target):
    def __init__(self, memory, touch, hold, cap):
        Target.__init__(self, memory="100M")
        self.args = (memory, touch, hold, cap)

    def run(self):
        self.addChildTarget(Grows(*self.args))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    Stack.addJobTreeOptions(parser)
    parser.add_argument("--memory", default="150M",
                        help="what the leaf asks for ('ladder': a function of the try)")
    parser.add_argument("--touch", type=int, default=260, help="MiB the leaf touches")
    parser.add_argument("--hold", type=float, default=0, help="seconds a try given too little holds them")
    options = parser.parse_args()
    cap = options.batchSystem in (None, "singleMachine", "local")
    root = Root(options.memory, options.touch, options.hold, cap)
    sys.exit(Stack(root).startJobTree(options))
