"""Whole pipelines on real Slurm: what a user sees when a target runs over its
time limit or asks for what the scheduler refuses, and jobTreeStatus showing
running targets by their scheduler job id."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import PIPELINES, quick_cluster_config, require_scheduler, run_command


def _run(tmp_path: Path, kind: str, retries: int = 0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(PIPELINES / "cluster_failures.py"), "--out", str(tmp_path / "out"),
         "--kind", kind, "--jobTree", str(tmp_path / "tree"), "--batchSystem", "slurm",
         "--clusterConfig", str(quick_cluster_config(tmp_path)), "--retryCount", str(retries)],
        capture_output=True, text=True, timeout=300)


def test_a_target_over_its_time_limit_is_reported_as_such(tmp_path: Path) -> None:
    require_scheduler("slurm")
    done = _run(tmp_path, "overtime")
    assert done.returncode == 1, done.stderr
    assert (tmp_path / "out" / "slow-started").exists()
    report = done.stderr[done.stderr.index("1 target failed"):]
    assert "slow" in report and "timeout" in report, report
    assert "over its time limit (timeLimit=3.0s)" in report, report
    assert "on slurm job" in report, report
    assert "jobTreeRun --jobTree" in report


def test_a_request_the_scheduler_refuses_fails_at_once_with_its_reason(tmp_path: Path) -> None:
    require_scheduler("slurm")
    done = _run(tmp_path, "refused", retries=2)
    assert done.returncode == 1, done.stderr
    assert not (tmp_path / "out" / "greedy-ran").exists()
    report = done.stderr[done.stderr.index("1 target failed"):]
    assert "slurm refused the job" in report and "sbatch" in report, report
    assert "failed; last:" in report, report  # refused for good: tried once, not 3 times


@pytest.mark.parametrize("system", ["slurm", "gridEngine"])
def test_status_shows_running_targets_by_scheduler_job(tmp_path: Path, system: str) -> None:
    require_scheduler(system)
    master = subprocess.Popen(
        [sys.executable, str(PIPELINES / "waves.py"), "--out", str(tmp_path / "out"),
         "--waves", "1", "--width", "2", "--sleep", "20", "--jobTree", str(tmp_path / "tree"),
         "--batchSystem", system, "--clusterConfig", str(quick_cluster_config(tmp_path))],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        while True:
            status = run_command("status", "--jobTree", str(tmp_path / "tree"), "--verbose")
            if status.stdout.count("running for") >= 2:
                break
            assert time.monotonic() < deadline, status.stdout + status.stderr
            time.sleep(1)
        assert status.stdout.count(f"{system} job ") >= 2, status.stdout
    finally:
        killed = run_command("kill", "--jobTree", str(tmp_path / "tree"))
        master.wait(timeout=60)
    assert killed.returncode == 0, killed.stdout + killed.stderr


@pytest.mark.parametrize("system", ["slurm", "drmaa"])
def test_kill_cancels_the_jobs_a_crashed_master_left(tmp_path: Path, system: str) -> None:
    require_scheduler(system)
    tree = tmp_path / "tree"
    master = subprocess.Popen(
        [sys.executable, str(PIPELINES / "waves.py"), "--out", str(tmp_path / "out"),
         "--waves", "1", "--width", "3", "--sleep", "60", "--jobTree", str(tree),
         "--batchSystem", system, "--clusterConfig", str(quick_cluster_config(tmp_path))],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        while run_command("status", "--jobTree", str(tree), "--verbose").stdout.count(
                "running for") < 3:
            assert time.monotonic() < deadline, "the targets did not start"
            time.sleep(1)
    finally:
        master.kill()  # the master crashes; its scheduler jobs go on
        master.wait()
    name = _job_name(tree)
    assert _listed(system, name), "the crashed master's jobs should still be on the scheduler"
    killed = run_command("kill", "--jobTree", str(tree))
    assert killed.returncode == 0, killed.stderr
    assert f"Cancelled 3 {system} jobs of the tree" in killed.stdout, killed.stdout
    deadline = time.monotonic() + 60
    while _listed(system, name):
        assert time.monotonic() < deadline, "jobTreeKill left jobs on the scheduler"
        time.sleep(0.5)
    cleaned = run_command("clean", "--jobTree", str(tree))
    assert cleaned.returncode == 0 and not tree.exists(), cleaned.stdout + cleaned.stderr


def _job_name(tree: Path) -> str:
    import json
    import sqlite3

    with sqlite3.connect(tree / "tree.db") as db:
        (value,) = db.execute("SELECT value FROM meta WHERE key = 'tree_id'").fetchone()
    return f"jt-{json.loads(value)[:10]}"


def _listed(system: str, name: str) -> bool:
    """Whether the scheduler behind ``system`` still lists a job named ``name``."""
    if system == "slurm":
        return bool(_queued(name))
    out = subprocess.run(["qstat", "-xml"], capture_output=True, text=True, timeout=60).stdout
    return f"<JB_name>{name}</JB_name>" in out  # DRMAA here is Grid Engine's


def _queued(name: str) -> list[str]:
    out = subprocess.run(["squeue", "--noheader", f"--name={name}", "--format=%i %T"],
                         capture_output=True, text=True, timeout=60).stdout
    return [line for line in out.splitlines() if line.strip()]


@pytest.mark.parametrize("system", ["slurm", "gridEngine"])
def test_a_tree_moves_from_this_machine_to_a_cluster(tmp_path: Path, system: str) -> None:
    """Started on singleMachine and stopped midway, the tree is continued on a
    cluster with jobTreeRun --batchSystem, and finishes with the same result."""
    require_scheduler(system)
    tree, out = tmp_path / "tree", tmp_path / "out"
    args = [sys.executable, str(PIPELINES / "crashtree.py"), "--base", str(out), "--depth", "3",
            "--memory", "200M", "--jobTree", str(tree), "--maxThreads", "1"]
    master = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not (out / "out").exists() or len(list((out / "out").iterdir())) < 3:
        assert master.poll() is None, "the tree finished before it could be moved"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    master.kill()
    master.wait()
    moved = run_command("run", "--jobTree", str(tree), "--batchSystem", system,
                        "--clusterConfig", str(quick_cluster_config(tmp_path)))
    assert moved.returncode == 0, moved.stderr
    assert "batchSystem: 'singleMachine' -> " in moved.stderr, moved.stderr
    assert (out / "out" / "r").read_text() == str(4 ** 3 * len("r-0-0-0"))


def test_a_launch_the_scheduler_lost_is_cancelled_and_submitted_again(tmp_path: Path) -> None:
    """The fake Torque lists the first job as running but never runs its
    script (a node daemon that died as it started). After launch_grace the
    job is cancelled and its target submitted again, without a try counted."""
    import json
    import os
    import sqlite3
    import threading

    fakes = Path(__file__).resolve().parent / "fakes"
    state = tmp_path / "fake"
    state.mkdir()
    (state / "lose").touch()
    env = {**os.environ, "PATH": f"{fakes / 'torque'}{os.pathsep}{os.environ['PATH']}",
           "FAKE_PBS_DIR": str(state)}
    config = tmp_path / "cluster.ini"
    config.write_text("[cluster]\npoll_interval = 1\nexit_grace = 3\nlaunch_grace = 4\n")
    def lose_the_first_launch_only() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                jobs = json.loads((state / "queue.json").read_text())["jobs"]
            except (OSError, ValueError, KeyError):
                jobs = {}
            if any(t["state"] != "Q" for job in jobs.values() for t in job["tasks"].values()):
                break
            time.sleep(0.05)
        (state / "lose").unlink()

    threading.Thread(target=lose_the_first_launch_only, daemon=True).start()
    done = subprocess.run(
        [sys.executable, str(PIPELINES / "promises.py"), "--mode", "parent", "--out",
         str(tmp_path / "out"), "--jobTree", str(tmp_path / "tree"), "--batchSystem", "torque",
         "--clusterConfig", str(config), "--retryCount", "0"],
        env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "job script never started: a launch the scheduler lost" in done.stderr, done.stderr
    assert (tmp_path / "out" / "parent").read_text() == "'root of parent'\n"
    with sqlite3.connect(tmp_path / "tree" / "tree.db") as db:
        (attempt,) = db.execute("SELECT attempt FROM jobs WHERE id = 1").fetchone()
    assert attempt == 1


@pytest.mark.parametrize("system", ["slurm", "gridEngine"])
def test_tiny_memory_requests_still_run(tmp_path: Path, system: str) -> None:
    """A classic script whose targets ask ``memory=1000000`` (bytes) and less
    finishes, not one try lost: the scheduler is asked at least the memory
    floor (on Grid Engine, h_vmem with the virtual-memory allowance; on
    Slurm, --mem with memory enforced). The index keeps what the targets asked."""
    import sqlite3

    require_scheduler(system)
    out, tree = tmp_path / "out", tmp_path / "tree"
    done = subprocess.run(
        [sys.executable, str(PIPELINES / "tiny.py"), "--out", str(out), "--width", "20",
         "--jobTree", str(tree), "--batchSystem", system, "--retryCount", "0",
         "--clusterConfig", str(quick_cluster_config(tmp_path))],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (out / "total").read_text() == str(sum(range(20)))
    with sqlite3.connect(tree / "tree.db") as db:
        asked = sorted(m for (m,) in db.execute("SELECT memory FROM jobs"))
    assert asked[-1] == 1000000 and asked[0] == 1, asked
