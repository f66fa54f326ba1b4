"""--batchSystem drmaa against real Grid Engine's DRMAA library: what the
conformance suite does not see (the errors that say what to set, the
preload, one status request per poll, jobTreeKill of a gone master's jobs),
and the pure pieces (the scheduler behind the library, native
specifications, bulk job ids)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import quick_cluster_config, require_scheduler

from jobtree import batch as batch_systems
from jobtree.batch import JobSpec, drmaa_batch, plan
from jobtree.batch.gridengine import GridEngine
from jobtree.batch.native import Request, Submission
from jobtree.batch.settings import ClusterSettings
from jobtree.errors import BatchSystemError, JobTreeError
from jobtree.resources import Resources


@pytest.fixture
def drmaa_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Grid Engine's DRMAA library, as a site sets it (skipped where it is not running)."""
    require_scheduler("drmaa")
    for key in ("DRMAA_LIBRARY_PATH", "SGE_ROOT", "SGE_CELL"):
        monkeypatch.setenv(key, os.environ[key])
    monkeypatch.delenv("LD_PRELOAD", raising=False)


def make(tmp_path: Path, **kwargs: Any) -> drmaa_batch.DrmaaBatchSystem:
    options = argparse.Namespace(clusterConfig=str(quick_cluster_config(tmp_path)))
    system = batch_systems.create("drmaa", options=options, workdir=str(tmp_path / "batch"),
                                  tree_id=f"d{os.getpid()}", **kwargs)
    assert isinstance(system, drmaa_batch.DrmaaBatchSystem)
    return system


# ----------------------------------------------------------- the session


