"""Every error a user can cause gets one clear paragraph, never a traceback,
and never damages the tree."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import PIPELINES, run_command, run_script


def _clear(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode != 0
    return result.stderr


def test_unpicklable_root_names_the_attribute(tree_dir: Path) -> None:
    err = _clear(run_script("bad.py", "unpicklable", "--jobTree", str(tree_dir)))
    assert "jobtree: The target HoldsLock cannot be saved" in err
    assert "'guard'" in err and "lock" in err
    assert not tree_dir.exists()


def test_unpicklable_child_fails_its_parent_with_the_attribute(tree_dir: Path) -> None:
    result = run_script("bad.py", "unpicklable-child", "--jobTree", str(tree_dir),
                        "--retryCount", "0")
    assert result.returncode == 1
    assert "'guard'" in result.stderr and "UnpicklableTargetError" in result.stderr


def test_unknown_batch_system(tree_dir: Path) -> None:
    err = _clear(run_script("bad.py", "quick", "--jobTree", str(tree_dir),
                            "--batchSystem", "nosuch"))
    assert "Unknown batch system 'nosuch'" in err and "singleMachine" in err
    assert not tree_dir.exists()


def test_request_above_the_maximum(tree_dir: Path) -> None:
    err = _clear(run_script("bad.py", "huge", "--jobTree", str(tree_dir)))
    assert "asks for 100.0 TiB of memory" in err and "--maxMemory" in err
    assert not tree_dir.exists()
    err = _clear(run_script("bad.py", "quick", "--jobTree", str(tree_dir), "--maxMemory",
                            "1G", "--defaultMemory", "2G"))
    assert "the most is 1.0 GiB" in err


def test_child_above_the_maximum_fails_its_parent(tree_dir: Path) -> None:
    result = run_script("bad.py", "huge-child", "--jobTree", str(tree_dir), "--retryCount", "0")
    assert result.returncode == 1
    assert "Huge() asks for 100.0 TiB of memory" in result.stderr


@pytest.mark.parametrize("option,value,expected", [
    ("--defaultMemory", "2X", "is not a size"),
    ("--maxThreads", "0", "--maxThreads must be at least 1"),
    ("--maxJobDuration", "soon", "is not a duration"),
    ("--logLevel", "LOUD", "--logLevel must be one of"),
])
def test_bad_option_values(tree_dir: Path, option: str, value: str, expected: str) -> None:
    err = _clear(run_script("bad.py", "quick", "--jobTree", str(tree_dir), option, value))
    assert expected in err
    assert not tree_dir.exists()


def test_directory_that_is_not_a_tree(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "precious.txt").write_text("keep me")
    err = _clear(run_script("bad.py", "quick", "--jobTree", str(folder)))
    assert "is not a job tree" in err
    assert (folder / "precious.txt").read_text() == "keep me"
    assert sorted(os.listdir(folder)) == ["precious.txt"]
    err = _clear(run_command("run", "--jobTree", str(folder)))
    assert "is not a job tree" in err


def test_missing_tree_for_jobTreeRun(tmp_path: Path) -> None:
    err = _clear(run_command("run", "--jobTree", str(tmp_path / "none")))
    assert "There is no job tree" in err


def test_empty_directory_becomes_a_tree(tmp_path: Path) -> None:
    folder = tmp_path / "empty"
    folder.mkdir()
    assert run_script("bad.py", "quick", "--jobTree", str(folder)).returncode == 0
    assert (folder / "tree.db").exists()


def test_tree_held_by_a_running_master(tree_dir: Path) -> None:
    first = subprocess.Popen([sys.executable, str(PIPELINES / "bad.py"), "sleeper",
                              "--jobTree", str(tree_dir)], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 30
        while not (tree_dir / "master.json").exists() and time.time() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        err = _clear(run_script("bad.py", "sleeper", "--jobTree", str(tree_dir)))
        assert "Another jobtree master is running the tree" in err
        assert f"pid {first.pid}" in err
        err = _clear(run_command("run", "--jobTree", str(tree_dir)))
        assert f"pid {first.pid}" in err
    finally:
        first.kill()
        first.wait()


def test_different_pipeline_is_refused(tree_dir: Path) -> None:
    assert run_script("bad.py", "quick", "--jobTree", str(tree_dir)).returncode == 0
    err = _clear(run_script("parsers.py", "argparse", str(tree_dir.parent / "o"),
                            "--jobTree", str(tree_dir)))
    assert "belongs to another pipeline" in err and "jobTreeClean" in err


def test_tree_of_another_user_is_refused(tree_dir: Path) -> None:
    if os.geteuid() != 0:
        pytest.fail("this test needs root to give the tree to another user")
    assert run_script("bad.py", "quick", "--jobTree", str(tree_dir)).returncode == 0
    assert (tree_dir.stat().st_mode & 0o077) == 0  # created private to its owner
    os.chown(tree_dir, 12345, 12345)
    err = _clear(run_script("bad.py", "quick", "--jobTree", str(tree_dir)))
    assert "belongs to another user" in err
    err = _clear(run_command("run", "--jobTree", str(tree_dir)))
    assert "belongs to another user" in err


def test_tree_from_a_newer_jobtree_is_refused(tree_dir: Path) -> None:
    assert run_script("bad.py", "quick", "--jobTree", str(tree_dir)).returncode == 0
    db = sqlite3.connect(tree_dir / "tree.db")
    db.execute("UPDATE meta SET value = ? WHERE key = 'format_version'", (json.dumps(99),))
    db.commit()
    db.close()
    err = _clear(run_command("run", "--jobTree", str(tree_dir)))
    assert "format 99" in err and "newer jobtree" in err


def test_rule_breaking_targets_are_not_retried(tree_dir: Path) -> None:
    result = run_script("bad.py", "huge-child", "--jobTree", str(tree_dir), "--retryCount", "3")
    assert result.returncode == 1
    assert result.stderr.count("failed for good (attempt 1") == 1
    assert "trying again" not in result.stderr


@pytest.mark.parametrize("case", ["start", "argv"])
def test_script_without_main_guard(tmp_path: Path, case: str) -> None:
    env = dict(os.environ, CASE=case)
    extra = ["--needed", "x"] if case == "argv" else []
    result = run_script("unguarded.py", *extra, "--jobTree", str(tmp_path / "jt"),
                        "--retryCount", "0", env=env)
    assert result.returncode == 1
    assert 'under `if __name__ == "__main__":`' in result.stderr
    assert "failed for good (attempt 1" in result.stderr
