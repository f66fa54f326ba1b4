"""Preemption and requeue on real Slurm: ``scontrol requeue`` of a packing
array task while it runs a target loses no target, runs none twice at once,
and counts no try (the pipeline runs with --retryCount 0)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from conftest import PIPELINES, require_scheduler

WIDTH = 6


def _wait(what: str, check: object, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"waited {timeout} s for {what}"
        time.sleep(0.2)


def _runs(out: Path, i: int) -> list[list[str]]:
    path = out / f"{i}.runs"
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def test_a_requeued_packing_task_loses_nothing_and_runs_nothing_twice(tmp_path: Path) -> None:
    require_scheduler("slurm")
    out = tmp_path / "out"
    config = tmp_path / "cluster.ini"
    # two packing tasks for the six targets: each runs three, one after another
    config.write_text("[cluster]\npoll_interval = 1\nexit_grace = 3\nsubmit_rate = 50\n"
                      "command_timeout = 30\nmax_jobs = 2\n")
    master = subprocess.Popen(
        [sys.executable, str(PIPELINES / "requeued.py"), "--out", str(out), "--width",
         str(WIDTH), "--jobTree", str(tmp_path / "tree"), "--batchSystem", "slurm",
         "--clusterConfig", str(config), "--retryCount", "0", "--logLevel", "WARNING"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait("target 0 to start", lambda: _runs(out, 0))
        job = _runs(out, 0)[0][2]
        assert "_" in job, f"target 0 ran in {job}, not an array task"
        requeue = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
        assert requeue.returncode == 0, requeue.stderr
        (out / "go").touch()
        # skip Slurm's delay before a requeued job may start again, so that
        # the task's second incarnation runs too
        _wait(f"{job} to be pending again", lambda: subprocess.run(
            ["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True,
            text=True).stdout.strip() in ("PENDING", ""))
        subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"],
                       capture_output=True)
        _, stderr = master.communicate(timeout=300)
    finally:
        if master.poll() is None:
            master.kill()
            master.wait()
    assert master.returncode == 0, stderr
    assert not list(out.glob("*.overlap")), "a target ran twice at once"
    for i in range(WIDTH):
        runs = _runs(out, i)
        assert runs and runs[-1][0] == "end", (i, runs)  # every target ran to its end ...
        ends = [r for r in runs if r[0] == "end"]
        assert len(ends) == 1, (i, runs)  # ... once
    first, *again = _runs(out, 0)
    assert first[2] == job and again[0][0] == "start", again  # stopped by the requeue, run again
    assert "no fault of its own (preempted; scheduler job" in stderr, stderr
    assert "without counting a try" in stderr
