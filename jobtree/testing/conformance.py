"""The batch-system conformance suite: every promise of the contract in
:mod:`jobtree.batch.base`, checked against a real batch system with pytest.

Jobs are real processes: plain commands (:mod:`jobtree.testing.job`,
``/bin/sh -c``) and real workers (``python -m jobtree.worker TREE JOB
ATTEMPT``) on a small tree built by hand. Checks that a process is gone read
``/proc`` and so run only for batch systems whose jobs run on this machine
(``BatchSystem.local``).

To run it against a batch system (a plugin's, say), a test module defines
the fixture ``case`` (a :class:`~jobtree.testing.BatchCase`) and imports
everything from here; pytest then collects the tests in that module::

    import pytest
    from jobtree.testing import BatchCase, by_name
    from jobtree.testing.conformance import *  # noqa: F403 - the tests

    @pytest.fixture
    def case() -> BatchCase:
        return BatchCase("myQueue", by_name("myQueue"), kill_grace=12, latency=10)

This module imports pytest; ``import jobtree`` never does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ..batch import BatchSystem, ExitReason, JobSpec
from ..batch.base import EXIT_MEMORY
from . import targets
from .harness import (
    QUICK,
    BatchCase,
    Jobs,
    alive,
    assert_gone,
    assert_quiet,
    cluster_files,
    collect,
    log_of,
    only,
    wait_for_record,
)


@pytest.fixture
def make_batch(case: BatchCase, tmp_path: Path) -> Iterator[Callable[..., BatchSystem]]:
    """Makes batch systems with the given limits; closes them all afterwards."""
    made: list[BatchSystem] = []

    def make(max_threads: int | None = None, max_cpus: float | None = None,
             max_memory: int | None = None) -> BatchSystem:
        system = case.make(max_threads, max_cpus, max_memory,
                           tmp_path / f"batch{len(made)}")
        made.append(system)
        return system

    yield make
    for system in made:
        system.close()


@pytest.fixture
def batch(make_batch: Callable[..., BatchSystem]) -> BatchSystem:
    """A fresh batch system with its default limits, closed after the test."""
    return make_batch()


@pytest.fixture
def jobs(tmp_path: Path) -> Jobs:
    """Builds the jobs of a test, under its folder."""
    return Jobs(tmp_path)


# ------------------------------------------------------------------- limits


def test_limits_and_capacity_are_sane(batch: BatchSystem) -> None:
    limits = batch.limits()
    assert limits.cpu is None or limits.cpu > 0
    assert limits.memory is None or limits.memory > 0
    capacity = batch.capacity()
    assert isinstance(capacity, int) and capacity > 0
    assert batch.issued() == set()
    assert batch.running() == {}


def test_limits_follow_the_maxima_given(make_batch: Callable[..., BatchSystem]) -> None:
    limits = make_batch(max_threads=1, max_cpus=1, max_memory=2**30).limits()
    assert limits.cpu is None or 0 < limits.cpu <= 1
    assert limits.memory is None or 0 < limits.memory <= 2**30


# ----------------------------------------------------- issue and next_update


def test_ids_are_distinct_and_issued_until_reported(batch: BatchSystem, jobs: Jobs,
                                                    case: BatchCase) -> None:
    ids = [batch.issue(jobs.command(["/bin/sh", "-c", "exit 0"])) for _ in range(4)]
    assert len(set(ids)) == 4
    assert set(ids) <= batch.issued()
    collect(batch, ids, QUICK + case.latency)
    assert_quiet(batch)


# EXIT_MEMORY means "out of memory" only from a worker (see the worker tests);
# from any other command it is just a failure
EXITS = [(0, ExitReason.FINISHED), (1, ExitReason.FAILED), (2, ExitReason.FAILED),
         (7, ExitReason.FAILED), (EXIT_MEMORY, ExitReason.FAILED)]


def test_exit_codes_and_reasons(batch: BatchSystem, jobs: Jobs, case: BatchCase) -> None:
    issued = {batch.issue(jobs.command(["/bin/sh", "-c", f"exit {code}"])): (code, reason)
              for code, reason in EXITS}
    updates = collect(batch, list(issued), QUICK + case.latency)
    for batch_id, (code, reason) in issued.items():
        update = updates[batch_id]
        assert (update.exit_code, update.reason) == (code, reason), update
        assert update.wall is not None and update.wall >= 0
    assert_quiet(batch)


def test_wall_time_is_the_time_the_job_ran(batch: BatchSystem, jobs: Jobs,
                                           case: BatchCase) -> None:
    spec = jobs.command([sys.executable, "-c", "import time; time.sleep(0.6)"])
    update = only(collect(batch, [batch.issue(spec)], QUICK + case.latency))
    assert update.reason is ExitReason.FINISHED and update.exit_code == 0, log_of(spec)
    assert update.wall is not None and 0.5 <= update.wall <= 0.6 + 5 + case.latency


def test_a_job_that_dies_of_a_signal_is_not_finished(batch: BatchSystem, jobs: Jobs,
                                                     case: BatchCase) -> None:
    spec = jobs.command(["/bin/sh", "-c", "kill -9 $$"])
    update = only(collect(batch, [batch.issue(spec)], QUICK + case.latency))
    assert update.reason is not ExitReason.FINISHED and update.exit_code != 0, update
    assert_quiet(batch)


def test_a_command_that_cannot_start_fails(batch: BatchSystem, jobs: Jobs,
                                           case: BatchCase) -> None:
    spec = jobs.command([str(jobs.root / "no-such-program")])
    update = only(collect(batch, [batch.issue(spec)], QUICK + case.latency))
    assert update.reason is ExitReason.FAILED and update.exit_code != 0, update
    assert_quiet(batch)


def assert_times_out(batch: BatchSystem, timeout: float = 1.0) -> None:
    """next_update(timeout) returns None after about ``timeout``, sleeping meanwhile."""
    cpu, began = time.process_time(), time.monotonic()
    assert batch.next_update(timeout) is None
    took, used = time.monotonic() - began, time.process_time() - cpu
    assert timeout - 0.1 <= took <= timeout + 2, f"next_update({timeout:g}) took {took:.2f}s"
    assert used < 0.3, f"next_update({timeout:g}) used {used:.2f}s of CPU: a busy loop"


def test_next_update_times_out_without_busy_waiting(batch: BatchSystem, jobs: Jobs,
                                                    case: BatchCase) -> None:
    assert_times_out(batch)  # nothing issued
    assert batch.next_update(0) is None
    record = jobs.path("sleeper.json")
    spec = jobs.script("sleep", record, "60")
    batch_id = batch.issue(spec)
    wait_for_record(spec, record, QUICK + case.latency)
    assert_times_out(batch)  # one job running, none ending
    batch.kill([batch_id])
    collect(batch, [batch_id], QUICK + case.latency)


def test_running_lists_a_running_job_with_growing_seconds(batch: BatchSystem, jobs: Jobs,
                                                          case: BatchCase) -> None:
    record = jobs.path("sleeper.json")
    spec = jobs.script("sleep", record, "60")
    batch_id = batch.issue(spec)
    wait_for_record(spec, record, QUICK + case.latency)
    deadline = time.monotonic() + QUICK + case.latency
    while batch_id not in batch.running():
        assert time.monotonic() < deadline, "a running job is missing from running()"
        time.sleep(0.05)
    first = batch.running()[batch_id]
    time.sleep(0.4)
    second = batch.running()[batch_id]
    assert 0 <= first < second and second - first >= 0.3, (first, second)
    assert batch_id in batch.issued()
    batch.kill([batch_id])
    collect(batch, [batch_id], QUICK + case.latency)
    assert batch_id not in batch.running()


# --------------------------------------------------------------------- kill

KINDS = ["command", "worker"]


def sleeper(jobs: Jobs, kind: str, record: str, cpu: float = 1) -> JobSpec:
    """A job that writes ``record`` once it runs, then sleeps for a minute."""
    if kind == "command":
        return jobs.script("sleep", record, "60", cpu=cpu)
    return jobs.worker(targets.sleep_recording, record, 60, cpu=cpu)


@pytest.mark.parametrize("kind", KINDS)
def test_kill_a_running_job(batch: BatchSystem, jobs: Jobs, case: BatchCase,
                            kind: str) -> None:
    record = jobs.path("sleeper.json")
    spec = sleeper(jobs, kind, record)
    batch_id = batch.issue(spec)
    started = wait_for_record(spec, record, QUICK + case.latency)
    batch.kill([batch_id])
    update = only(collect(batch, [batch_id], QUICK + case.latency))
    assert update.reason is ExitReason.KILLED, (update, log_of(spec))
    assert_gone(batch, [started["pid"]], [started["pgid"]])
    assert_quiet(batch)


@pytest.mark.parametrize("kind", KINDS)
def test_kill_right_after_issue(batch: BatchSystem, jobs: Jobs, case: BatchCase,
                                kind: str) -> None:
    record = jobs.path("sleeper.json")
    spec = sleeper(jobs, kind, record)
    batch_id = batch.issue(spec)
    batch.kill([batch_id])
    # One wait: the kill must take effect without the caller polling again.
    patience = 5 + case.latency
    update = batch.next_update(patience)
    assert update is not None, (
        f"a job killed right after issue() was not reported by one "
        f"next_update({patience:g}); log:\n{log_of(spec)}")
    assert update.batch_id == batch_id and update.reason is ExitReason.KILLED, (
        update, log_of(spec))
    time.sleep(0.3)
    if os.path.exists(record):
        started = json.loads(Path(record).read_text())
        assert_gone(batch, [started["pid"]], [started["pgid"]])
    assert_quiet(batch)


def test_kill_a_job_that_ignores_sigterm(batch: BatchSystem, jobs: Jobs,
                                         case: BatchCase) -> None:
    record = jobs.path("stubborn.json")
    spec = jobs.script("sleep", record, "60", "--ignore-term")
    batch_id = batch.issue(spec)
    started = wait_for_record(spec, record, QUICK + case.latency)
    killed_at = time.monotonic()
    batch.kill([batch_id])
    # One long wait: the job must be stopped after the grace period whether or
    # not the caller happens to call next_update again meanwhile.
    patience = case.kill_grace + 3 + case.latency
    update = first = batch.next_update(patience)
    if update is None:  # see whether it dies at all when polled the master's way
        update = only(collect(batch, [batch_id], QUICK + case.latency))
    died_after = time.monotonic() - killed_at
    assert update.batch_id == batch_id and update.reason is ExitReason.KILLED, update
    assert_gone(batch, [started["pid"]], [started["pgid"]])
    assert first is not None, (
        f"one next_update({patience:g}) after kill() of a job that ignores SIGTERM "
        f"returned None; the job was stopped only when next_update was called again, "
        f"{died_after:.1f}s after the kill")
    assert died_after <= patience
    assert_quiet(batch)


def test_kill_a_job_waiting_for_a_slot(make_batch: Callable[..., BatchSystem], jobs: Jobs,
                                       case: BatchCase) -> None:
    batch = make_batch(max_threads=1)
    record, marker = jobs.path("blocker.json"), jobs.path("ran.json")
    blocker = jobs.script("sleep", record, "60")
    blocker_id = batch.issue(blocker)
    wait_for_record(blocker, record, QUICK + case.latency)
    waiting_id = batch.issue(jobs.script("touch", marker))
    batch.kill([waiting_id])
    update = only(collect(batch, [waiting_id], QUICK + case.latency, check_issued=False))
    assert update.reason is ExitReason.KILLED, update
    batch.kill([blocker_id])
    collect(batch, [blocker_id], QUICK + case.latency)
    assert_quiet(batch)
    assert not os.path.exists(marker), "a job killed while waiting for a slot still ran"


def test_a_killed_job_stays_issued_until_reported(make_batch: Callable[..., BatchSystem],
                                                  jobs: Jobs, case: BatchCase) -> None:
    batch = make_batch(max_threads=1)
    record = jobs.path("blocker.json")
    blocker = jobs.script("sleep", record, "60")
    running_id = batch.issue(blocker)
    wait_for_record(blocker, record, QUICK + case.latency)
    waiting_id = batch.issue(jobs.script("sleep", jobs.path("never.json"), "60"))
    batch.kill([running_id, waiting_id])
    assert {running_id, waiting_id} <= batch.issued(), (
        f"issued() must list killed jobs until next_update reports them; it is "
        f"{batch.issued()} (running {running_id}, waiting {waiting_id})")
    collect(batch, [running_id, waiting_id], QUICK + case.latency)
    assert_quiet(batch)


@pytest.mark.parametrize("kind", KINDS)
def test_kill_takes_the_jobs_children(batch: BatchSystem, jobs: Jobs, case: BatchCase,
                                      kind: str) -> None:
    record = jobs.path("family.json")
    if kind == "command":
        shell = ('sleep 60 & echo "{\\"pid\\": $$, \\"child\\": $!}" > "$1.tmp" '
                 '&& mv "$1.tmp" "$1"; wait')
        spec = jobs.command(["/bin/sh", "-c", shell, "sh", record])
    else:
        spec = jobs.worker(targets.spawn_child_and_sleep, record, 60)
    batch_id = batch.issue(spec)
    started = wait_for_record(spec, record, QUICK + case.latency)
    assert not batch.local or alive(started["child"])
    batch.kill([batch_id])
    update = only(collect(batch, [batch_id], QUICK + case.latency))
    assert update.reason is ExitReason.KILLED, (update, log_of(spec))
    assert_gone(batch, [started["pid"], started["child"]])
    assert_quiet(batch)


# ---------------------------------------------------------------------- log


@pytest.mark.parametrize("kind", KINDS)
def test_the_log_gets_stdout_and_stderr(batch: BatchSystem, jobs: Jobs, case: BatchCase,
                                        kind: str) -> None:
    spec = jobs.script("say") if kind == "command" else jobs.worker(targets.say, "conformance")
    update = only(collect(batch, [batch.issue(spec)], QUICK + case.latency))
    assert update.reason is ExitReason.FINISHED, (update, log_of(spec))
    log = log_of(spec)
    assert "conformance-stdout" in log and "conformance-stderr" in log, log


# ------------------------------------------------------------------ workers


def test_a_worker_writes_its_result_and_finishes(batch: BatchSystem, jobs: Jobs,
                                                 case: BatchCase) -> None:
    spec = jobs.worker(targets.say, "result", attempt=2)
    update = only(collect(batch, [batch.issue(spec)], QUICK + case.latency))
    assert (update.exit_code, update.reason) == (0, ExitReason.FINISHED), (update, log_of(spec))
    assert update.wall is not None and update.wall >= 0
    result = jobs.result(spec)
    assert result is not None, f"no results/{spec.job_id}.{spec.attempt}; log:\n{log_of(spec)}"
    assert (result["ok"], result["job"], result["attempt"]) == (True, spec.job_id, 2)
    assert_quiet(batch)


def test_failing_workers_report_why(batch: BatchSystem, jobs: Jobs, case: BatchCase) -> None:
    failing = jobs.worker(targets.fail)
    hungry = jobs.worker(targets.run_out_of_memory)
    ids = {batch.issue(failing): failing, batch.issue(hungry): hungry}
    updates = collect(batch, list(ids), QUICK + case.latency)
    by_spec = {ids[i].job_id: u for i, u in updates.items()}
    assert (by_spec[failing.job_id].exit_code, by_spec[failing.job_id].reason) == (
        1, ExitReason.FAILED), log_of(failing)
    assert (by_spec[hungry.job_id].exit_code, by_spec[hungry.job_id].reason) == (
        EXIT_MEMORY, ExitReason.MEMLIMIT), log_of(hungry)
    for spec in (failing, hungry):
        result = jobs.result(spec)
        assert result is not None and result["ok"] is False, log_of(spec)
    assert_quiet(batch)


def test_over_memory_is_out_of_memory(batch: BatchSystem, jobs: Jobs, case: BatchCase) -> None:
    """A target that touches far more memory than it asked for is reported out
    of memory, however the scheduler stops it: Slurm's OverMemoryKill (``FAILED
    0:9`` and ``Exceeded job memory limit`` in the job's output), Grid Engine's
    h_vmem (a MemoryError), the PBS MOM's kill (-10 / -27), LSF's TERM_MEMLIMIT.
    It touches 900 MB: more than what the scheduler is asked for its 150 MB,
    which is raised to memory_floor (256 MiB), and on Grid Engine more than
    that plus vmem_allowance (512 MiB)."""
    if case.name in ("singleMachine", "allocation"):
        pytest.skip(f"{case.name} does not enforce memory")
    hungry = jobs.worker(targets.touch_memory, 900, 60.0, memory=150 * 1024 ** 2)
    update = only(collect(batch, [batch.issue(hungry)], 60 + case.latency))
    assert update.reason is ExitReason.MEMLIMIT, (update, log_of(hungry))
    # a scheduler's kill is explained (Slurm here: "... for using more memory than the
    # 150 MiB it asked for (FAILED 0:9; its output: '... Exceeded job memory limit')");
    # a MemoryError (Grid Engine's h_vmem) comes from the worker's exit status
    assert update.message is None or "more memory than" in update.message, update
    assert_quiet(batch)


# ------------------------------------------------------------------- limits


def overlap(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a["start"] < b["end"] and b["start"] < a["end"]


def test_max_threads_one_runs_one_job_at_a_time(make_batch: Callable[..., BatchSystem],
                                                jobs: Jobs, case: BatchCase) -> None:
    batch = make_batch(max_threads=1)
    records = [jobs.path(f"stamp{i}.json") for i in range(2)]
    ids = [batch.issue(jobs.script("stamp", r, "0.5", cpu=0.5)) for r in records]
    for update in collect(batch, ids, QUICK + case.latency).values():
        assert update.reason is ExitReason.FINISHED, update
    first, second = (json.loads(Path(r).read_text()) for r in records)
    assert not overlap(first, second), (first, second)


def test_jobs_share_the_cpus(make_batch: Callable[..., BatchSystem], jobs: Jobs,
                             case: BatchCase) -> None:
    batch = make_batch(max_threads=4, max_cpus=2)
    cpus = batch.limits().cpu
    if cpus is None or cpus < 2:
        pytest.skip(f"the batch system gives at most {cpus} cores per job")
    big, small1, small2 = (jobs.path(f"{n}.json") for n in ("big", "small1", "small2"))
    ids = [batch.issue(jobs.script("stamp", big, "0.6", cpu=2)),
           batch.issue(jobs.script("stamp", small1, "0.6", cpu=1)),
           batch.issue(jobs.script("stamp", small2, "0.6", cpu=1))]
    for update in collect(batch, ids, QUICK + case.latency).values():
        assert update.reason is ExitReason.FINISHED, update
    stamps = {p: json.loads(Path(p).read_text()) for p in (big, small1, small2)}
    if batch.local:
        # --maxCpus bounds the cores in use at once here; on a cluster it is only the
        # largest request, and the scheduler shares the nodes
        assert not overlap(stamps[big], stamps[small1]), stamps
        assert not overlap(stamps[big], stamps[small2]), stamps
        # and the limit is not met by running one job at a time
        assert overlap(stamps[small1], stamps[small2]), stamps


# -------------------------------------------------------------------- close


def test_close_stops_everything(make_batch: Callable[..., BatchSystem], jobs: Jobs,
                                case: BatchCase) -> None:
    batch = make_batch(max_threads=3)
    specs = [jobs.script("sleep", jobs.path("plain.json"), "60", cpu=0.25),
             jobs.script("sleep", jobs.path("stubborn.json"), "60", "--ignore-term", cpu=0.25),
             jobs.worker(targets.sleep_recording, jobs.path("worker.json"), 60, cpu=0.25)]
    records = [jobs.path(n) for n in ("plain.json", "stubborn.json", "worker.json")]
    for spec in specs:
        batch.issue(spec)
    marker = jobs.path("ran.json")
    batch.issue(jobs.script("touch", marker, cpu=0.25))  # waits for a slot
    started = [wait_for_record(s, r, QUICK + case.latency) for s, r in zip(specs, records)]
    began = time.monotonic()
    batch.close()
    took = time.monotonic() - began
    assert took <= case.kill_grace + 5 + case.latency, f"close() took {took:.1f}s"
    assert_gone(batch, [s["pid"] for s in started], [s["pgid"] for s in started])
    time.sleep(0.2)
    assert not os.path.exists(marker), "a job waiting for a slot ran after close()"


# ------------------------------------------- lost jobs, wall time, resources


def test_a_job_whose_node_dies_is_reported(batch: BatchSystem, jobs: Jobs,
                                           case: BatchCase) -> None:
    """Its processes are SIGKILLed from outside, and on a cluster the job's own
    script process too (as when its node goes down): it is reported, not finished."""
    record = jobs.path("doomed.json")
    spec = jobs.script("sleep", record, "60")
    batch_id = batch.issue(spec)
    started = wait_for_record(spec, record, QUICK + case.latency)
    if not batch.local:
        os.kill(started["ppid"], signal.SIGKILL)  # the job's script (jobtree's runner)
    os.killpg(started["pgid"], signal.SIGKILL)
    update = only(collect(batch, [batch_id], QUICK + 2 * case.latency))
    # Grid Engine's accounting cannot tell a job killed from outside from one
    # cancelled: it may say KILLED; a pilot's target says PREEMPTED (its pilot
    # was lost: it runs again, without a try counted)
    assert update.reason in (ExitReason.LOST, ExitReason.FAILED, ExitReason.KILLED,
                             ExitReason.PREEMPTED), (update, log_of(spec))
    assert update.exit_code != 0, update
    assert_quiet(batch)


def test_time_is_an_estimate_and_never_stops_a_job(batch: BatchSystem, jobs: Jobs,
                                                    case: BatchCase) -> None:
    """A job that says time=1 and runs 4 s finishes on every batch system:
    ``time`` is an estimate (the wall time asked of a scheduler has a margin)."""
    record = jobs.path("slow.json")
    spec = jobs.script("stamp", record, "4", time=1)
    update = only(collect(batch, [batch.issue(spec)], 4 + QUICK + case.latency))
    assert update.reason is ExitReason.FINISHED, (update, log_of(spec))
    assert os.path.exists(record)


def test_a_job_over_its_time_limit(batch: BatchSystem, jobs: Jobs, case: BatchCase) -> None:
    """A timeLimit is a hard limit on every batch system: the job is stopped,
    the reason is TIMEOUT and the message names the limit."""
    record = jobs.path("slow.json")
    spec = jobs.script("stamp", record, "6", time=60, time_limit=2)
    update = only(collect(batch, [batch.issue(spec)], 6 + QUICK + case.latency))
    assert update.reason is ExitReason.TIMEOUT, (update, log_of(spec))
    assert "over its time limit (timeLimit=2.0s)" in (update.message or ""), update
    assert update.wall is not None and update.wall < 6, update
    assert not os.path.exists(record), "the job was not stopped at its time limit"
    assert_quiet(batch)


def test_resources_reach_the_job(make_batch: Callable[..., BatchSystem], jobs: Jobs,
                                 case: BatchCase, tmp_path: Path) -> None:
    """A job asking for 2 cores, 512 MiB and 10 minutes runs, and on a cluster
    its job script holds the scheduler's directives for them."""
    batch = make_batch()
    record = jobs.path("sized.json")
    spec = jobs.script("sleep", record, "60", cpu=2, memory=512 * 2**20, time=600)
    batch_id = batch.issue(spec)
    wait_for_record(spec, record, QUICK + case.latency)
    scripts = "".join(p.read_text() for p in tmp_path.glob("batch0/batch/subs/*.sh"))
    for directive in case.directives:
        assert directive in scripts, f"{directive!r} is not in the job script:\n{scripts}"
    batch.kill([batch_id])
    assert only(collect(batch, [batch_id], QUICK + case.latency)).reason is ExitReason.KILLED


