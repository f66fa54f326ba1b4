"""Hardening of the job side (issue 14): a chained follow-on starts from the
process state its chain started with, a value that cannot be stored is a
lasting warning and a clear error for whoever reads it, a damaged value file
is named and fails its consumer for good, and a target object is added to the
tree only once."""

from __future__ import annotations

import json
import pickle
import re
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import quick_cluster_config, require_scheduler, run_command, run_script
from test_status_data import SCHEMA, _errors

import jobtree
from jobtree import Target


class Plain(Target):
    def __init__(self, n: int = 0) -> None:
        super().__init__()
        self.n = n


# ------------------------------------------------ 14.14: one object, one place
def test_the_same_child_added_twice_is_refused() -> None:
    parent, child = Plain(1), Plain(2)
    parent.addChildTarget(child)
    with pytest.raises(jobtree.TargetDefinitionError,
                       match=r"already in the tree, as a child of this target"):
        parent.addChildTarget(child)
    assert parent.getChildren() == [child]


def test_a_child_cannot_also_be_the_follow_on() -> None:
    parent, child = Plain(1), Plain(2)
    parent.addChildTarget(child)
    with pytest.raises(jobtree.TargetDefinitionError, match="already in the tree"):
        parent.setFollowOnTarget(child)
    assert parent.getFollowOn() is None
    followon = Plain(3)
    parent.setFollowOnTarget(followon)
    with pytest.raises(jobtree.TargetDefinitionError, match="as the follow-on of this target"):
        parent.addChildTarget(followon)


def test_a_target_cannot_have_two_parents() -> None:
    first, second, child = Plain(1), Plain(2), Plain(3)
    first.addChildTarget(child)
    with pytest.raises(jobtree.TargetDefinitionError,
                       match=r"as a child of another target \(Plain\)"):
        second.addChildTarget(child)
    with pytest.raises(jobtree.TargetDefinitionError, match="already in the tree"):
        second.setFollowOnTarget(child)


def test_what_a_loaded_target_holds_is_known_to_be_in_the_tree() -> None:
    parent = Plain(1)
    parent.addChildTarget(Plain(2))
    parent.setFollowOnTarget(Plain(3))
    loaded = pickle.loads(pickle.dumps(parent))
    with pytest.raises(jobtree.TargetDefinitionError, match="already in the tree"):
        loaded.addChildTarget(loaded.getFollowOn())
    with pytest.raises(jobtree.TargetDefinitionError, match="already in the tree"):
        loaded.addChildTarget(loaded.getChildren()[0])


def test_the_mark_is_not_pickled_and_a_new_object_may_be_added() -> None:
    parent, child = Plain(1), Plain(2)
    parent.addChildTarget(child)
    data = pickle.dumps(child)
    assert b"_jt_added" not in data
    parent.addChildTarget(pickle.loads(data))  # a copy is a new object
    assert len(parent.getChildren()) == 2


