"""A pipeline of waves: each wave is WIDTH children that sleep, then a
follow-on starts the next wave; the last one writes the total.

Used by the scheduler-outage test: targets keep being submitted and finishing
while the scheduler's controller is down.
"""

import argparse
import os
import time

from jobtree import Stack, Target


class Wave(Target):
    def __init__(self, out, wave, waves, width, sleep):
        Target.__init__(self, memory="50M")
        self.out, self.wave, self.waves, self.width, self.sleep = out, wave, waves, width, sleep

    def run(self):
        if self.wave == self.waves:
            total = sum(int(open(os.path.join(self.out, name)).read())
                        for name in os.listdir(self.out) if name.startswith("w"))
            with open(os.path.join(self.out, "total"), "w") as handle:
                handle.write(str(total))
            return
        for i in range(self.width):
            self.addChildFn(work, (self.out, self.wave, i, self.sleep), memory="50M")
        self.setFollowOnTarget(Wave(self.out, self.wave + 1, self.waves, self.width,
                                    self.sleep))


def work(out, wave, i, sleep):
    time.sleep(sleep)
    path = os.path.join(out, f"w{wave}-{i}")
    with open(path + ".tmp", "w") as handle:
        handle.write(str(wave * 100 + i))
    os.replace(path + ".tmp", path)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--waves", type=int, default=4)
    parser.add_argument("--width", type=int, default=4)
    parser.add_argument("--sleep", type=float, default=3.0)
    Stack.addJobTreeOptions(parser)
    options = parser.parse_args()
    os.makedirs(options.out, exist_ok=True)
    root = Wave(options.out, 0, options.waves, options.width, options.sleep)
    raise SystemExit(1 if Stack(root).startJobTree(options) else 0)
