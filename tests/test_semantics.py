"""The jobTree model, end to end on singleMachine: ordering of follow-ons,
global and local temp dirs, function targets and their resources."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_script


def _events(folder: Path) -> dict[tuple[str, str], list[tuple[float, float, list[str]]]]:
    found: dict[tuple[str, str], list[tuple[float, float, list[str]]]] = {}
    for name in os.listdir(folder):
        path, kind, _ = name.split(".")
        start, end, *extra = (folder / name).read_text().split()
        found.setdefault((path, kind), []).append((float(start), float(end), extra))
    return found


def test_follow_ons_run_after_all_descendants(tmp_path: Path) -> None:
    events = tmp_path / "events"
    done = run_script("tree.py", "--depth", "3", "--fanout", "3", "--events", str(events),
                      "--jobTree", str(tmp_path / "jt"), "--maxThreads", "2")
    assert done.returncode == 0, done.stderr
    found = _events(events)
    nodes = {p for p, k in found if k == "node"}
    assert len(nodes) == 1 + 3 + 9 + 27
    follows = {p for p, k in found if k == "follow"}
    assert follows == {p for p in nodes if len(p) < 1 + 2 * 3}
    for path in follows:
        follow_start = min(s for s, _, _ in found[(path, "follow")])
        descendants = [(p, k) for (p, k) in found if p.startswith(path + "c")]
        assert descendants
        for key in descendants:
            for _, end, _ in found[key]:
                assert follow_start >= end, f"{path} follow-on started before {key} ended"
        # and after the target itself
        assert follow_start >= max(e for _, e, _ in found[(path, "node")])


def test_temp_dirs_are_removed(tmp_path: Path) -> None:
    events = tmp_path / "events"
    done = run_script("tree.py", "--depth", "2", "--fanout", "2", "--events", str(events),
                      "--jobTree", str(tmp_path / "jt"))
    assert done.returncode == 0, done.stderr
    found = _events(events)
    local_dirs = {extra[0] for (p, k), runs in found.items() if k == "node"
                  for _, _, extra in runs}
    global_dirs = {extra[1] for (p, k), runs in found.items() if k == "node"
                   for _, _, extra in runs}
    assert len(local_dirs) == len([k for k in found if k[1] == "node"])
    assert all(not os.path.exists(d) for d in local_dirs)
    assert all(not os.path.exists(d) for d in global_dirs)
    # a follow-on shares its founder's global temp dir
    for (path, kind), runs in found.items():
        if kind == "follow":
            assert runs[0][2][0] == found[(path, "node")][0][2][1]
    assert os.listdir(tmp_path / "jt" / "tmp" / "global") == []


def test_local_temp_dir_removed_when_target_raises(tmp_path: Path) -> None:
    record = tmp_path / "record.txt"
    done = run_script("raising.py", "--record", str(record), "--jobTree", str(tmp_path / "jt"),
                      "--retryCount", "0")
    assert done.returncode == 1
    local = record.read_text().strip()
    assert local and not os.path.exists(local)
    assert "ValueError: deliberate failure" in done.stderr


def test_function_targets_honour_resources(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = run_script("functions.py", "--out", str(out), "--jobTree", str(tmp_path / "jt"))
    assert done.returncode == 0, done.stderr
    seen = dict(line.split("=") for line in (out / "resources.txt").read_text().split())
    assert seen["child_memory"] == str(300 * 1024 ** 2)
    assert seen["child_cpu"] == "2"
    assert seen["follow_memory"] == str(200 * 1024 ** 2)
    assert (out / "sum.txt").read_text() == "6"
    assert "child says hello" in done.stderr  # logToMaster reaches the master's log
    db = sqlite3.connect(tmp_path / "jt" / "tree.db")
    rows = db.execute("SELECT memory, cpu FROM jobs WHERE cls LIKE '%FunctionWrapping%'").fetchall()
    assert (300 * 1024 ** 2, 2) in rows


@pytest.mark.parametrize("parser", ["argparse", "optparse"])
def test_argparse_and_optparse_scripts(tmp_path: Path, parser: str) -> None:
    out = tmp_path / "out.txt"
    done = run_script("parsers.py", parser, str(out), "--jobTree", str(tmp_path / "jt"),
                      "--maxThreads", "2", "--logLevel", "WARNING")
    assert done.returncode == 0, done.stderr
    assert out.read_text() == "hello from " + parser


def test_second_follow_on_is_an_error(tmp_path: Path) -> None:
    done = run_script("raising.py", "--record", str(tmp_path / "r"), "--twoFollowOns",
                      "--jobTree", str(tmp_path / "jt"), "--retryCount", "0")
    assert done.returncode == 1
    assert "already has a follow-on" in done.stderr


def test_same_script_again_continues_finished_tree(tmp_path: Path) -> None:
    events = tmp_path / "events"
    args = ("--depth", "1", "--fanout", "2", "--events", str(events),
            "--jobTree", str(tmp_path / "jt"))
    assert run_script("tree.py", *args).returncode == 0
    count = len(os.listdir(events))
    again = run_script("tree.py", *args)
    assert again.returncode == 0, again.stderr
    assert len(os.listdir(events)) == count  # nothing ran twice


def test_same_script_with_other_arguments_warns(tmp_path: Path) -> None:
    args = ("--events", str(tmp_path / "events"), "--jobTree", str(tmp_path / "jt"))
    assert run_script("tree.py", "--depth", "1", "--fanout", "2", *args).returncode == 0
    again = run_script("tree.py", "--depth", "1", "--fanout", "3", *args)
    assert again.returncode == 0
    assert "the root given now, Node(path='r', depth=1, fanout=3" in again.stderr
    assert "is ignored" in again.stderr and "jobTreeClean" in again.stderr


def test_pipeline_run_as_a_module(tmp_path: Path) -> None:
    package = tmp_path / "pipe"
    package.mkdir()
    (package / "__init__.py").write_text("")
    source = (Path(__file__).parent / "pipelines" / "parsers.py").read_text()
    (package / "hello.py").write_text(source)
    out = tmp_path / "out.txt"
    done = subprocess.run([sys.executable, "-m", "pipe.hello", "argparse", str(out),
                           "--jobTree", str(tmp_path / "jt")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert out.read_text() == "hello from argparse"
    db = sqlite3.connect(tmp_path / "jt" / "tree.db")
    assert sorted(c for (c,) in db.execute("SELECT cls FROM jobs")) == [
        "pipe.hello.Hello", "pipe.hello.Write"]


def test_command_children_and_functions_pickled_by_value(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = run_script("commands.py", "--out", str(out), "--jobTree", str(tmp_path / "jt"))
    assert done.returncode == 0, done.stderr
    assert (out / "command.txt").read_text() == "from-shell\n"
    assert (out / "lambda.txt").read_text() == "lambda"
    assert (out / "closure.txt").read_text() == "closure"


def test_failing_command_child(tmp_path: Path) -> None:
    env = dict(os.environ, COMMAND_FAILS="1")
    done = run_script("commands.py", "--out", str(tmp_path / "out"), "--jobTree",
                      str(tmp_path / "jt"), "--retryCount", "0", env=env)
    assert done.returncode == 1
    assert "The command `exit 7` exited with status 7" in done.stderr
