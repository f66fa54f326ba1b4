#!/usr/bin/env python3
"""A tiny pipeline for the command-line tests: a few children, optionally one
that fails or one that sleeps.

``--mode ok`` runs a root with three children and a follow-on; ``--mode fail``
makes the second child raise; ``--mode sleep`` makes the second child write
``--marker`` and then sleep for ``--seconds``, the first time only: when it runs
again (after jobTreeKill, say) the marker exists and it returns at once.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from jobtree import Stack, Target


class Child(Target):
    """Does a little, fails, or sleeps, as its mode says."""

    def __init__(self, index: int, mode: str, marker: str | None, seconds: float) -> None:
        Target.__init__(self, memory="10M")
        self.index = index
        self.mode = mode
        self.marker = marker
        self.seconds = seconds

    def run(self) -> None:
        self.logToMaster(f"child {self.index} ran")
        if self.index == 1 and self.mode == "fail":
            print("about to fail on purpose", file=sys.stderr)
            raise ValueError(f"child {self.index} failed on purpose")
        if self.index == 1 and self.mode == "sleep":
            if self.marker and os.path.exists(self.marker):
                return
            if self.marker:
                with open(self.marker, "w", encoding="utf-8") as handle:
                    handle.write(str(os.getpid()))
            time.sleep(self.seconds)


class Finish(Target):
    """The root's follow-on."""

    def __init__(self) -> None:
        Target.__init__(self, memory="10M")

    def run(self) -> None:
        self.logToMaster("finished")


class Root(Target):
    """Adds three children and a follow-on."""

    def __init__(self, mode: str, marker: str | None, seconds: float) -> None:
        Target.__init__(self, memory="10M")
        self.mode = mode
        self.marker = marker
        self.seconds = seconds

    def run(self) -> None:
        for index in range(3):
            self.addChildTarget(Child(index, self.mode, self.marker, self.seconds))
        self.setFollowOnTarget(Finish())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mode", choices=("ok", "fail", "sleep"), default="ok")
    parser.add_argument("--marker", default=None)
    parser.add_argument("--seconds", type=float, default=60.0)
    Stack.addJobTreeOptions(parser)
    options = parser.parse_args()
    return 1 if Stack(Root(options.mode, options.marker, options.seconds)).startJobTree(options) \
        else 0


if __name__ == "__main__":
    sys.exit(main())
