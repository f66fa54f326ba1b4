"""A small tree with failures, for jobTreeStatus's data: twelve leaves of which
every fifth fails on every try, and leaves of a second class that succeed."""

import argparse
import sys

from jobtree import Stack, Target


class Leaf(Target):
    def __init__(self, n):
        Target.__init__(self)
        self.n = n

    def run(self):
        print(f"leaf {self.n} says hello")
        if self.n % 5 == 0:
            raise ValueError(f"leaf {self.n} broke")


class Other(Target):
    def run(self):
        pass


class Root(Target):
    def run(self):
        for n in range(12):
            self.addChildTarget(Leaf(n))
        for _ in range(3):
            self.addChildTarget(Other())


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    Stack.addJobTreeOptions(parser)
    sys.exit(Stack(Root()).startJobTree(parser.parse_args()))
