"""One conformance suite for every batch system, against the contract in
:mod:`jobtree.batch.base` only.

Every test runs for each entry of ``CASES`` (today singleMachine; the cluster
adapters are appended there). Jobs are real processes: plain commands
(``tests/batchjobs/job.py``, ``/bin/sh -c``) and real workers
(``python -m jobtree.worker TREE JOB ATTEMPT``, which singleMachine runs
through its fork server) on a small tree built by hand. Checks that a process
is gone read ``/proc`` and so run only for batch systems whose jobs run on
this machine (``BatchSystem.local``).

The one test at the end that knows an implementation (the singleMachine fork
server dying) is named ``test_single_machine_*``.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import os
import pickle
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import pytest

from jobtree import batch as batch_systems
from jobtree import serialize
from jobtree.batch import BatchJobId, BatchSystem, ExitReason, JobSpec, Update
from jobtree.batch import local as single_machine
from jobtree.batch.base import EXIT_MEMORY
from jobtree.paths import TreePaths
from jobtree.resources import Resources
from jobtree.target import FunctionWrappingTarget

from batchjobs import targets

TESTS = Path(__file__).resolve().parent
JOB = str(TESTS / "batchjobs" / "job.py")

# ----------------------------------------------------------------- the cases


@dataclasses.dataclass(frozen=True)
class BatchCase:
    """One batch system under test.

    Attributes:
        name: the --batchSystem name (the test id).
        make: creates a fresh one from (max_threads, max_cpus, max_memory).
        kill_grace: the most seconds a job that ignores SIGTERM lives after kill().
        latency: extra seconds to allow for a job to start or its end to be seen.
    """

    name: str
    make: Callable[[int | None, float | None, int | None], BatchSystem]
    kill_grace: float
    latency: float = 0.0


def _created(name: str) -> Callable[[int | None, float | None, int | None], BatchSystem]:
    return lambda threads, cpus, memory: batch_systems.create(name, threads, cpus, memory)


CASES = [
    BatchCase("singleMachine", _created("singleMachine"), single_machine.KILL_GRACE),
]

#: seconds for anything that should be quick (a job starting, a kill of a polite job)
QUICK = 15.0


@pytest.fixture(params=CASES, ids=[case.name for case in CASES])
def case(request: pytest.FixtureRequest) -> BatchCase:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def make_batch(case: BatchCase) -> Iterator[Callable[..., BatchSystem]]:
    """Makes batch systems with the given limits; closes them all afterwards."""
    made: list[BatchSystem] = []

    def make(max_threads: int | None = None, max_cpus: float | None = None,
             max_memory: int | None = None) -> BatchSystem:
        system = case.make(max_threads, max_cpus, max_memory)
        made.append(system)
        return system

    yield make
    for system in made:
        system.close()


@pytest.fixture
def batch(make_batch: Callable[..., BatchSystem]) -> BatchSystem:
    """A fresh batch system with its default limits, closed after the test."""
    return make_batch()


# ------------------------------------------------------------------ the jobs


class Jobs:
    """Builds JobSpecs for plain commands and for real workers under ``root``.

    Worker jobs need a tree as the worker reads it: ``config.json`` (as
    ``Master._write_worker_config`` writes it) and the job's input file (as
    ``Master._hand_over`` writes it). The worker never reads the index, so
    there is none.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.paths = TreePaths(str(root / "tree"))
        self._ids = itertools.count(1)
        self._tree_made = False

    def path(self, name: str) -> str:
        """A file under the test's folder (for records the jobs write)."""
        return str(self.root / name)

    def command(self, argv: Sequence[str], cpu: float = 1, name: str = "conformance") -> JobSpec:
        """A plain command."""
        job_id = next(self._ids)
        log = self.root / "logs" / f"{job_id}.log"
        log.parent.mkdir(exist_ok=True)
        return JobSpec(job_id=job_id, attempt=1, argv=list(argv),
                       resources=Resources(cpu=cpu), name=f"{name}{job_id}",
                       log_path=str(log))

    def script(self, *args: str, cpu: float = 1) -> JobSpec:
        """``python tests/batchjobs/job.py ARGS``."""
        return self.command([sys.executable, JOB, *args], cpu=cpu)

    def worker(self, fn: Callable[..., Any], *args: Any, cpu: float = 1,
               attempt: int = 1) -> JobSpec:
        """A real worker running ``fn(*args)`` as its target."""
        self._make_tree()
        job_id = next(self._ids)
        resources = Resources(cpu=cpu)
        target = FunctionWrappingTarget(fn, args, cpu=cpu)
        job = {"pickle": serialize.dump_target(target), "chain": job_id,
               "resources": resources.to_dict(), "description": f"{fn.__name__}{args!r}",
               "issued_at": time.time()}
        Path(self.paths.job_input(job_id)).write_bytes(pickle.dumps(job, 5))
        return JobSpec(job_id=job_id, attempt=attempt,
                       argv=[sys.executable, "-m", "jobtree.worker", self.paths.root,
                             str(job_id), str(attempt)],
                       resources=resources, name=f"jt{job_id}.{attempt}",
                       log_path=self.paths.log(job_id, attempt))

    def result(self, spec: JobSpec) -> dict[str, Any] | None:
        """The result file a worker left, or None."""
        try:
            data = Path(self.paths.result(spec.job_id, spec.attempt)).read_bytes()
        except FileNotFoundError:
            return None
        return pickle.loads(data)  # type: ignore[no-any-return]

    def _make_tree(self) -> None:
        if self._tree_made:
            return
        for folder in self.paths.folders():
            os.makedirs(folder, exist_ok=True)
        sys_path = [str(TESTS)] + [os.path.abspath(p) for p in sys.path
                                   if p and os.path.isdir(p)]
        config = {"tree_id": f"conformance-{os.getpid()}-{id(self)}",
                  "environ": dict(os.environ), "sys_path": sys_path, "cwd": str(self.root),
                  "defaults": Resources(cpu=1).to_dict(),
                  "limits": {"cpu": None, "memory": None}, "job_time": 0.0,
                  "stats": False, "log_level": logging.INFO}
        Path(self.paths.config).write_text(json.dumps(config), encoding="utf-8")
        self._tree_made = True