def test_a_restarted_master_adopts_its_running_jobs(case: BatchCase, jobs: Jobs,
                                                    tmp_path: Path) -> None:
    """A master issues a job and is SIGKILLed; a new batch system on the same
    folder adopts the job, which keeps running (it is not issued twice), and
    can still kill it. singleMachine's jobs end with their master: it adopts none."""
    folder = tmp_path / "adopting"
    config, workdir, tree_id = cluster_files(folder, case.config)
    record = jobs.path("adopted.json")
    spec = jobs.script("sleep", record, "60")
    job = {"job_id": spec.job_id, "attempt": spec.attempt, "argv": list(spec.argv),
           "name": spec.name, "log_path": spec.log_path}
    plan = folder / "master.json"
    plan.write_text(json.dumps({"name": case.name, "config": config, "workdir": workdir,
                                "tree_id": tree_id, "job": job}))
    master = subprocess.Popen([sys.executable, "-m", "jobtree.testing.hang_master", str(plan)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert master.stdout is not None
        assert master.stdout.readline().startswith("issued "), "the master issued nothing"
        started = wait_for_record(spec, record, QUICK + case.latency)
    finally:
        master.kill()
        master.wait()
    batch = case.make(None, None, None, folder)
    try:
        adopted = batch.adopt([(spec.job_id, spec.attempt)])
        if batch.local:
            assert adopted == {}
            return
        assert list(adopted) == [(spec.job_id, spec.attempt)], adopted
        batch_id = adopted[(spec.job_id, spec.attempt)]
        assert batch_id in batch.issued()
        deadline = time.monotonic() + QUICK + case.latency
        while batch_id not in batch.running():
            assert time.monotonic() < deadline, "an adopted running job is not in running()"
            time.sleep(0.1)
        assert json.loads(Path(record).read_text()) == started, "the job was run again"
        batch.kill([batch_id])
        update = only(collect(batch, [batch_id], QUICK + case.latency))
        assert update.reason is ExitReason.KILLED, update
        assert_quiet(batch)
    finally:
        batch.close()
        try:
            os.killpg(started["pgid"], signal.SIGKILL)
        except ProcessLookupError:
            pass


#: what `from jobtree.testing.conformance import *` brings: the fixtures and the tests
__all__ = ["make_batch", "batch", "jobs",
           "test_limits_and_capacity_are_sane",
           "test_limits_follow_the_maxima_given",
           "test_ids_are_distinct_and_issued_until_reported",
           "test_exit_codes_and_reasons",
           "test_wall_time_is_the_time_the_job_ran",
           "test_a_job_that_dies_of_a_signal_is_not_finished",
           "test_a_command_that_cannot_start_fails",
           "test_next_update_times_out_without_busy_waiting",
           "test_running_lists_a_running_job_with_growing_seconds",
           "test_kill_a_running_job",
           "test_kill_right_after_issue",
           "test_kill_a_job_that_ignores_sigterm",
           "test_kill_a_job_waiting_for_a_slot",
           "test_a_killed_job_stays_issued_until_reported",
           "test_kill_takes_the_jobs_children",
           "test_the_log_gets_stdout_and_stderr",
           "test_a_worker_writes_its_result_and_finishes",
           "test_failing_workers_report_why",
           "test_over_memory_is_out_of_memory",
           "test_max_threads_one_runs_one_job_at_a_time",
           "test_jobs_share_the_cpus",
           "test_close_stops_everything",
           "test_a_job_whose_node_dies_is_reported",
           "test_time_is_an_estimate_and_never_stops_a_job",
           "test_a_job_over_its_time_limit",
           "test_resources_reach_the_job",
           "test_a_restarted_master_adopts_its_running_jobs",
           ]
