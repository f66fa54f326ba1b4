"""Hardening of the job side (issue 14): a chained follow-on starts from the
process state its chain started with, a value that cannot be stored is a
lasting warning and a clear error for whoever reads it, a damaged value file
is named and fails its consumer for good, and a target object is added to the
tree only once."""

from __future__ import annotations

import json
import pickle
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import run_script

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
