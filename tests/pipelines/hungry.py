"""A tree whose one leaf really runs out of memory: it caps its own address
space (RLIMIT_AS, as Grid Engine's h_vmem does) a little above what it uses,
then asks for a gigabyte more, so Python raises MemoryError."""

import argparse
import resource
import sys

from jobtree import Stack, Target


class Hungry(Target):
    def run(self):
        with open("/proc/self/statm") as handle:
            used = int(handle.read().split()[0]) * resource.getpagesize()
        resource.setrlimit(resource.RLIMIT_AS, (used + 64 * 1024 ** 2, resource.RLIM_INFINITY))
        data = bytearray(1024 ** 3)
        print(len(data))


class Fine(Target):
    def run(self):
        pass


class Root(Target):
    def run(self):
        self.addChildTarget(Hungry())
        self.addChildTarget(Fine())


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    Stack.addJobTreeOptions(parser)
    sys.exit(Stack(Root()).startJobTree(parser.parse_args()))
