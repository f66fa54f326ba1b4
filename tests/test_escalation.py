"""Tries after a resource failure ask for more: the pure escalation function,
the master applying it (against a fake batch system), the index keeping each
try's request (and its upgrade from format 4), and a target that really runs
out of memory on singleMachine and finishes by asking for more."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from pathlib import Path

import pytest
from conftest import (memory_cgroups, quick_cluster_config, require_scheduler, run_command,
                      run_script)
from test_master import Clock, FakeBatch, Root, _make_tree
from test_status_data import SCHEMA, _errors

from jobtree import Target, jobstore
from jobtree.batch import BatchJobId, ExitReason, JobSpec, Update
from jobtree.escalation import (Caps, LastTry, describe_try, from_json, last_try, next_request,
                                raised_json)
from jobtree.errors import ResourceError
from jobtree.jobstore import JobStore
from jobtree.master import Master
from jobtree.placement import failed_try_asked, place_try, retry_caps, try_request
from jobtree.resources import Resources

MIB = 1024 ** 2
GIB = 1024 ** 3
OWN = Resources(cpu=1, memory=2 * GIB, time=600.0, memory_retry_factor=2.0,
                time_retry_factor=2.0)


def after(reason: str, asked: Resources = OWN, hard_limit: bool = False,
          own: Resources = OWN, caps: Caps = Caps()) -> Resources:
    return next_request(own, LastTry(1, reason, asked, hard_limit), caps)


# ------------------------------------------------------------ the pure function
def test_the_first_try_asks_the_targets_own_request() -> None:
    assert next_request(OWN, None, Caps(memory=GIB)) == OWN


def test_out_of_memory_doubles_the_memory_only() -> None:
    request = after("out of memory")
    assert request.memory == 4 * GIB and request.time == 600 and request.cpu == 1


def test_over_the_wall_time_doubles_the_estimate_only() -> None:
    request = after("timeout")
    assert request.time == 1200 and request.memory == 2 * GIB


@pytest.mark.parametrize("reason", ["failed", "killed", "lost", "preempted", "node failure",
                                    "too big"])
def test_any_other_reason_asks_what_the_last_try_asked(reason: str) -> None:
    assert after(reason) == OWN
    raised = dataclasses.replace(OWN, memory=8 * GIB, time=2400.0)
    # a try never asks for less than the one before it
    assert after(reason, asked=raised) == dataclasses.replace(OWN, memory=8 * GIB, time=2400.0)


def test_hard_limits_never_grow_the_time() -> None:
    assert after("timeout", hard_limit=True) == OWN  # --maxJobDuration
    limited = dataclasses.replace(OWN, time_limit=900.0)  # timeLimit
    assert after("timeout", asked=limited, own=limited) == limited


def test_the_caps() -> None:
    assert after("out of memory", caps=Caps(memory=3 * GIB)).memory == 3 * GIB
    assert after("timeout", caps=Caps(time=1000.0)).time == 1000
    # already over the cap: never less than asked (it fails as too big instead)
    assert after("out of memory", caps=Caps(memory=GIB)).memory == 2 * GIB


def test_the_targets_factors_and_one_disables() -> None:
    three = dataclasses.replace(OWN, memory_retry_factor=3.0, time_retry_factor=1.5)
    assert after("out of memory", own=three).memory == 6 * GIB
    assert after("timeout", own=three).time == 900
    off = dataclasses.replace(OWN, memory_retry_factor=1.0, time_retry_factor=1.0)
    assert after("out of memory", own=off) == off and after("timeout", own=off) == off


def test_memory_grows_to_whole_mebibytes_and_nothing_without_a_request() -> None:
    odd = dataclasses.replace(OWN, memory=1000001)
    assert after("out of memory", asked=odd, own=odd).memory == 2 * MIB
    none = dataclasses.replace(OWN, memory=None, time=None)
    assert after("out of memory", asked=none, own=none) == none
    assert after("timeout", asked=none, own=none) == none


def test_factors_are_checked() -> None:
    assert Resources.parse(memory_retry_factor=3).memory_retry_factor == 3
    for bad in (0.5, "x", True, float("inf")):
        with pytest.raises(ResourceError, match="memoryRetryFactor must be a number of at "):
            Resources.parse(memory_retry_factor=bad)


def test_what_the_index_keeps_of_each_try() -> None:
    own = Resources(cpu=1, memory=150 * MIB, time=5.0)
    failed = failed_try_asked(own, None, False)
    assert json.loads(failed) == {"cpu": 1, "memory": 150 * MIB, "time": 5.0}
    request, raised = try_request(own, (1, "out of memory", failed), Caps())
    assert request.memory == 300 * MIB and json.loads(raised or "") == {"memory": 300 * MIB}
    assert from_json(raised, own) == request
    assert try_request(own, None, Caps()) == (own, None)
    assert raised_json(own, own) is None
    # a stop at timeLimit or --maxJobDuration is kept as a hard limit
    limited = dataclasses.replace(own, time_limit=10.0)
    assert json.loads(failed_try_asked(limited, None, False))["hard_limit"] is True
    assert json.loads(failed_try_asked(own, None, True))["hard_limit"] is True
    # an index of format 4 does not say what the try asked: the target's own request
    assert last_try(1, "out of memory", None) is None
    assert try_request(own, (1, "out of memory", None), Caps())[0].memory == 300 * MIB
    assert try_request(own, (1, "timeout", None), Caps())[0] == own


def test_a_try_as_people_read_it() -> None:
    before = LastTry(1, "out of memory", Resources(cpu=1, memory=2 * GIB, time=60.0))
    assert describe_try(2, Resources(memory=4 * GIB), before) == \
        "try 2 asked 4.0 GiB, after out of memory with 2.0 GiB"
    late = LastTry(1, "timeout", Resources(memory=GIB, time=60.0))
    assert describe_try(2, Resources(memory=GIB, time=120.0), late) == \
        "try 2 asked 1.0 GiB and 0:02:00, after timeout with 0:01:00"


# ----------------------------------------------------------- the master applies it
class Failing(FakeBatch):
    """Ends the first tries of the root job with the given reasons."""

    def __init__(self, clock: Clock, reasons: list[tuple[ExitReason, str | None]]) -> None:
        super().__init__(clock)
        self.reasons = reasons
        self.specs: list[JobSpec] = []

    def issue(self, spec: JobSpec) -> BatchJobId:
        self.specs.append(spec)
        return super().issue(spec)

    def next_update(self, timeout: float) -> Update | None:
        for batch_id, spec in list(self.queue.items()):
            if spec.job_id == 1 and self.reasons:
                del self.queue[batch_id]
                reason, message = self.reasons.pop(0)
                return Update(batch_id, 1, reason, 1.0, message=message)
        return super().next_update(timeout)


def _run(tmp_path: Path, reasons: list[tuple[ExitReason, str | None]],
         **options: object) -> tuple[Master, list[Resources]]:
    paths, config = _make_tree(tmp_path, Root(0), **options)
    clock = Clock()
    batch = Failing(clock, reasons)
    master = Master(JobStore.open(paths), config, {"main": batch}, clock=clock)
    master.run()
    return master, [s.resources for s in batch.specs if s.job_id == 1]


def test_the_master_asks_more_after_memory_then_time(tmp_path: Path) -> None:
    master, asked = _run(tmp_path, [(ExitReason.MEMLIMIT, None), (ExitReason.TIMEOUT, None),
                                    (ExitReason.FAILED, None)],
                         defaultMemory="1G", defaultTime=60, retryCount=3)
    assert [(r.memory, r.time) for r in asked] == [
        (GIB, 60), (2 * GIB, 60), (2 * GIB, 120), (2 * GIB, 120)]
    rows = master.store._db.execute(
        "SELECT attempt, reason, asked FROM failures ORDER BY attempt").fetchall()
    assert [(a, r, json.loads(s)["memory"], json.loads(s)["time"]) for a, r, s in rows] == [
        (1, "out of memory", GIB, 60), (2, "timeout", 2 * GIB, 60),
        (3, "failed", 2 * GIB, 120)]
    assert json.loads(master.store.job(1).asked or "") == {"memory": 2 * GIB, "time": 120}


class Floored(Failing):
    """Gives every job at least 256 MiB, as a cluster's memory_floor does."""

    def granted(self, resources: Resources) -> Resources:
        return dataclasses.replace(resources, memory=max(resources.memory or 0, 256 * MIB))


