"""Shell-command children and function targets pickled by value (a lambda and
a closure)."""

import argparse
import os
import sys

from jobtree import Stack, Target


class Root(Target):
    def __init__(self, out):
        Target.__init__(self)
        self.out = out

    def run(self):
        out = self.out
        self.addChildCommand(f"echo from-shell > {out}/command.txt")
        self.addChildFn(lambda path: open(path, "w").write("lambda"),
                        args=(os.path.join(out, "lambda.txt"),))
        suffix = "closure"

        def closure(path):
            with open(path, "w") as handle:
                handle.write(suffix)

        self.addChildFn(closure, args=(os.path.join(out, "closure.txt"),))
        if os.environ.get("COMMAND_FAILS"):
            self.addChildCommand("exit 7")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    Stack.addJobTreeOptions(parser)
    options = parser.parse_args()
    os.makedirs(options.out, exist_ok=True)
    sys.exit(1 if Stack(Root(options.out)).startJobTree(options) else 0)
