"""A tree survives its scheduler's controller being down for 30 s mid-run
(real Slurm, stopped with its jobs kept and started again): the master waits,
says so in its log, fails no target, and the tree finishes correctly."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from conftest import PIPELINES, quick_cluster_config, require_scheduler

CLUSTER = Path(__file__).resolve().parents[2] / "shared" / "cluster"
#: seconds the controller stays down
OUTAGE = 30.0


def _markers(folder: Path, suffix: str) -> int:
    """How many of the cluster base's markers of one kind are in ``folder``."""
    try:
        return sum(1 for name in os.listdir(folder) if name.endswith(suffix))
    except FileNotFoundError:
        return 0


def _slurm_cpus() -> str:
    out = subprocess.run(["sinfo", "--noheader", "--format=%c"], capture_output=True,
                         text=True, timeout=30).stdout.split()
    return out[0] if out else "2"


def _slurm_options() -> dict[str, str]:
    """The options Slurm was started with, for starting it again the same way
    (the tests after this one rely on its memory being enforced as in CI)."""
    try:
        config = Path("/etc/slurm/slurm.conf").read_text()
    except OSError:
        config = ""
    return {"SLURM_CPUS": _slurm_cpus(),
            "SLURM_ENFORCE_MEMORY": "1" if "OverMemoryKill" in config else "0"}


def test_tree_survives_the_slurm_controller_being_down(tmp_path: Path) -> None:
    require_scheduler("slurm")
    assert (CLUSTER / "stop-slurm.sh").exists(), f"no cluster scripts in {CLUSTER}"
    started_with = _slurm_options()
    out, log = tmp_path / "out", tmp_path / "master.log"
    waves, width = 4, 4
    master = subprocess.Popen(
        [sys.executable, str(PIPELINES / "waves.py"), "--out", str(out),
         "--waves", str(waves), "--width", str(width), "--sleep", "3",
         "--jobTree", str(tmp_path / "tree"), "--batchSystem", "slurm",
         "--clusterConfig", str(quick_cluster_config(tmp_path)), "--logFile", str(log)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # stop the controller while a later wave's targets all run and the master
        # has nothing to submit: a job the controller starts just as slurmd stops
        # is lost by Slurm itself (it stays RUNNING with nothing behind it)
        exits = tmp_path / "tree" / "batch" / "main-slurm" / "exit"
        deadline = time.monotonic() + 120
        while not (out.exists() and any(p.name.startswith("w0-") for p in out.iterdir())
                   and _markers(exits, ".run") == width and _markers(exits, ".exit") == 0):
            assert master.poll() is None, f"the master ended early: {log.read_text()}"
            assert time.monotonic() < deadline, "no wave ran within 120 s"
            time.sleep(0.05)
        env = dict(os.environ, SLURM_KEEP_JOBS="1")
        subprocess.run(["bash", str(CLUSTER / "stop-slurm.sh")], env=env, check=True,
                       timeout=120, capture_output=True)
        down_at = time.monotonic()
        time.sleep(OUTAGE)
        assert master.poll() is None, f"the master gave up while Slurm was down:\n{log.read_text()}"
        subprocess.run(["bash", str(CLUSTER / "start-slurm.sh")], check=True, timeout=180,
                       env=dict(os.environ, **started_with), capture_output=True)
        assert time.monotonic() - down_at >= OUTAGE
        assert master.wait(timeout=600) == 0, log.read_text()
    finally:
        if master.poll() is None:
            master.kill()
        subprocess.run(["bash", str(CLUSTER / "start-slurm.sh")], timeout=180,
                       env=dict(os.environ, **started_with), capture_output=True)
    text = log.read_text()
    assert "cannot reach slurm" in text, text
    assert "answers again" in text, text
    # no target failed, not even once, for the outage
    assert "failed (attempt" not in text and "failed for good" not in text, text
    expected = sum(w * 100 + i for w in range(waves) for i in range(width))
    assert (out / "total").read_text() == str(expected)