def test_a_try_grows_what_its_batch_system_gave_it(tmp_path: Path) -> None:
    # a try asking 100M was given 256M: the next asks twice that, not 200M
    paths, config = _make_tree(tmp_path, Root(0), defaultMemory="100M")
    clock = Clock()
    batch = Floored(clock, [(ExitReason.MEMLIMIT, None)])
    master = Master(JobStore.open(paths), config, {"main": batch}, clock=clock)
    master.run()
    assert [s.resources.memory for s in batch.specs if s.job_id == 1] == [
        100 * MIB, 512 * MIB]
    (asked,) = master.store._db.execute("SELECT asked FROM failures").fetchone()
    assert json.loads(asked)["memory"] == 256 * MIB


def test_caps_and_hard_limits_in_the_master(tmp_path: Path) -> None:
    # --maxMemory caps the memory; a stop at --maxJobDuration never grows the time
    _, asked = _run(tmp_path, [(ExitReason.MEMLIMIT, None), (ExitReason.MEMLIMIT, None)],
                    defaultMemory="3G", maxMemory="5G", retryCount=2)
    assert [r.memory for r in asked] == [3 * GIB, 5 * GIB, 5 * GIB]
    assert retry_caps(dataclasses.replace(_make_tree(tmp_path / "b", Root(0))[1],
                                          maxMemory=None), {"main": FakeBatch(Clock())}) \
        == Caps(memory=8 * GIB, time=None)  # the batch system's limit


