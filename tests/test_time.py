"""Time is an estimate everywhere; a hard limit is always explicit.

``time`` never stops a target: a cluster job asks for it with a margin
(``walltime_floor``, ``walltime_factor``), on every adapter never below what
the scheduler can express. ``timeLimit`` and ``--maxJobDuration`` stop a
target the same way on every batch system. Pure tests of the request and its
rendering (``tests/data/walltime/requests.golden``), then whole pipelines on
singleMachine and the real schedulers.

Set ``JOBTREE_REGOLDEN=1`` to rewrite the golden file after a deliberate change.
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PIPELINES, quick_cluster_config, require_scheduler

from jobtree import Target, serialize, tree
from jobtree.batch import CLUSTERS, BatchJobId, ExitReason, plan
from jobtree.batch.adapter import SchedulerDialect
from jobtree.batch.jobfiles import Entry, update_from_exit
from jobtree.batch.native import Request, Submission
from jobtree.batch.settings import ClusterSettings, cluster_settings
from jobtree.errors import BadOptionError, ResourceError
from jobtree.jobstore import JobStore, NewJob
from jobtree.options import default_options, resolve
from jobtree.paths import TreePaths
from jobtree.pooltree import make_chunks
from jobtree.resources import Resources
from jobtree.target import class_name

GOLDEN = Path(__file__).parent / "data" / "walltime" / "requests.golden"


def dialect(name: str) -> SchedulerDialect:
    module, cls = CLUSTERS[name]
    return getattr(importlib.import_module(f"jobtree.batch.{module}"), cls)()  # type: ignore[no-any-return]


# ------------------------------------------------------------ the request


@pytest.mark.parametrize("resources, expected", [
    (Resources(), None),                                  # no estimate: the queue's default
    (Resources(time=0), 3600),                            # the floor
    (Resources(time=1), 3600),                            # classic time=1
    (Resources(time=7.3), 3600),                          # classic time=random()*10
    (Resources(time=1300), 4500),                         # 3 x 1300 s, to the quarter hour
    (Resources(time=3600), 3 * 3600),
    (Resources(time=8 * 3600), 24 * 3600),
    (Resources(time=1, time_limit=3), 120),               # the limit and a spare minute
    (Resources(time=5, time_limit=7200), 7260),           # a limit: whole minutes only
    (Resources(time=10 ** 6, time_limit=30), 120),        # the limit, not the estimate
])
def test_the_wall_time_asked_for_an_estimate_and_a_limit(resources: Resources,
                                                          expected: float | None) -> None:
    assert plan.walltime_request(resources, ClusterSettings()) == expected


def test_the_floor_the_factor_and_the_caps() -> None:
    tight = ClusterSettings(walltime_floor=0, walltime_factor=1)
    assert plan.walltime_request(Resources(time=0), tight) == 60      # never below a minute
    assert plan.walltime_request(Resources(time=5), tight) == 60
    assert plan.walltime_request(Resources(time=61), tight) == 120    # whole minutes
    duration = ClusterSettings(max_job_duration=600)                  # the master stops it there
    assert plan.walltime_request(Resources(time=3600), duration) == 660
    assert plan.walltime_request(Resources(time_limit=3600), duration) == 660
    queue = ClusterSettings(walltime_max=86400)                       # room for packing's margin
    assert plan.walltime_request(Resources(time=10 * 3600), queue) == 86400 - 120
    packed = plan.task_walltime(Request(walltime=86400 - 120), True, queue)
    assert packed == 86400
    assert plan.walltime_request(Resources(time_limit=86400), queue) == 86400
    with pytest.raises(ResourceError, match="timeLimit 1-1:00:00 is longer than the queue"):
        plan.walltime_request(Resources(time_limit=25 * 3600), queue)


def test_a_time_limit_over_the_queue_fails_at_once_with_its_reason() -> None:
    with pytest.raises(ResourceError, match="walltime_max"):
        plan.request_for(Resources(time_limit=7200), ClusterSettings(walltime_max=3600),
                         dialect("slurm"))


# ---------------------------------------------- what each adapter writes

#: (label, resources) whose request every adapter renders, alone and packed
GOLDEN_CASES = [
    ("no time", Resources()),
    ("time=1", Resources(time=1)),
    ("time=7.3", Resources(time=7.3)),
    ("time=1300", Resources(time=1300)),
    ("time=8h", Resources(time=8 * 3600)),
    ("timeLimit=3", Resources(time=1, time_limit=3)),
    ("timeLimit=2h", Resources(time_limit=7200)),
]


def _walltime_lines(name: str, request: Request) -> str:
    job = Submission("jt", "/t/s.sh", "/t/out", 1, request, "/t")
    keys = ("--time", "h_rt", "walltime", "-W ")
    lines = [line for line in dialect(name).directives(job) if any(k in line for k in keys)]
    return " ".join(lines) or "(none)"


def _rendered_table() -> str:
    settings = ClusterSettings()
    out = ["# The wall time each adapter asks, for a target's time and timeLimit, with the",
           "# default walltime_floor (1 h) and walltime_factor (3); packed: + pack_time 60 s",
           "# + 60 s. Regenerate with JOBTREE_REGOLDEN=1 (tests/test_time.py)."]
    for label, resources in GOLDEN_CASES:
        for name in CLUSTERS:
            request = plan.request_for(resources, settings, dialect(name))
            for pack in (False, True):
                walltime = plan.task_walltime(request, pack, settings)
                shown = _walltime_lines(name, Request(walltime=walltime))
                out.append(f"{label:<12} {'packed' if pack else 'alone':<7} {name:<11} {shown}")
    return "\n".join(out) + "\n"


def test_each_adapter_renders_the_requests_as_the_golden_file() -> None:
    text = _rendered_table()
    if os.environ.get("JOBTREE_REGOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text()


@pytest.mark.parametrize("name, seconds, expected", [
    ("slurm", 1, "#SBATCH --time=00:01:00"),      # Slurm counts minutes; 0 would mean no limit
    ("slurm", 61, "#SBATCH --time=00:02:00"),
    ("slurm", 3720, "#SBATCH --time=01:02:00"),
    ("lsf", 1, "#BSUB -W 1"),                      # LSF counts minutes too
    ("lsf", 61, "#BSUB -W 2"),
    ("gridEngine", 1, "#$ -l h_rt=00:00:01"),      # seconds
    ("gridEngine", 0.2, "#$ -l h_rt=00:00:01"),
    ("torque", 0.2, "#PBS -l walltime=00:00:01"),
    ("pbspro", 90061.5, "#PBS -l walltime=25:01:02"),
])
def test_no_adapter_asks_for_less_than_it_can_express(name: str, seconds: float,
                                                       expected: str) -> None:
    assert _walltime_lines(name, Request(walltime=seconds)) == expected


# ------------------------------------------------------- the config keys


def test_the_config_keys(tmp_path: Path) -> None:
    config = tmp_path / "cluster.ini"
    config.write_text("[cluster]\nwalltime_floor = 10m\nwalltime_factor = 1.5\n"
                      "[slurm]\nwalltime_max = 2-00:00:00\n")
    options = argparse.Namespace(clusterConfig=str(config), maxJobDuration=7200.0)
    settings = cluster_settings("slurm", options, None, None, None, None, None)
    assert (settings.walltime_floor, settings.walltime_factor) == (600, 1.5)
    assert settings.walltime_max == 2 * 86400
    assert settings.max_job_duration == 7200
    defaults = ClusterSettings()
    assert (defaults.walltime_floor, defaults.walltime_factor) == (3600, 3)
    assert defaults.walltime_max is None


def test_the_example_config_sets_them() -> None:
    example = Path(__file__).resolve().parents[1] / "examples" / "cluster.ini"
    options = argparse.Namespace(clusterConfig=str(example))
    slurm = cluster_settings("slurm", options, None, None, None, None, None)
    assert (slurm.walltime_floor, slurm.walltime_factor, slurm.walltime_max) == (3600, 3, 14400)


@pytest.mark.parametrize("line", ["walltime_factor = 0.5", "walltime_factor = many",
                                  "walltime_floor = soon", "walltime_max = 0"])
def test_a_bad_key_is_refused_by_name(tmp_path: Path, line: str) -> None:
    config = tmp_path / "cluster.ini"
    config.write_text(f"[cluster]\n{line}\n")
    options = argparse.Namespace(clusterConfig=str(config))
    with pytest.raises(BadOptionError, match=line.split(" ")[0]):
        cluster_settings("slurm", options, None, None, None, None, None)


# ------------------------------------------------------- the keyword


def _child(target: Target) -> Resources:
    return target.getChildren()[-1].getResources()


def test_time_limit_is_accepted_wherever_time_is() -> None:
    target = Target(time=1, timeLimit="90m")
    assert target.getTimeLimit() == 5400 and target.getRunTime() == 1
    assert "timeLimit 1:30:00" in target.getResources().describe()
    target.addChildFn(print, time=1, timeLimit=5)
    assert _child(target).time_limit == 5
    target.addChildTargetFn(print, timeLimit="1:00")
    assert _child(target).time_limit == 60
    target.addChildCommand("true", timeLimit=7)
    assert _child(target).time_limit == 7
    assert target.setFollowOnFn(print, timeLimit=8).getTimeLimit() == 8
    assert Target.makeTargetFn(print, timeLimit=9).getTimeLimit() == 9
    chunks = make_chunks("f", "n", "map", list(range(5)), 2, {"time": 1, "timeLimit": 10})
    assert [c.getTimeLimit() for c in chunks] == [20, 20, 10]  # per input, as time is
    assert [c.getRunTime() for c in chunks] == [2, 2, 1]


@pytest.mark.parametrize("value, words", [(0, "more than 0"), ("soon", "timeLimit"),
                                          (-1, "timeLimit")])
def test_a_bad_time_limit_is_refused_at_once(value: object, words: str) -> None:
    with pytest.raises(ResourceError, match=words):
        Target(timeLimit=value)  # type: ignore[arg-type]


def test_the_time_limit_is_stored_without_a_new_column(tmp_path: Path) -> None:
    """It travels in the job's JSON ``extra`` (with the cluster-only values)."""
    namespace = default_options()
    namespace.jobTree = str(tmp_path / "jt")
    config, _ = resolve(namespace)
    paths = TreePaths(config.jobTree)
    root = Target(time=1, memory="1G", timeLimit=30)
    res = root.getResources()
    assert res.cluster_only() == {"time_limit": 30.0}
    tree.create(paths, NewJob(class_name(root), "root", res.cpu, res.memory, res.time,
                              res.disk, serialize.dump_target(root), res.cluster_only()),
                config, {"script": None, "root_class": class_name(root)})
    store = JobStore.open(paths)
    try:
        ((row, _),) = store.ready(10)
        assert row.resources() == res
    finally:
        store.close()


