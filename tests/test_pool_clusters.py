"""Pool.map and promises on every cluster batch system CI has: real Slurm and
Grid Engine, and the Torque, PBS Pro and LSF fakes. The script is the user's:
it runs on this "login node", and its inputs run as scheduler jobs."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PIPELINES, quick_cluster_config, require_scheduler

FAKES = Path(__file__).resolve().parent / "fakes"
SYSTEMS = ["slurm", "gridEngine", "torque", "pbspro", "lsf"]


def _env(system: str, tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    if system in ("torque", "pbspro", "lsf"):
        env["PATH"] = f"{FAKES / system}{os.pathsep}{env['PATH']}"
        env["FAKE_PBS_DIR" if system != "lsf" else "FAKE_LSF_DIR"] = str(tmp_path / "fake")
    else:
        require_scheduler(system)
    return env


@pytest.mark.parametrize("system", SYSTEMS)
def test_pool_map_and_imap_on_a_cluster(tmp_path: Path, system: str) -> None:
    env = _env(system, tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    env["POOLMAP_OUT"] = str(out)
    done = subprocess.run(
        [sys.executable, str(PIPELINES / "poolmap.py"), "--pool", str(tmp_path / "pool"),
         "--inputs", "12", "--chunksize", "3", "--batchSystem", system, "--stream",
         "--clusterConfig", str(quick_cluster_config(tmp_path))],
        env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert printed["results"] == [{"input": x, "square": x * x} for x in range(12)]
    assert printed["streamed"] == [{"input": x, "square": x * x} for x in range(3)]
    runs = sorted(int(x) for x in (out / "runs").read_text().split())
    assert runs == sorted([*range(12), *range(3)])


@pytest.mark.parametrize("system", SYSTEMS)
def test_promised_values_reach_their_dependents_on_a_cluster(tmp_path: Path,
                                                             system: str) -> None:
    env = _env(system, tmp_path)
    mode = "large" if system == "slurm" else "sum"
    done = subprocess.run(
        [sys.executable, str(PIPELINES / "promises.py"), "--mode", mode, "--out",
         str(tmp_path / "out"), "--jobTree", str(tmp_path / "tree"), "--batchSystem", system,
         "--clusterConfig", str(quick_cluster_config(tmp_path)), "--logLevel", "WARNING"],
        env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    if mode == "sum":
        assert ast.literal_eval((tmp_path / "out" / "total").read_text()) == [0, 1, 4, 9, 16]
    else:
        assert ast.literal_eval((tmp_path / "out" / "large").read_text()) == "x" * 300_000
        assert len(list((tmp_path / "tree" / "values").iterdir())) == 1