def test_the_tree_factors_come_from_the_options(tmp_path: Path) -> None:
    _, asked = _run(tmp_path, [(ExitReason.MEMLIMIT, None), (ExitReason.TIMEOUT, None)],
                    defaultMemory="1G", defaultTime=60, memoryRetryFactor=3,
                    timeRetryFactor=1, retryCount=2)
    assert [(r.memory, r.time) for r in asked] == [(GIB, 60), (3 * GIB, 60), (3 * GIB, 60)]


# --------------------------------------------- the index: format 4 is upgraded
def test_a_format_4_tree_is_read_and_upgraded(tmp_path: Path) -> None:
    tree = tmp_path / "old"
    done = run_script("grows.py", "--jobTree", str(tree), "--memoryRetryFactor", "1",
                      "--retryCount", "0", "--logLevel", "ERROR")
    assert done.returncode == 1, done.stderr
    db = sqlite3.connect(tree / "tree.db")
    db.execute("ALTER TABLE jobs DROP COLUMN asked")
    db.execute("ALTER TABLE failures DROP COLUMN asked")
    db.execute("UPDATE meta SET value = '4' WHERE key = 'format_version'")
    db.commit()
    db.close()
    status = run_command("status", "--jobTree", str(tree), "--json")
    assert status.returncode == 0, status.stderr
    (failed,) = json.loads(status.stdout)["failed"]
    assert [(t["attempt"], t["reason"], t["asked"]) for t in failed["tries"]] == [
        (1, "out of memory", None)]
    # continued with the default factor: its next try asks twice the memory
    again = run_command("run", "--jobTree", str(tree), "--memoryRetryFactor", "2")
    assert again.returncode == 0, again.stderr
    db = sqlite3.connect(f"file:{tree / 'tree.db'}?mode=ro", uri=True)
    version = db.execute("SELECT value FROM meta WHERE key = 'format_version'").fetchone()[0]
    assert json.loads(version) == jobstore.FORMAT_VERSION == 7
    rows = db.execute("SELECT attempt, asked FROM failures ORDER BY attempt").fetchall()
    db.close()
    assert rows == [(1, None)]  # the try of format 4 is left as it was


# ------------------------------------------------ singleMachine, for real
def test_out_of_memory_on_single_machine_finishes_by_asking_more(tmp_path: Path) -> None:
    """A target asking 150M that needs 260M raises MemoryError (it caps its
    address space at what it was given), then finishes with 300M; the status
    shows each try's reason and request."""
    tree = tmp_path / "jt"
    done = run_script("grows.py", "--jobTree", str(tree), "--logLevel", "ERROR")
    assert done.returncode == 0, done.stderr
    status = run_command("status", "--jobTree", str(tree), "--json")
    assert status.returncode == 0, status.stderr
    assert _errors(json.loads(status.stdout), SCHEMA) == []  # docs/status.schema.json
    (retried,) = json.loads(status.stdout)["retried"]
    assert retried["state"] == "done"
    assert [(t["attempt"], t["reason"], t["asked"]["memory"]) for t in retried["tries"]] == [
        (1, "out of memory", 150 * MIB), (2, None, 300 * MIB)]
    verbose = run_command("status", "--jobTree", str(tree), "--verbose")
    assert "try 2 asked 300.0 MiB, 5.0s and 1 cpu, after out of memory with 150.0 MiB: " \
           "succeeded" in verbose.stdout, verbose.stdout