# -------------------------------------------------- how a stop is told


def test_the_runner_s_stop_at_the_limit_is_told_as_such() -> None:
    entry = Entry(BatchJobId("1.1"), "1.1", [], "/log", 3.0, None, True)
    update = update_from_exit(entry, {"code": -15, "reason": "time_limit", "limit": 3.0}, "7")
    assert update.reason is ExitReason.TIMEOUT
    assert "over its time limit (timeLimit=3.0s)" in (update.message or "")
    scheduler = update_from_exit(entry, {"code": -15, "reason": "timeout"}, "7")
    assert scheduler.reason is ExitReason.TIMEOUT
    assert "walltime_factor" in (scheduler.message or "")


# ------------------------------------------------------ whole pipelines


def _run(tmp_path: Path, kind: str, system: str, *more: str
         ) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, str(PIPELINES / "time_limits.py"), "--out", str(tmp_path / "out"),
            "--kind", kind, "--jobTree", str(tmp_path / "tree"), "--batchSystem", system,
            "--retryCount", "0", *more]
    if system != "singleMachine":
        args += ["--clusterConfig", str(quick_cluster_config(tmp_path))]
    return subprocess.run(args, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("system", ["singleMachine", "slurm", "gridEngine"])
def test_classic_estimates_never_stop_a_target(tmp_path: Path, system: str) -> None:
    """time=1 and time=random() for targets that run 4 s: they finish."""
    require_scheduler(system)
    done = _run(tmp_path, "estimate", system)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "one").exists() and (tmp_path / "out" / "random").exists()


