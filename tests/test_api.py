"""The user-facing API without running a tree: resources, options, Target."""

from __future__ import annotations

import argparse
import optparse
import os
import sys

import pytest

from jobtree import (
    BadOptionError,
    ResourceError,
    Stack,
    Target,
    TargetDefinitionError,
    getTempDirectory,
    getTempFile,
)
from jobtree.options import OPTIONS, resolve
from jobtree.resources import Resources, format_bytes, format_duration, parse_duration, parse_size


@pytest.mark.parametrize("text,expected", [
    (1024, 1024), ("2G", 2 * 1024 ** 3), ("512M", 512 * 1024 ** 2), ("1.5GiB", 3 * 1024 ** 3 // 2),
    ("100k", 100 * 1024), ("7", 7), (" 3 T ", 3 * 1024 ** 4), (None, None), (sys.maxsize, None),
])
def test_sizes(text: object, expected: int | None) -> None:
    assert parse_size(text) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["2X", "-1", "G", "", True, "1e400G"])
def test_bad_sizes(text: object) -> None:
    with pytest.raises(ResourceError):
        parse_size(text)  # type: ignore[arg-type]


@pytest.mark.parametrize("text,expected", [
    (90, 90), ("1:30:00", 5400), ("30:00", 1800), ("1-00:00:00", 86400), ("2-12:00", 216000),
    ("90m", 5400), ("2h", 7200), ("1d", 86400), ("45s", 45), ("12", 12), (None, None),
])
def test_durations(text: object, expected: float | None) -> None:
    assert parse_duration(text) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["soon", "1:2:3:4", "-5", "x-1:00"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ResourceError):
        parse_duration(text)


def test_formatting() -> None:
    assert format_bytes(2 * 1024 ** 3) == "2.0 GiB"
    assert format_bytes(10) == "10 B"
    assert format_duration(3723) == "1:02:03"
    assert format_duration(90061) == "1-1:01:01"
    assert Resources(cpu=2, memory=1024 ** 3).describe() == "2 cpu, 1.0 GiB"


class Plain(Target):
    pass


class NoInit(Target):
    def __init__(self) -> None:
        self.x = 1


def test_target_resources_and_getters() -> None:
    target = Target(time="1:00:00", memory="2G", cpu=4, disk="10G")
    assert (target.getRunTime(), target.getMemory(), target.getCpu(), target.getDisk()) == (
        3600, 2 * 1024 ** 3, 4, 10 * 1024 ** 3)
    assert Target().getMemory() is None  # the tree's default applies at run time
    child = target.addChildFn(print, args=("x",), memory="1G", cpu=2)
    assert child.getMemory() == 1024 ** 3 and child.getCpu() == 2
    command = target.addChildCommand("echo hi", time=60)
    assert target.getChildren() == [child, command]
    assert target.getChildCommands() == [("echo hi", 60)]
    follow = target.setFollowOnFn(print)
    assert target.getFollowOn() is follow
    with pytest.raises(TargetDefinitionError, match="already has a follow-on"):
        target.setFollowOnTarget(Plain())
    made = Target.makeTargetFn(print, args=(1,), memory="3G")
    assert made.getMemory() == 3 * 1024 ** 3


def test_target_misuse_is_explained() -> None:
    target = Plain()
    with pytest.raises(TargetDefinitionError, match="takes a Target"):
        target.addChildTarget("not a target")  # type: ignore[arg-type]
    with pytest.raises(TargetDefinitionError, match="does not call Target.__init__"):
        target.addChildTarget(NoInit())
    with pytest.raises(TargetDefinitionError, match="only while the target runs"):
        target.getLocalTempDir()
    with pytest.raises(TargetDefinitionError):
        Stack(NoInit())
    with pytest.raises(ResourceError):
        Target(memory="lots")


def test_descriptions() -> None:
    class Chunk(Target):
        def __init__(self, n: int) -> None:
            Target.__init__(self)
            self.n = n
            self._private = "hidden"

    assert Chunk(17)._jt_describe() == "Chunk(n=17)"
    assert Plain().addChildFn(sorted, args=([3, 1],))._jt_describe() == "sorted([3, 1])"