# ------------------------------------- 14.3: a chained follow-on starts clean
def _run(tmp_path: Path, mode: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_script("hardening_worker.py", "--mode", mode, "--out", str(tmp_path / "out"),
                      "--jobTree", str(tmp_path / "tree"), "--logLevel", "INFO", *extra)


def _read(tmp_path: Path, name: str) -> dict[str, Any]:
    return dict(json.loads((tmp_path / "out" / name).read_text()))


@pytest.mark.parametrize("job_time", ["30", "0"])
def test_a_follow_on_does_not_inherit_its_predecessors_process_state(
        tmp_path: Path, job_time: str) -> None:
    done = _run(tmp_path, "state", "--jobTime", job_time)
    assert done.returncode == 0, done.stderr
    before, probe = _read(tmp_path, "before"), _read(tmp_path, "probe")
    assert (probe["pid"] == before["pid"]) == (job_time != "0")  # chained, or a job of its own
    del before["pid"], probe["pid"]
    assert probe == before
    assert before["probe"] is None and before["alarm"] == 0.0 and not before["nowhere"]


# ------------------------------- 14.4: a value that cannot be stored is a warning
def test_an_unpicklable_value_is_a_lasting_warning_and_a_clear_error(tmp_path: Path) -> None:
    done = _run(tmp_path, "lock")
    assert done.returncode == 0, done.stderr  # the tree finishes: nothing needed the value
    # the master's log says so (the worker's log is gone with its success)
    assert "run() returned a lock (_thread.lock), which cannot be pickled" in done.stderr
    tree = str(tmp_path / "tree")
    status = run_command("status", "--jobTree", tree)
    assert status.returncode == 0, status.stderr
    assert "Warnings from targets (1):" in status.stdout, status.stdout
    assert "returned a lock (_thread.lock), which cannot be pickled" in status.stdout
    document = json.loads(run_command("status", "--jobTree", tree, "--json").stdout)
    assert _errors(document, SCHEMA) == []
    assert document["warnings"]["total"] == 1
    (warning,) = document["warnings"]["latest"]
    assert warning["id"] == 1 and "ReturnValueError" in warning["text"]
    with pytest.raises(jobtree.ReturnValueError,
                       match=r"Root\(.*\)\.run\(\) returned a lock \(_thread\.lock\), which "
                             r"could not be pickled"):
        jobtree.getReturnValue(tree)


class Holder(Target):
    def __init__(self, handle: object) -> None:
        super().__init__()
        self.handle = handle


def test_a_target_holding_an_open_file_is_refused(tmp_path: Path) -> None:
    from jobtree import serialize

    path = tmp_path / "input.txt"
    path.write_text("data\n")
    for mode in ("r", "rb", "a"):
        with open(path, mode) as handle:
            with pytest.raises(jobtree.UnpicklableTargetError,
                               match=r"attribute 'handle' holds a .*open file"):
                serialize.dump_target(Holder(handle))
    # in-memory buffers are data, and pickle as such
    import io

    assert pickle.loads(serialize.dumps(io.StringIO("kept"))).read() == "kept"


# --------------------------------- 14.10: a damaged value file is named, once
def test_a_damaged_value_file_is_named_and_fails_its_consumer_for_good(tmp_path: Path) -> None:
    fixed = tmp_path / "fixed"
    done = _run(tmp_path, "corrupt", "--fixed", str(fixed), "--retryCount", "0")
    assert done.returncode == 1, done.stderr  # the consumer is not fixed yet
    tree = tmp_path / "tree"
    (value_file,) = (tree / "values").iterdir()
    value_file.write_bytes(value_file.read_bytes()[:1000])  # cut short
    with sqlite3.connect(tree / "tree.db") as db:
        (big,) = db.execute("SELECT id FROM jobs WHERE cls = 'Big'").fetchone()
    with pytest.raises(jobtree.ReturnValueError, match=re.escape(str(value_file))):
        jobtree.getReturnValue(str(tree), big)
    fixed.touch()
    again = _run(tmp_path, "corrupt", "--fixed", str(fixed), "--retryCount", "3")
    assert again.returncode == 1
    with sqlite3.connect(tree / "tree.db") as db:
        (attempt,) = db.execute("SELECT attempt FROM jobs WHERE cls = 'Consumer'").fetchone()
        (message, permanent) = db.execute(
            "SELECT message, permanent FROM failures WHERE job = (SELECT id FROM jobs "
            "WHERE cls = 'Consumer') ORDER BY attempt DESC").fetchone()
    assert attempt == 2  # the failed try of the first run, and one more: no retries
    assert permanent == 1
    assert "ReturnValueError" in message and str(value_file) in message, message
    status = run_command("status", "--jobTree", str(tree), "--verbose").stdout
    assert str(value_file) in status, status


def test_garbage_in_a_value_file_is_named(tmp_path: Path) -> None:
    from jobtree.promise import load_value

    path = tmp_path / "1.1.0"
    path.write_bytes(b"not a pickle at all")
    with pytest.raises(jobtree.ReturnValueError, match=re.escape(str(path))):
        load_value(("file", str(path)), "Big()")
    with pytest.raises(jobtree.PromiseError, match="cannot be read"):
        load_value(("file", str(tmp_path / "gone")), "Big()")


def test_a_scripts_folder_is_on_sys_path_again_for_a_chained_target(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A chained target's sys.path is put back to its job's; loading a class of
    the (already imported) script puts the script's folder back in front, so
    the script's neighbours import in the chained target as in a job of its own."""
    import sys

    from jobtree import serialize

    script = tmp_path / "pipe.py"
    script.write_text("VALUE = 7\n")
    monkeypatch.setattr(sys, "path", list(sys.path))
    assert serialize.load_script_attribute(str(script), "VALUE") == 7
    sys.path.remove(str(tmp_path))  # as ProcessState.restore() does
    assert serialize.load_script_attribute(str(script), "VALUE") == 7
    assert str(tmp_path) in sys.path


def test_a_run_that_adds_one_object_twice_fails_for_good(tmp_path: Path) -> None:
    done = _run(tmp_path, "twice", "--retryCount", "2")
    assert done.returncode == 1, done.stderr
    assert not (tmp_path / "out" / "probe").exists()  # the child never ran
    with sqlite3.connect(tmp_path / "tree" / "tree.db") as db:
        ((attempt, message),) = db.execute(
            "SELECT j.attempt, f.message FROM jobs j JOIN failures f ON f.job = j.id "
            "WHERE j.cls = 'Root'").fetchall()
    assert attempt == 1  # a broken rule is not tried again
    assert "TargetDefinitionError" in message and "already in the tree" in message, message


def test_on_a_cluster_a_chained_follow_on_starts_clean_too(tmp_path: Path) -> None:
    """The node runner's worker chains as singleMachine's fork-server child
    does, and puts the state back the same way."""
    require_scheduler("slurm")
    done = _run(tmp_path, "state", "--batchSystem", "slurm",
                "--clusterConfig", str(quick_cluster_config(tmp_path)))
    assert done.returncode == 0, done.stderr
    before, probe = _read(tmp_path, "before"), _read(tmp_path, "probe")
    assert probe.pop("pid") == before.pop("pid")  # chained in the same worker
    assert probe == before
