"""A script that starts its tree at import time, without a __main__ guard
(CASE=argv: it parses the command line at import time instead)."""

import argparse
import os
import sys

from jobtree import Stack, Target


class Child(Target):
    def run(self):
        pass


class Root(Target):
    def run(self):
        self.addChildTarget(Child())


parser = argparse.ArgumentParser()
Stack.addJobTreeOptions(parser)
if os.environ.get("CASE") == "argv":
    parser.add_argument("--needed", required=True)
options = parser.parse_args()
sys.exit(1 if Stack(Root()).startJobTree(options) else 0)
