"""Function targets: addChildFn, addChildTargetFn, setFollowOnFn with resources."""

import argparse
import os

from jobtree import Stack, Target


def write_number(target, out, number):
    with open(os.path.join(target.getGlobalTempDir(), f"n{number}"), "w") as handle:
        handle.write(str(number))


def child(target, out):
    with open(os.path.join(out, "child.txt"), "w") as handle:
        handle.write(f"child_memory={target.getMemory()} child_cpu={target.getCpu()}\n")
    target.logToMaster("child says hello")


def add_up(out, folder):
    total = sum(int(open(os.path.join(folder, n)).read()) for n in os.listdir(folder))
    with open(os.path.join(out, "sum.txt"), "w") as handle:
        handle.write(str(total))


def follow(target, out):
    with open(os.path.join(out, "child.txt")) as handle:
        first = handle.read()
    with open(os.path.join(out, "resources.txt"), "w") as handle:
        handle.write(first + f"follow_memory={target.getMemory()}\n")


class Root(Target):
    def __init__(self, out):
        Target.__init__(self)
        self.out = out

    def run(self):
        folder = self.getGlobalTempDir()
        self.addChildTargetFn(child, args=(self.out,), memory="300M", cpu=2)
        for number in (1, 2, 3):
            self.addChildFn(write_number_plain, args=(folder, number), memory="10M")
        self.setFollowOnTargetFn(after, args=(self.out, folder), memory="200M")


def write_number_plain(folder, number):
    with open(os.path.join(folder, f"n{number}"), "w") as handle:
        handle.write(str(number))


def after(target, out, folder):
    add_up(out, folder)
    follow(target, out)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    Stack.addJobTreeOptions(parser)
    options = parser.parse_args()
    os.makedirs(options.out, exist_ok=True)
    raise SystemExit(1 if Stack(Root(options.out)).startJobTree(options) else 0)