def test_a_target_over_its_time_limit_is_stopped_on_single_machine(tmp_path: Path) -> None:
    """As on a cluster (tests/test_cluster_pipelines.py)."""
    done = _run(tmp_path, "limit", "singleMachine")
    assert done.returncode == 1, done.stderr
    assert (tmp_path / "out" / "limited-started").exists()
    assert not (tmp_path / "out" / "limited").exists()
    report = done.stderr[done.stderr.index("1 target failed"):]
    assert "(timeout): it ran over its time limit (timeLimit=3.0s)" in report, report


@pytest.mark.parametrize("system", ["singleMachine", "slurm"])
def test_max_job_duration_stops_a_target_the_same_everywhere(tmp_path: Path,
                                                             system: str) -> None:
    require_scheduler(system)
    # long enough for the root to start and finish on a loaded machine
    done = _run(tmp_path, "duration", system, "--maxJobDuration", "6")
    assert done.returncode == 1, done.stderr
    assert (tmp_path / "out" / "long-started").exists()
    assert not (tmp_path / "out" / "long").exists()
    report = done.stderr[done.stderr.index("1 target failed"):]
    assert "(timeout): it ran over --maxJobDuration (6.0s)" in report, report


def test_a_target_pickled_before_time_limit_existed_still_runs() -> None:
    """Its pickled Resources have no ``time_limit``: it reads as None."""
    import pickle

    old = Resources(cpu=2)
    del old.__dict__["time_limit"]  # as a pickle from before the field
    revived = pickle.loads(pickle.dumps(old))
    assert revived.time_limit is None
    assert revived.with_defaults(Resources(memory=5)) == Resources(cpu=2, memory=5)
    assert revived.cluster_only() == {}