@pytest.fixture
def jobs(tmp_path: Path) -> Jobs:
    return Jobs(tmp_path)


# ------------------------------------------------------------------ helpers


def log_of(spec: JobSpec) -> str:
    try:
        return Path(spec.log_path).read_text(errors="replace")
    except FileNotFoundError:
        return "<no log file>"


def wait_for_record(spec: JobSpec, path: str, timeout: float) -> dict[str, Any]:
    """Waits for the JSON record a job writes when it has started."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return json.loads(Path(path).read_text())  # type: ignore[no-any-return]
        except (FileNotFoundError, ValueError):
            time.sleep(0.02)
    pytest.fail(f"job {spec.name} did not start within {timeout:g}s; log:\n{log_of(spec)}")


def collect(batch: BatchSystem, ids: Sequence[BatchJobId], timeout: float) -> dict[
        BatchJobId, Update]:
    """Polls next_update (as the master does) until every id is reported.

    Checks along the way that each id is reported once, that no other id is
    reported, and that issued() lists exactly the ids not yet reported.
    """
    pending = set(ids)
    updates: dict[BatchJobId, Update] = {}
    deadline = time.monotonic() + timeout
    while pending:
        left = deadline - time.monotonic()
        assert left > 0, f"no update within {timeout:g}s for {sorted(pending)}"
        assert pending <= batch.issued(), "a job not yet reported is missing from issued()"
        update = batch.next_update(min(left, 1.0))
        if update is None:
            continue
        assert update.batch_id not in updates, f"{update.batch_id} was reported twice"
        assert update.batch_id in pending, f"update for a job not waited for: {update}"
        pending.discard(update.batch_id)
        updates[update.batch_id] = update
        assert update.batch_id not in batch.issued(), "a reported job is still in issued()"
    return updates


def only(updates: dict[BatchJobId, Update]) -> Update:
    """The one update of a one-job collect()."""
    (update,) = updates.values()
    return update


def assert_quiet(batch: BatchSystem) -> None:
    """Nothing is issued any more and no further update comes."""
    assert batch.issued() == set()
    assert batch.next_update(0.2) is None


def alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in the process group ``pgid``."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry))
    return members


def assert_gone(batch: BatchSystem, pids: Sequence[int], pgids: Sequence[int] = (),
                timeout: float = 3.0) -> None:
    """The processes (and process groups) are gone, for batch systems on this machine."""
    if not batch.local:
        return
    deadline = time.monotonic() + timeout
    while True:
        left = [p for p in pids if alive(p)] + [p for g in pgids for p in group_members(g)]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not left, f"processes left behind: {left}"


def same_machine(batch: BatchSystem, record: dict[str, Any]) -> bool:
    import socket

    return batch.local and record["host"] == socket.gethostname()


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


EXITS = [(0, ExitReason.FINISHED), (1, ExitReason.FAILED), (2, ExitReason.FAILED),
         (7, ExitReason.FAILED), (EXIT_MEMORY, ExitReason.MEMLIMIT)]


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


def test_next_update_times_out_without_busy_waiting(batch: BatchSystem, jobs: Jobs,
                                                    case: BatchCase) -> None:
    for nothing_issued in (True, False):
        if not nothing_issued:
            record = jobs.path("sleeper.json")
            spec = jobs.script("sleep", record, "60")
            batch_id = batch.issue(spec)
            wait_for_record(spec, record, QUICK + case.latency)
        cpu, began = time.process_time(), time.monotonic()
        assert batch.next_update(1.0) is None
        took, used = time.monotonic() - began, time.process_time() - cpu
        assert 0.9 <= took <= 3.0, f"next_update(1.0) returned after {took:.2f}s"
        assert used < 0.3, f"next_update(1.0) used {used:.2f}s of CPU: a busy loop"
    assert batch.next_update(0) is None
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
