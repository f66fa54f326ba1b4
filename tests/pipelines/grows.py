"""A tree whose one leaf asks for 150M and needs 260M: it caps its own address
space at what its try was given (as Grid Engine's h_vmem does), so a try
given 150M raises MemoryError, and the try after it, given twice as much,
finishes."""

import argparse
import resource
import sys

from jobtree import Stack, Target

MIB = 1024 ** 2


class Grows(Target):
    def __init__(self):
        Target.__init__(self, memory="150M", time=5)

    def run(self):
        with open("/proc/self/statm") as handle:
            used = int(handle.read().split()[0]) * resource.getpagesize()
        # the address space the interpreter has, plus what this try was given
        resource.setrlimit(resource.RLIMIT_AS, (used + self.getMemory(), resource.RLIM_INFINITY))
        data = bytearray(260 * MIB)
        print(len(data), self.getMemory() // MIB)


class Root(Target):
    def run(self):
        self.addChildTarget(Grows())


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    Stack.addJobTreeOptions(parser)
    sys.exit(Stack(Root()).startJobTree(parser.parse_args()))
