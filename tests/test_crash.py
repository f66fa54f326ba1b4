"""The crash test: SIGKILL the master at random moments, continue with
jobTreeRun each time, and check that the finished tree equals a clean run
and that no target's children were committed by two executions of it."""

from __future__ import annotations

import collections
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import PIPELINES, quick_cluster_config, require_scheduler

from jobtree import graph
from jobtree.batch import runner
from jobtree.jobstore import JobStore
from jobtree.paths import TreePaths, local_temp_root

# CI runs 25 kills of a 426-target tree; for a longer soak, e.g.
# JOBTREE_CRASH_KILLS=200 JOBTREE_CRASH_DEPTH=5 (1,706 targets)
KILLS = int(os.environ.get("JOBTREE_CRASH_KILLS", "25"))
DEPTH = int(os.environ.get("JOBTREE_CRASH_DEPTH", "4"))


def _start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as handle:
        return subprocess.Popen([sys.executable, *args], stdout=subprocess.DEVNULL,
                                stderr=handle)


def _outputs(base: Path) -> dict[str, str]:
    return {name: (base / "out" / name).read_text() for name in os.listdir(base / "out")
            if ".tmp" not in name}


def _assert_sound(tree: Path) -> None:
    """The index, as the killed master left it, satisfies the tree's invariants."""
    if not (tree / "tree.db").exists():
        return
    store = JobStore.open(TreePaths(str(tree)), readonly=True)
    try:
        assert graph.check(store) == []
    finally:
        store.close()


def _no_workers_left(tree: Path) -> bool:
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if str(tree).encode() in cmdline and b"jobtree.worker" in cmdline:
            return False
    return True


#: the batch systems the crash test runs on: (name, kills, longest wait before a kill)
SYSTEMS = [("singleMachine", KILLS, 1.2),
           ("slurm", min(KILLS, 10), 2.0),
           ("gridEngine", min(KILLS, 10), 2.0),
           ("drmaa", min(KILLS, 5), 2.0),  # the base is gridEngine's: fewer kills
           # pilots: a new master closes the old one's queue and adopts its pilots' targets
           ("slurm-pilots", min(KILLS, 5), 2.0),
           ("gridEngine-pilots", min(KILLS, 5), 2.0)]


@pytest.mark.parametrize("system,kills_wanted,longest", SYSTEMS, ids=[s[0] for s in SYSTEMS])
def test_master_killed_at_random_moments(tmp_path: Path, system: str, kills_wanted: int,
                                         longest: float) -> None:
    scheduler, _, pilots = system.partition("-")
    options = ["--batchSystem", scheduler] + (["--pilots", "2"] if pilots else [])
    if system != "singleMachine":
        require_scheduler(scheduler)
        # Grid Engine's memory limit is on virtual memory: Python needs more than 20M
        options += ["--clusterConfig", str(quick_cluster_config(tmp_path)), "--memory", "200M"]
    script = str(PIPELINES / "crashtree.py")
    clean = tmp_path / "clean"
    done = subprocess.run([sys.executable, script, "--base", str(clean), "--jobTree",
                           str(tmp_path / "clean-tree"), "--logLevel", "WARNING",
                           "--depth", str(DEPTH)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    expected = _outputs(clean)
    assert len(expected) == sum(4 ** level for level in range(DEPTH + 1))

    base = tmp_path / "crashed"
    tree = tmp_path / "tree"
    rng = random.Random(1234)
    first = [script, "--base", str(base), "--jobTree", str(tree), "--logLevel", "WARNING",
             "--depth", str(DEPTH), *options]
    again = ["-m", "jobtree.cli.run", "--jobTree", str(tree)]
    kills = 0
    finished = False
    for round_ in range(kills_wanted + 50):
        log = tmp_path / "master.log"
        process = _start(first if round_ == 0 or not tree.exists() else again, log)
        if kills < kills_wanted:
            try:
                process.wait(timeout=rng.uniform(0.05, longest))
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGKILL)
                process.wait()
                kills += 1
                _assert_sound(tree)
                continue
        else:
            process.wait(timeout=300)
        if process.returncode == 0:
            finished = True
            break
        assert process.returncode in (0, -signal.SIGKILL), (process.returncode,
                                                            log.read_text()[-3000:])
    assert finished, "the tree never finished"
    assert kills >= min(kills_wanted, 10), f"only {kills} kills landed before the tree finished"
    assert _outputs(base) == expected

    # every target's children were committed by one execution of it
    creators: dict[str, set[str]] = collections.defaultdict(set)
    for name in os.listdir(base / "runs"):
        if ".tmp" in name:  # a write cut short by a kill
            continue
        path, _ = name.split(".")
        if path == "r":
            continue
        parent = path.rsplit("-", 1)[0]
        creators[parent].add((base / "runs" / name).read_text())
    assert len(creators) == sum(4 ** level for level in range(DEPTH))
    for parent, executions in creators.items():
        assert len(executions) == 1, f"children of {parent} came from {executions}"
    deadline = time.time() + 10
    while not _no_workers_left(tree) and time.time() < deadline:
        time.sleep(0.2)
    assert _no_workers_left(tree)
    _assert_sound(tree)
    store = JobStore.open(TreePaths(str(tree)), readonly=True)
    tree_id = store.meta()["tree_id"]
    store.close()
    # the local temp dirs of workers killed with their master are gone
    root = local_temp_root(tree_id)
    if system != "singleMachine" and os.path.isdir(root):
        # on a cluster a job cancelled with SIGKILL (an orphan of a killed master)
        # leaves its dir to the next job on its node, which removes it once stale:
        # none may still be held by a live worker
        old = time.time() - 2 * runner.STALE_AFTER
        for name in os.listdir(root):
            os.utime(os.path.join(root, name), (old, old))
        runner.clean_stale(root)
    assert not os.path.exists(root) or not os.listdir(root)
    assert os.listdir(tree / "tmp" / "global") == []
    print(f"crash test on {system}: the tree survived {kills} master kills")
