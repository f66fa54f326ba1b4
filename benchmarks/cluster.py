"""Benchmark: N trivial targets on a real cluster scheduler: one scheduler job
per target, arrays with packing (the default), and pilots (``--pilots 2``).

For each mode it prints the wall time of the whole run (the script's start to
the master's exit), targets per second and the scheduler commands the master
ran (submit, status, cancel, accounting), as the master's log says at the
end, with the CPU time the master used and how busy the machine's CPUs were
(on a small machine the pilots, their workers and the master share them). A
mode may have its own number of targets (``single:500``): one job per target
is slow enough that 10,000 would hold a shared cluster for a long time. The
two pilots share the node's cores (on Slurm, half of what ``sinfo`` says
each; elsewhere 1).

    python benchmarks/cluster.py [--batchSystem slurm] [--targets 10000]
        [--modes pilots,packed,single:500]
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import resource
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
    # two pilots sharing the node's cores (pilot_cores: see node_cores)
    "pilots": "[cluster]\nsubmit_rate = 50\npilot_cores = {cores}\n",
}
#: options of each mode
ARGS = {"pilots": ["--pilots", "2"]}


def node_cores(batch_system: str) -> int:
    """The cores each of the two pilots gets: half of what the scheduler's
    (first) node advertises on Slurm (the slots packed arrays may use too;
    8 cores give two pilots of 4), else 1."""
    if batch_system != "slurm":
        return 1
    try:
        listing = subprocess.run(["sinfo", "-h", "-o", "%c"], capture_output=True, text=True,
                                 check=True, timeout=30).stdout.split()
        return max(1, int(listing[0].rstrip("+")) // 2)
    except (OSError, subprocess.SubprocessError, IndexError, ValueError):
        return 1


def machine_ticks() -> tuple[int, int]:
    """(busy, all) clock ticks of every CPU of this machine since it booted."""
    with open("/proc/stat", encoding="ascii") as handle:
        values = [int(v) for v in handle.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle and iowait
    return sum(values) - idle, sum(values)


def run(mode: str, batch_system: str, targets: int,
        scratch: str) -> tuple[float, dict[str, int], float, float]:
    """Runs the fan-out once; returns its wall time, the commands counted,
    the CPU seconds of the script's process (the master) and the share of
    the machine's CPUs that were busy meanwhile (pilots, workers, scheduler)."""
    config = os.path.join(scratch, f"{mode}.ini")
    with open(config, "w", encoding="utf-8") as handle:
        handle.write(MODES[mode].format(cores=node_cores(batch_system)))
    log = os.path.join(scratch, f"{mode}.log")
    began = time.perf_counter()
    before, ticks = resource.getrusage(resource.RUSAGE_CHILDREN), machine_ticks()
    done = subprocess.run(
        [sys.executable, FANOUT, "--targets", str(targets), "--batchSystem", batch_system,
         "--clusterConfig", config, "--jobTree", os.path.join(scratch, f"{mode}-tree"),
         "--logLevel", "INFO", "--logFile", log, *ARGS.get(mode, [])],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    elapsed = time.perf_counter() - began
    after, ticks_after = resource.getrusage(resource.RUSAGE_CHILDREN), machine_ticks()
    master_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    busy = (ticks_after[0] - ticks[0]) / max(1, ticks_after[1] - ticks[1])
    if done.returncode != 0:
        raise SystemExit(f"{mode}: the run failed; see {log}")
    counts: collections.Counter[str] = collections.Counter()
    with open(log, encoding="utf-8") as handle:
        for line in handle:  # the master's last word on them, at INFO
            match = re.search(r": \d+ scheduler commands? in all: (.*)$", line)
            if match:
                for part in match.group(1).split(", "):
                    number, _, name = part.partition(" ")
                    counts[name] += int(number)
    return elapsed, dict(counts), master_cpu, busy


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
            elapsed, counts, master_cpu, busy = run(mode, options.batchSystem, targets,
                                                    scratch)
            total = targets + 1
            results[mode] = total / elapsed
            commands = ", ".join(f"{n} {c}" for c, n in sorted(counts.items()))
            print(f"{options.batchSystem} {mode}: {total} targets in {elapsed:.1f} s "
                  f"({total / elapsed:.1f} targets/s); {sum(counts.values())} scheduler "
                  f"commands ({commands}); the master used {master_cpu:.1f} CPU s, the "
                  f"machine's {os.cpu_count()} CPUs were {busy:.0%} busy", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    for mode in ("packed", "pilots"):
        if "single" in results and mode in results:
            print(f"{mode} runs {results[mode] / results['single']:.1f}x the targets per "
                  f"second of one job per target")
    return 0


if __name__ == "__main__":
    sys.exit(main())