def test_a_missing_library_says_to_set_drmaa_library_path(
        drmaa_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DRMAA_LIBRARY_PATH")
    with pytest.raises(BatchSystemError) as err:
        make(tmp_path)
    message = str(err.value)
    assert "DRMAA_LIBRARY_PATH" in message and "\n" not in message
    assert isinstance(err.value, JobTreeError)

    monkeypatch.setenv("DRMAA_LIBRARY_PATH", str(tmp_path / "libdrmaa.so"))
    with pytest.raises(BatchSystemError, match="DRMAA_LIBRARY_PATH"):
        make(tmp_path)


def test_a_session_that_cannot_start_says_what_the_scheduler_needs(
        drmaa_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SGE_ROOT", str(tmp_path / "no-sge"))
    with pytest.raises(BatchSystemError, match="SGE_ROOT and SGE_CELL") as err:
        make(tmp_path)
    assert "no-sge" in str(err.value)  # the library's own words


def test_the_missing_package_says_what_to_install() -> None:
    message = str(drmaa_batch.unavailable("package", "No module named 'drmaa'"))
    assert "pip install 'jobtree[drmaa]'" in message


def test_the_library_s_preload_is_found_for_the_user(drmaa_env: None, tmp_path: Path) -> None:
    """Grid Engine's library loads only with jemalloc preloaded: the agent
    starts itself again with it, and the master's process never loads it."""
    system = make(tmp_path)
    try:
        hello = system.scheduler.agent.hello
        assert hello["drms"].startswith("SGE")
        assert "libjemalloc" in (hello["preloaded"] or "")
        assert isinstance(system.dialect.native, GridEngine)
        assert "drmaa" not in sys.modules  # the library is the agent's alone
    finally:
        system.close()


# ----------------------------------------------------------- the scheduler


def test_one_status_request_per_poll_for_every_submission(drmaa_env: None,
                                                          tmp_path: Path) -> None:
    now = [1000.0]
    system = make(tmp_path)
    system.close()  # only its checked settings are used
    settings = system.settings
    counted = Counting(settings.command_timeout)
    fake = drmaa_batch.DrmaaBatchSystem(settings, counted, monotonic=lambda: now[0],
                                        background=False)
    fake.check_commands()
    log = tmp_path / "job.log"
    try:
        # three requests: three submissions (one of them an array of two)
        for job_id, cpu in ((1, 1), (2, 1), (3, 2), (4, 3)):
            fake.issue(JobSpec(job_id, 1, ["sleep", "30"], Resources(cpu=cpu, memory=2**28),
                               f"s{job_id}", str(log)))
        now[0] += plan.GATHER + 1
        fake.step()
        submitted = {s.job_id for s in fake._subs.values()}
        assert len(submitted) == 3 and None not in submitted
        for _ in range(3):
            counted.ops.clear()
            now[0] += settings.poll_interval + 1
            fake.step()
            assert counted.ops.count("status") == 1
            assert len(counted.asked[-1]) == 4  # every live task, in the one request
    finally:
        fake.close()


class Counting(drmaa_batch.Agent):
    """The real agent, counting the requests it is sent."""

    def __init__(self, timeout: float) -> None:
        super().__init__(timeout)
        self.ops: list[str] = []
        self.asked: list[list[str]] = []

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        self.ops.append(request["op"])
        if request["op"] == "status":
            self.asked.append(list(request["ids"]))
        return super().ask(request)


def test_kill_tree_cancels_the_jobs_a_gone_master_left(drmaa_env: None,
                                                       tmp_path: Path) -> None:
    first = make(tmp_path)
    log = tmp_path / "job.log"
    first.issue(JobSpec(1, 1, ["sleep", "60"], Resources(cpu=1), "s1", str(log)))
    first.issue(JobSpec(2, 1, ["sleep", "60"], Resources(cpu=1), "s2", str(log)))
    subs = tmp_path / "batch" / "subs"
    deadline = time.monotonic() + 30
    while not list(subs.glob("*.id")) and time.monotonic() < deadline:
        time.sleep(0.2)
    sub = next(subs.glob("*.id"))
    job = sub.read_text()
    tasks = json.loads(sub.with_suffix(".json").read_text())["tasks"]
    ids = [f"{job}.{i}" for i in range(1, tasks + 1)] if tasks > 1 else [job]
    # the master dies: its I/O stops, its session ends, its jobs go on
    with first._lock:
        first._closed = True
    first._wake.set()
    assert first._thread is not None
    first._thread.join()
    first._agent.close()
    assert set(first.scheduler.agent.ask({"op": "status", "ids": ids})["states"].values()) \
        <= {"queued_active", "running"}
    first._agent.close()

    second = make(tmp_path)
    try:
        assert second.kill_tree() == len(ids)  # the whole job at once
        deadline = time.monotonic() + 60  # qdel's SIGKILL reaches the node
        while True:
            states = second.scheduler.agent.ask({"op": "status", "ids": ids})["states"]
            if set(states.values()) <= {"gone", "done", "failed"} or \
                    time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert set(states.values()) <= {"gone", "done", "failed"}
    finally:
        second.close()


# ------------------------------------------------------------- pure pieces


def test_the_scheduler_behind_the_library_is_known_by_its_words() -> None:
    for drms, name in (("SGE 8.1.9", "gridEngine"), ("Univa Grid Engine", "gridEngine"),
                       ("SLURM 23.02", "slurm"), ("PBS Pro 19", "pbspro"),
                       ("Torque 6.1", "torque"), ("IBM Spectrum LSF 10.1", "lsf")):
        native, _ = drmaa_batch.flavour_of(drms)
        assert native is not None and native.name == name, drms
    assert drmaa_batch.flavour_of("HTCondor 9")[0] is None


def test_the_native_specification_leaves_what_drmaa_sets_to_drmaa() -> None:
    dialect = drmaa_batch.DrmaaDialect(*drmaa_batch.flavour_of("SGE 8.1.9"))
    job = Submission("jt-x", "/t/s.sh", "/t/out/s", 3,
                     Request(cores=2, memory=2**30, walltime=600, queue="long.q",
                             extra=("-l scratch=1G",)), "/t")
    spec = dialect.native_specification(job)
    assert "-pe smp 2" in spec and "-l h_rt=" in spec and "-q long.q" in spec
    assert "-l scratch=1G" in spec
    for option in ("-N ", "-o ", "-t ", "-wd ", "-j ", "-S "):
        assert option not in spec
    generic = drmaa_batch.DrmaaDialect()
    assert generic.native_specification(job) == "-l scratch=1G"
    assert generic.min_array > 10**6  # no bulk jobs where the index variable is unknown


def test_bulk_job_ids_give_the_job_id() -> None:
    dialect = drmaa_batch.DrmaaDialect(*drmaa_batch.flavour_of("SGE 8.1.9"))
    assert dialect.job_of(["812.1", "812.2", "812.3"]) == "812"
    assert dialect.task_id("812", 2) == "812.2"
    with pytest.raises(ValueError, match="arrays = no"):
        dialect.job_of(["812.1", "813.1"])


def test_drmaa_settings_come_from_its_own_section(tmp_path: Path) -> None:
    from jobtree.batch.settings import cluster_settings

    config = tmp_path / "c.ini"
    config.write_text("[cluster]\nqueue = all.q\n[drmaa]\nextra = -l scratch=1G\n")
    settings = cluster_settings("drmaa", argparse.Namespace(clusterConfig=str(config)),
                                None, None, None, None, None)
    assert settings.queue == "all.q" and settings.extra == ("-l scratch=1G",)
    assert isinstance(settings, ClusterSettings)
