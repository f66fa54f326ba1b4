"""Benchmark: N trivial targets on a real cluster scheduler: one scheduler job
per target, arrays with packing (the default), and pilots (``--pilots 2``).

For each mode it prints the wall time of the whole run (the script's start to
the master's exit), targets per second and the scheduler commands the master
ran (submit, status, cancel, accounting), counted from the master's DEBUG
log. A mode may have its own number of targets (``single:500``): one job per
target is slow enough that 10,000 would hold a shared cluster for a long time.

    python benchmarks/cluster.py [--batchSystem slurm] [--targets 10000]
        [--modes pilots,packed,single:500]
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
FANOUT = os.path.join(HERE, "fanout.py")
#: cluster config of each mode
MODES = {
    "single": "[cluster]\narrays = no\npack_time = 0\nsubmit_rate = 50\n",
    "packed": "[cluster]\nsubmit_rate = 50\n",
    # two pilots of 4 cores: the 8 slots the node has, as packed arrays may use
    "pilots": "[cluster]\nsubmit_rate = 50\npilot_cores = 4\n",
}
#: options of each mode
ARGS = {"pilots": ["--pilots", "2"]}


def run(mode: str, batch_system: str, targets: int, scratch: str) -> tuple[float, dict[str, int]]:
    """Runs the fan-out once; returns its wall time and the commands counted."""
    config = os.path.join(scratch, f"{mode}.ini")
    with open(config, "w", encoding="utf-8") as handle:
        handle.write(MODES[mode])
    log = os.path.join(scratch, f"{mode}.log")
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, FANOUT, "--targets", str(targets), "--batchSystem", batch_system,
         "--clusterConfig", config, "--jobTree", os.path.join(scratch, f"{mode}-tree"),
         "--logLevel", "DEBUG", "--logFile", log, *ARGS.get(mode, [])],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    elapsed = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"{mode}: the run failed; see {log}")
    counts: collections.Counter[str] = collections.Counter()
    with open(log, encoding="utf-8") as handle:
        for line in handle:
            match = re.search(r"DEBUG: running (\S+)", line)
            if match:
                counts[os.path.basename(match.group(1))] += 1
    return elapsed, dict(counts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batchSystem", default="slurm")
    parser.add_argument("--targets", type=int, default=10000)
    parser.add_argument("--modes", default="pilots,packed,single:500")
    options = parser.parse_args()
    scratch = tempfile.mkdtemp(prefix="jobtree-cluster-bench-", dir=os.getcwd())
    results = {}
    try:
        for spec in options.modes.split(","):
            mode, _, size = spec.partition(":")
            targets = int(size) if size else options.targets
            elapsed, counts = run(mode, options.batchSystem, targets, scratch)
            total = targets + 1
            results[mode] = total / elapsed
            commands = ", ".join(f"{n} {c}" for c, n in sorted(counts.items()))
            print(f"{options.batchSystem} {mode}: {total} targets in {elapsed:.1f} s "
                  f"({total / elapsed:.1f} targets/s); {sum(counts.values())} scheduler "
                  f"commands ({commands})", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    for mode in ("packed", "pilots"):
        if "single" in results and mode in results:
            print(f"{mode} runs {results[mode] / results['single']:.1f}x the targets per "
                  f"second of one job per target")
    return 0


if __name__ == "__main__":
    sys.exit(main())