def test_a_kernel_oom_kill_on_single_machine_asks_more(tmp_path: Path) -> None:
    """A target that the kernel's OOM killer SIGKILLs (here, in a memory cgroup
    as small as what its try was given) is out of memory on singleMachine too,
    and its next try, asking twice as much, finishes."""
    cgroups = memory_cgroups()
    tree = tmp_path / "jt"
    try:
        done = run_script("oomkilled.py", "--jobTree", str(tree), "--logLevel", "ERROR")
    finally:
        for group in cgroups.glob("jobtree-test-*"):
            group.rmdir()  # their processes have ended
    assert done.returncode == 0, done.stderr
    status = json.loads(run_command("status", "--jobTree", str(tree), "--json").stdout)
    (retried,) = status["retried"]
    assert [(t["attempt"], t["reason"], t["asked"]["memory"]) for t in retried["tries"]] == [
        (1, "out of memory", 150 * MIB), (2, None, 300 * MIB)]


def test_a_request_function_on_single_machine(tmp_path: Path) -> None:
    """A lambda given as ``request`` travels with the target through the index
    to the master, which asks 100M, then 400M."""
    tree = tmp_path / "jt"
    done = run_script("grows.py", "--jobTree", str(tree), "--memory", "ladder",
                      "--logLevel", "ERROR")
    assert done.returncode == 0, done.stderr
    status = run_command("status", "--jobTree", str(tree), "--json")
    (retried,) = json.loads(status.stdout)["retried"]
    assert [(t["reason"], t["asked"]["memory"]) for t in retried["tries"]] == [
        ("out of memory", 100 * MIB), (None, 400 * MIB)]


def test_with_factor_one_every_try_asks_the_same_and_the_report_says_so(
        tmp_path: Path) -> None:
    tree = tmp_path / "jt"
    done = run_script("grows.py", "--jobTree", str(tree), "--memoryRetryFactor", "1",
                      "--retryCount", "1")
    assert done.returncode == 1, done.stderr
    assert "try 2 asked 150.0 MiB, 5.0s and 1 cpu, after out of memory with 150.0 MiB: " \
           "out of memory" in done.stderr, done.stderr


# ------------------------------------------------ real schedulers enforce memory
@pytest.mark.parametrize("system", ["slurm", "gridEngine"])
def test_out_of_memory_on_a_cluster_finishes_by_asking_more(tmp_path: Path,
                                                            system: str) -> None:
    """The issue's case: a target that asks 150M and touches 260 MiB is given
    the cluster's memory_floor, 256M, and stopped by the scheduler (Slurm with
    memory enforced: FAILED 0:9, "Exceeded job memory limit"; Grid Engine's
    h_vmem, with no allowance here: a MemoryError). It finishes on its second
    try, which asks twice what the first was given: 512M."""
    require_scheduler(system)
    config = quick_cluster_config(tmp_path)
    config.write_text(config.read_text() + "vmem_allowance = 0\n")
    tree = tmp_path / "jt"
    done = run_script("grows.py", "--jobTree", str(tree), "--batchSystem", system,
                      "--clusterConfig", str(config), "--memory", "150M", "--touch", "260",
                      "--hold", "120", "--retryCount", "1", "--logLevel", "WARNING")
    assert done.returncode == 0, done.stderr
    status = run_command("status", "--jobTree", str(tree), "--json")
    (retried,) = json.loads(status.stdout)["retried"]
    assert [(t["attempt"], t["reason"], t["asked"]["memory"]) for t in retried["tries"]] == [
        (1, "out of memory", 256 * MIB), (2, None, 512 * MIB)], done.stderr


# ------------------------------------- the request as a function of the try
def ladder(attempt: int, reason: str | None) -> dict[str, object]:
    """4G, then 16G after out of memory; an hour more after a timeout."""
    return {"memory": "16G" if reason == "out of memory" else "4G",
            "time": 3600 * attempt if reason == "timeout" else 600}


def test_a_request_function_gives_each_try() -> None:
    own = Resources.parse(memory="1G", request=ladder)
    assert (own.memory, own.time) == (4 * GIB, 600)  # the first try: ladder(1, None)
    request, raised = try_request(own, (1, "out of memory", None), Caps(), attempt=2)
    assert request.memory == 16 * GIB and json.loads(raised or "") == {"memory": 16 * GIB}
    assert try_request(own, (1, "timeout", None), Caps(), attempt=3)[0].time == 3 * 3600
    assert try_request(own, (1, "out of memory", None), Caps(memory=8 * GIB),
                       attempt=2)[0].memory == 8 * GIB  # capped by --maxMemory
    # a lambda goes by value, with the target, through the index's JSON
    stored = Resources.from_dict(json.loads(json.dumps(Resources.parse(
        request=lambda attempt, reason: {"memory": f"{attempt}G"}).to_dict())))
    assert try_request(stored, (2, "failed", None), Caps(), attempt=3)[0].memory == 3 * GIB


