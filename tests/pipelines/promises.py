"""Return values and promises, one pipeline per --mode; results go to --out.

Modes:
  sum        children square numbers; the follow-on sums their promised values
  wide       the same with 60 children (for killing the master at random)
  parts      rv("key") and rv(0) take parts of a child's value
  parent     a child gets the promise of the target that added it
  chained    a follow-on, chained in the same worker, gets its predecessor's value
  large      a child returns a value too large for the index (stored as a file)
  sibling    a promise goes to a sibling: refused with a clear message
  failing    the promised child fails until --fixed exists
  slow       like sum, but one child is slow (to kill the master meanwhile)
  preadded   the root's follow-on, added before the tree starts, gets root.rv()
  unpicklable  a promised value cannot be pickled
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time

from jobtree import Stack, Target


def _note(out: str, name: str, text: str) -> None:
    with open(os.path.join(out, name), "a", encoding="utf-8") as handle:
        handle.write(text + "\n")


class Square(Target):
    def __init__(self, out: str, number: int, delay: float = 0.0) -> None:
        super().__init__()
        self.out, self.number, self.delay = out, number, delay

    def run(self) -> int:
        _note(self.out, f"square-{self.number}", "ran")
        time.sleep(self.delay)
        return self.number * self.number


class Total(Target):
    def __init__(self, out: str, values: list[int], name: str = "total") -> None:
        super().__init__()
        self.out, self.values, self.name = out, values, name

    def run(self) -> int:
        _note(self.out, self.name, repr(self.values))
        return sum(self.values)


class Record(Target):
    """Writes what it was given (promises resolved) to a file."""

    def __init__(self, out: str, name: str, value: object) -> None:
        super().__init__()
        self.out, self.name, self.value = out, name, value

    def run(self) -> None:
        _note(self.out, self.name, repr(self.value))


class Answer(Target):
    def __init__(self, value: object) -> None:
        super().__init__()
        self.value = value

    def run(self) -> object:
        return self.value


class Flaky(Target):
    def __init__(self, out: str, fixed: str) -> None:
        super().__init__()
        self.out, self.fixed = out, fixed

    def run(self) -> int:
        _note(self.out, "flaky", "ran")
        if not os.path.exists(self.fixed):
            raise RuntimeError("not fixed yet")
        return 42


class Lock(Target):
    def run(self) -> object:
        return threading.Lock()


class Root(Target):
    def __init__(self, mode: str, out: str, fixed: str) -> None:
        super().__init__()
        self.mode, self.out, self.fixed = mode, out, fixed

    def run(self) -> str:
        out, mode = self.out, self.mode
        if mode == "wide":  # many children, each a little slow, summed by the follow-on
            squares = [self.addChildTarget(Square(out, n, 0.15)) for n in range(60)]
            self.setFollowOnTarget(Total(out, [s.rv() for s in squares]))
        elif mode in ("sum", "slow"):
            squares = [self.addChildTarget(Square(out, n, 4.0 if mode == "slow" and n == 4
                                                  else 0.0)) for n in range(5)]
            self.setFollowOnTarget(Total(out, [s.rv() for s in squares]))
        elif mode == "parts":
            answer = self.addChildTarget(Answer({"key": [7, 8], "other": "x"}))
            self.setFollowOnTarget(Record(out, "parts", (answer.rv("key"),
                                                          answer.rv("key", 1),
                                                          answer.rv())))
        elif mode == "parent":
            self.addChildTarget(Record(out, "parent", self.rv()))
        elif mode == "chained":
            first = Answer(["chained", os.getpid()])
            self.addChildTarget(first)
            # no children of its own: the worker that runs `first` runs this too
            first.setFollowOnTarget(Record(out, "chained", first.rv()))
        elif mode == "large":
            big = self.addChildTarget(Answer("x" * 300_000))
            self.setFollowOnTarget(Record(out, "large", big.rv()))
        elif mode == "sibling":
            first = self.addChildTarget(Answer(1))
            self.addChildTarget(Record(out, "sibling", first.rv()))
        elif mode == "failing":
            flaky = self.addChildTarget(Flaky(out, self.fixed))
            self.setFollowOnTarget(Record(out, "after-flaky", flaky.rv()))
        elif mode == "unpicklable":
            lock = self.addChildTarget(Lock())
            self.setFollowOnTarget(Record(out, "lock", lock.rv()))
        return f"root of {mode}"


class PreAdded(Target):
    def __init__(self, out: str) -> None:
        super().__init__()
        self.out = out

    def run(self) -> int:
        return 99


def main() -> int:
    parser = argparse.ArgumentParser()
    Stack.addJobTreeOptions(parser)
    parser.add_argument("--mode", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--fixed", default="/nonexistent")
    options = parser.parse_args()
    os.makedirs(options.out, exist_ok=True)
    if options.mode == "preadded":
        root: Target = PreAdded(options.out)
        root.setFollowOnTarget(Record(options.out, "preadded", root.rv()))
    else:
        root = Root(options.mode, options.out, options.fixed)
    return Stack(root).startJobTree(options)


if __name__ == "__main__":
    sys.exit(main())
