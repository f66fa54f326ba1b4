"""The same tiny pipeline with an argparse or an optparse parser:
python parsers.py argparse|optparse OUT [jobtree options]."""

import argparse
import optparse
import sys

from jobtree import Stack, Target


class Hello(Target):
    def __init__(self, out, word):
        Target.__init__(self)
        self.out = out
        self.word = word

    def run(self):
        self.addChildTarget(Write(self.out, self.word))


class Write(Target):
    def __init__(self, out, word):
        Target.__init__(self)
        self.out = out
        self.word = word

    def run(self):
        with open(self.out, "w") as handle:
            handle.write("hello from " + self.word)


if __name__ == "__main__":
    kind, out = sys.argv[1], sys.argv[2]
    rest = sys.argv[3:]
    if kind == "argparse":
        parser = argparse.ArgumentParser()
        Stack.addJobTreeOptions(parser)
        options = parser.parse_args(rest)
    else:
        parser = optparse.OptionParser()
        Stack.addJobTreeOptions(parser)
        options, args = parser.parse_args(rest)
    raise SystemExit(1 if Stack(Hello(out, kind)).startJobTree(options) else 0)
