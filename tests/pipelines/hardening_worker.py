"""The job side's hardening (issue 14), one pipeline per --mode; notes go to --out.

Modes:
  state    a target changes its process (folder, environment, umask, sys.path,
           sys.argv, a signal handler, an alarm, tempfile.tempdir, the time zone,
           the locale) and sets a
           follow-on, which notes what it finds (chained, or not with --jobTime 0)
  lock     the root returns a threading.Lock(), which cannot be stored
  twice    the root adds the same child object twice
  corrupt  a child returns a large value (a file in values/), promised to the
           follow-on, which fails until --fixed exists
"""

from __future__ import annotations

import argparse
import json
import locale
import os
import signal
import sys
import tempfile
import threading
import time

from jobtree import Stack, Target


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _state() -> dict[str, object]:
    return {"pid": os.getpid(), "cwd": os.getcwd(), "probe": os.environ.get("JT_PROBE"),
            "umask": _umask(), "nowhere": "/nowhere" in sys.path,
            "argv": "--changed" in sys.argv,
            "usr1": signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL,
            "alarm": signal.getitimer(signal.ITIMER_REAL)[0],
            "tempdir": tempfile.tempdir, "tz": time.strftime("%Z"),
            "locale": locale.setlocale(locale.LC_NUMERIC)}


def _note(out: str, name: str, data: object) -> None:
    with open(os.path.join(out, name), "w", encoding="utf-8") as handle:
        json.dump(data, handle)


class Probe(Target):
    def __init__(self, out: str) -> None:
        super().__init__()
        self.out = out

    def run(self) -> None:
        _note(self.out, "probe", _state())


class Changer(Target):
    def __init__(self, out: str) -> None:
        super().__init__()
        self.out = out

    def run(self) -> None:
        _note(self.out, "before", _state())
        os.chdir("/")
        os.environ["JT_PROBE"] = "leaked"
        os.umask(0)
        sys.path.append("/nowhere")
        sys.argv.append("--changed")
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
        signal.setitimer(signal.ITIMER_REAL, 3600)
        tempfile.tempdir = "/nowhere"
        os.environ["TZ"] = "XYZ+05"
        time.tzset()
        locale.setlocale(locale.LC_NUMERIC, "C.UTF-8")
        self.setFollowOnTarget(Probe(self.out))


class Big(Target):
    def run(self) -> str:
        return "x" * 300_000


class Consumer(Target):
    def __init__(self, value: object, fixed: str) -> None:
        super().__init__()
        self.value, self.fixed = value, fixed

    def run(self) -> int:
        if not os.path.exists(self.fixed):
            raise RuntimeError("not fixed yet")
        return len(str(self.value))


class Root(Target):
    def __init__(self, mode: str, out: str, fixed: str) -> None:
        super().__init__()
        self.mode, self.out, self.fixed = mode, out, fixed

    def run(self) -> object:
        if self.mode == "state":
            self.addChildTarget(Changer(self.out))
        elif self.mode == "lock":
            return threading.Lock()
        elif self.mode == "twice":
            child = Probe(self.out)
            self.addChildTarget(child)
            self.addChildTarget(child)
        elif self.mode == "corrupt":
            big = self.addChildTarget(Big())
            self.setFollowOnTarget(Consumer(big.rv(), self.fixed))
        return None


def main() -> int:
    parser = argparse.ArgumentParser()
    Stack.addJobTreeOptions(parser)
    parser.add_argument("--mode", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--fixed", default="/nonexistent")
    options = parser.parse_args()
    os.makedirs(options.out, exist_ok=True)
    return Stack(Root(options.mode, options.out, options.fixed)).startJobTree(options)


if __name__ == "__main__":
    sys.exit(main())