def test_options_on_both_parsers() -> None:
    parser = argparse.ArgumentParser()
    Stack.addJobTreeOptions(parser)
    options = parser.parse_args(["--jobTree", "x", "--maxThreads", "3", "--stats"])
    config, _ = resolve(options)
    assert config.maxThreads == 3 and config.stats and config.jobTree == os.path.abspath("x")
    assert config.defaultMemory == 1024 ** 3 and config.retryCount == 2
    oparser = optparse.OptionParser()
    Stack.addJobTreeOptions(oparser)
    ooptions, _ = oparser.parse_args(["--defaultMemory", "3G", "--logDebug"])
    config, _ = resolve(ooptions)
    assert config.defaultMemory == 3 * 1024 ** 3 and config.logLevel == "DEBUG"
    assert config.jobTree == os.path.abspath("./jobTree")
    defaults, _ = resolve(Stack.getDefaultOptions())
    assert defaults.batchSystem == "singleMachine"
    assert {o.name for o in OPTIONS} >= {
        "jobTree", "batchSystem", "maxThreads", "maxCpus", "maxMemory", "defaultMemory",
        "defaultCpu", "retryCount", "maxJobDuration", "rescueJobsFrequency", "jobTime",
        "stats", "logLevel", "logInfo", "logDebug", "logOff", "logFile", "rotatingLogging",
        "maxLogFileSize", "bigBatchSystem", "bigMemoryThreshold", "bigCpuThreshold",
        "bigMaxCpus", "bigMaxMemory"}
    with pytest.raises(BadOptionError, match="--retryCount must be a whole number"):
        resolve(argparse.Namespace(retryCount="many"))


def test_restart_keeps_stored_options_unless_given() -> None:
    stored, _ = resolve(argparse.Namespace(maxThreads=2, retryCount=5))
    again, changed = resolve(argparse.Namespace(maxThreads=4), stored.stored())
    assert again.retryCount == 5 and again.maxThreads == 4
    assert changed == ["maxThreads: 2 -> 4"]


def test_temp_helpers(tmp_path: object) -> None:
    path = getTempFile(".txt", rootDir=str(tmp_path))
    assert os.path.isfile(path) and path.endswith(".txt") and os.path.getsize(path) == 0
    folder = getTempDirectory(rootDir=str(tmp_path))
    assert os.path.isdir(folder) and os.listdir(folder) == []


def test_classic_module_paths() -> None:
    from jobtree.scriptTree.stack import Stack as ClassicStack
    from jobtree.scriptTree.target import Target as ClassicTarget

    assert ClassicStack is Stack and ClassicTarget is Target
    unset = Target(time=sys.maxsize, memory=sys.maxsize, cpu=sys.maxsize)
    assert unset.getResources() == Target().getResources()


def test_chaining_respects_budget_and_what_the_job_was_given(tmp_path: object) -> None:
    import json
    from pathlib import Path

    from jobtree.worker import Worker

    tree = Path(str(tmp_path))
    (tree / "config.json").write_text(json.dumps({
        "tree_id": "t", "environ": {}, "sys_path": [], "cwd": str(tree),
        "defaults": {"cpu": 1, "memory": 1024, "time": None, "disk": None},
        "limits": {"cpu": None, "memory": None}, "job_time": 30, "stats": False,
        "log_level": 20}))
    worker = Worker(str(tree), 1, 1)
    granted = Resources(cpu=2, memory=4096, time=100)
    assert worker._may_chain(Resources(), granted, elapsed=5)
    assert not worker._may_chain(Resources(), granted, elapsed=31)  # --jobTime spent
    assert not worker._may_chain(Resources(cpu=4), granted, elapsed=0)
    assert not worker._may_chain(Resources(memory=8192), granted, elapsed=0)
    assert worker._may_chain(Resources(time=90), granted, elapsed=5)
    assert not worker._may_chain(Resources(time=90), granted, elapsed=20)  # past the wall time
    assert worker._may_chain(Resources(time=10 ** 6), Resources(cpu=1, memory=1024), 0)
    # a hard timeLimit is the job's own: no chaining into or out of it
    assert not worker._may_chain(Resources(time_limit=60), granted, elapsed=0)
    limited = Resources(cpu=2, memory=4096, time=100, time_limit=100)
    assert not worker._may_chain(Resources(), limited, elapsed=0)
