"""The shared cluster base, end to end against the fake Torque (which really
runs jobs): a job script that cannot start its targets, a scheduler that
refuses a request, and one that is down for a while."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest
from conftest import require_scheduler

from jobtree import batch as batch_systems
from jobtree.batch import BatchSystem, ExitReason, JobSpec, Update
from jobtree.resources import Resources

FAKE = Path(__file__).resolve().parent / "fakes" / "torque"


Make = Callable[[str], BatchSystem]


@pytest.fixture
def torque(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Make]:
    """Makes Torque batch systems on a fresh fake server, with extra config lines."""
    monkeypatch.setenv("PATH", f"{FAKE}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_PBS_DIR", str(tmp_path / "server"))
    (tmp_path / "server").mkdir()
    made: list[BatchSystem] = []

    def make(config: str) -> BatchSystem:
        path = tmp_path / "cluster.ini"
        rate = "" if "submit_rate" in config else "submit_rate = 50\n"
        path.write_text("[cluster]\npoll_interval = 0.5\nexit_grace = 1\n" + rate + config)
        system = batch_systems.create("torque", options=argparse.Namespace(
            clusterConfig=str(path)), workdir=str(tmp_path / "batch"), tree_id="basetest01")
        made.append(system)
        return system

    yield make
    for system in made:
        system.close()


def _spec(tmp_path: Path, job_id: int, command: str, memory: int | None = None) -> JobSpec:
    return JobSpec(job_id, 1, ["/bin/sh", "-c", command], Resources(cpu=1, memory=memory),
                   f"t{job_id}", str(tmp_path / f"{job_id}.log"))


def _wait(batch: BatchSystem, timeout: float) -> Update:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        update = batch.next_update(0.5)
        if update is not None:
            return update
    pytest.fail(f"no update within {timeout}s")


def test_a_job_script_that_cannot_start_its_targets_fails_them(torque: Make,
                                                                tmp_path: Path) -> None:
    batch = torque("prologue = echo the module system is broken >&2; exit 3\n")
    batch.issue(_spec(tmp_path, 1, "true"))
    update = _wait(batch, 60)
    assert update.reason is ExitReason.FAILED and update.permanent, update
    assert update.message and "could not start the worker" in update.message, update
    assert "the module system is broken" in update.message, update
    assert "could not start the worker" in (tmp_path / "1.log").read_text()


def test_a_refused_request_fails_at_once_for_good(torque: Make, tmp_path: Path) -> None:
    batch = torque("")  # the fake refuses more than 8 cores per node, as a real server would
    spec = JobSpec(1, 1, ["/bin/sh", "-c", "true"], Resources(cpu=64), "t1",
                   str(tmp_path / "1.log"))
    batch.issue(spec)
    update = _wait(batch, 30)
    assert update.reason is ExitReason.FAILED and update.permanent, update
    assert update.message and "refused" in update.message and "qsub" in update.message


def test_a_scheduler_down_fails_nothing(torque: Make, tmp_path: Path) -> None:
    batch = torque("")
    (tmp_path / "server" / "down").write_text("")
    batch_id = batch.issue(_spec(tmp_path, 1, f"{sys.executable} -c 'print(42)'"))
    assert batch.next_update(4) is None  # qsub keeps failing: nothing is reported
    assert batch_id in batch.issued()
    (tmp_path / "server" / "down").unlink()
    update = _wait(batch, 60)
    assert (update.batch_id, update.reason) == (batch_id, ExitReason.FINISHED), update
    assert "42" in (tmp_path / "1.log").read_text()


def test_a_grid_engine_job_stuck_in_error_is_deleted_and_fails(tmp_path: Path) -> None:
    """A job held in Grid Engine's error state (Eqw: here its working folder is
    missing) never runs: it is deleted, tried again, then fails with the reason."""
    require_scheduler("gridEngine")
    config = tmp_path / "cluster.ini"
    config.write_text("[cluster]\npoll_interval = 0.5\nexit_grace = 1\n"
                      "extra = -wd /nonexistent/jobtree-test\n")
    batch = batch_systems.create("gridEngine", options=argparse.Namespace(
        clusterConfig=str(config)), workdir=str(tmp_path / "batch"), tree_id="eqwtest001")
    try:
        batch.issue(_spec(tmp_path, 1, "true"))
        update = _wait(batch, 90)
        assert update.reason is ExitReason.FAILED and update.permanent, update
        assert "could not start the worker" in (update.message or ""), update
        deadline = time.monotonic() + 15  # it is deleted right after the report
        while "jt-eqwtest001" in subprocess.run(["qstat", "-xml"], capture_output=True,
                                                text=True, timeout=60).stdout:
            assert time.monotonic() < deadline, "a job in error state was left in the queue"
            time.sleep(0.5)
    finally:
        batch.close()


def test_max_jobs_and_the_submit_rate_bound_what_reaches_the_scheduler(
        torque: Make, tmp_path: Path) -> None:
    """One job per target (no arrays, no packing), at most 3 in the queue at
    once, at most 4 submissions a second: 12 targets never flood the server."""
    batch = torque("arrays = no\npack_time = 0\nmax_jobs = 3\nsubmit_rate = 4\n")
    began = time.monotonic()
    ids = {batch.issue(_spec(tmp_path, i, "sleep 0.3")) for i in range(1, 13)}
    seen: list[int] = []
    updates: list[Update] = []
    deadline = time.monotonic() + 120
    while len(updates) < len(ids):
        assert time.monotonic() < deadline, f"only {len(updates)} of 12 finished"
        listed = subprocess.run(["qstat", "-x", "-t"], capture_output=True, text=True,
                                timeout=30).stdout
        seen.append(sum(1 for row in batch.dialect.parse_status(listed)  # type: ignore[attr-defined]
                        if row.state.alive))
        update = batch.next_update(0.1)
        if update is not None:
            updates.append(update)
    assert {u.batch_id for u in updates} == ids
    assert all(u.reason is ExitReason.FINISHED for u in updates), updates
    assert max(seen) <= 3, f"up to {max(seen)} jobs were queued or running at once"
    # 12 submissions at 4 a second, after a burst of 4, take at least 2 seconds
    assert time.monotonic() - began >= 2.0


def test_the_scheduler_commands_run_are_counted_for_the_masters_last_word() -> None:
    """The master says at INFO how many scheduler commands it ran, by program
    (retries included): what a user asks of a tool on a shared cluster."""
    from jobtree.batch.commands import CommandRunner
    from jobtree.errors import SchedulerCommandError

    runner = CommandRunner(lambda code, err: code == 1, attempts=2, backoff=0.0,
                           sleep=lambda seconds: None)
    assert runner.summary() == "0 scheduler commands in all"
    runner.run(["true"])
    assert runner.summary() == "1 scheduler command in all: 1 true"
    with pytest.raises(SchedulerCommandError):
        runner.run(["false"])  # transient here: run twice
    assert runner.summary() == "3 scheduler commands in all: 2 false, 1 true"