@pytest.mark.parametrize(("function", "message"), [
    (lambda attempt, reason: 1 / 0, "raised ZeroDivisionError"),
    (lambda attempt, reason: {"mem": 1}, "must return a dict with some of memory"),
    (lambda attempt, reason: {"memory": "lots"}, "is not a size"),
    ("4G", "must be a function of (attempt, reason)")])
def test_a_bad_request_function_is_a_clear_error(function: object, message: str) -> None:
    with pytest.raises(ResourceError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Resources.parse(request=function)


class Asking(Root):
    def __init__(self) -> None:
        super().__init__(0)
        Target.__init__(self, request=lambda attempt, reason: {
            "memory": f"{attempt}G", "time": 60 if reason != "timeout" else 3600})


def _with_extra(tmp_path: Path, root: Target, **options: object) -> tuple[object, object]:
    """A tree like test_master's, whose root keeps its extra resources (as
    start.root_job does)."""
    from jobtree import serialize, tree
    from jobtree.jobstore import NewJob
    from jobtree.options import default_options, resolve
    from jobtree.paths import TreePaths
    from jobtree.target import class_name

    namespace = default_options()
    namespace.jobTree = str(tmp_path / "jt")
    for key, value in options.items():
        setattr(namespace, key, value)
    config, _ = resolve(namespace)
    paths = TreePaths(config.jobTree)
    res = root.getResources()
    tree.create(paths, NewJob(class_name(root), root._jt_describe(), res.cpu, res.memory,
                              res.time, res.disk, serialize.dump_target(root),
                              res.cluster_only() or None),
                config, {"script": None, "root_class": class_name(root)})
    return paths, config


def test_the_master_calls_the_request_function(tmp_path: Path) -> None:
    paths, config = _with_extra(tmp_path, Asking(), retryCount=2)
    clock = Clock()
    batch = Failing(clock, [(ExitReason.MEMLIMIT, None), (ExitReason.TIMEOUT, None)])
    master = Master(JobStore.open(paths), config, {"main": batch}, clock=clock)
    assert master.run() == 0
    assert [(s.resources.memory, s.resources.time) for s in batch.specs if s.job_id == 1] == [
        (GIB, 60), (2 * GIB, 60), (3 * GIB, 3600)]


def test_a_request_function_that_fails_at_a_retry_fails_the_target_clearly(
        tmp_path: Path) -> None:
    class Picky(Root):
        def __init__(self) -> None:
            super().__init__(0)
            Target.__init__(self, request=lambda attempt, reason: (
                {"memory": "1G"} if attempt == 1 else {"memory": reason}))

    paths, config = _with_extra(tmp_path, Picky(), retryCount=2)
    clock = Clock()
    batch = Failing(clock, [(ExitReason.MEMLIMIT, None)])
    master = Master(JobStore.open(paths), config, {"main": batch}, clock=clock)
    assert master.run() == 1
    (failure,) = master.store.failures()
    assert "'out of memory' is not a size" in failure["message"], failure


def test_grown_memory_is_cut_to_the_batch_system_it_goes_to(tmp_path: Path) -> None:
    class Big(FakeBatch):
        def limits(self) -> Resources:
            return Resources(cpu=64, memory=64 * GIB)

    _, config = _make_tree(tmp_path, Root(0), bigBatchSystem="singleMachine",
                           bigMemoryThreshold="16G", maxMemory="8G")
    batches = {"main": FakeBatch(Clock()), "big": Big(Clock())}  # main gives 8G
    own = Resources(cpu=1, memory=6 * GIB, memory_retry_factor=2.0)
    failed = failed_try_asked(own, None, False)
    request, role, raised = place_try(config, batches, own, (1, "out of memory", failed), 2)
    assert (request.memory, role) == (8 * GIB, "main")  # 12G would not fit main
    big = Resources(cpu=1, memory=12 * GIB, memory_retry_factor=2.0)
    request, role, _ = place_try(config, batches, big, (1, "out of memory",
                                                        failed_try_asked(big, None, False)), 2)
    assert (request.memory, role) == (24 * GIB, "big")  # not capped by main's --maxMemory
