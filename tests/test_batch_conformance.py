"""The conformance suite (:mod:`jobtree.testing.conformance`) for every
batch system of jobtree: each test runs for each entry of ``CASES``
(singleMachine, the cluster adapters against the real scheduler where it runs
here, else against a fake in ``tests/fakes/``, and DRMAA on real Grid
Engine). The suite lives in the package so that a plugin's authors can run
it too (docs/plugins.md).

The one test at the end that knows an implementation (the singleMachine fork
server dying) is named ``test_single_machine_*``.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest
from conftest import require_scheduler

from jobtree.batch import ExitReason
from jobtree.batch import local as single_machine
from jobtree.batch import runner
from jobtree.testing import QUICK, BatchCase, by_name, collect, targets
from jobtree.testing.conformance import *  # noqa: F403 - the suite's fixtures and tests
from jobtree.testing.harness import Jobs, assert_gone, assert_quiet, log_of, wait_for_record

TESTS = Path(__file__).resolve().parent
FAKES = TESTS / "fakes"
PILOTS = "pilots = 3\npilot_idle = 20\npilot_walltime = 30m\n"


def fake_allocation_here(monkeypatch: pytest.MonkeyPatch, cores: int = 2) -> None:
    """Makes this process (and what it starts) look like one inside a Slurm
    allocation of ``cores`` cores of this machine, as Slurm describes one. On
    one node the launcher is not used, so --batchSystem allocation is then
    tested for real: its slot accounting and the fork server."""
    host = socket.gethostname()
    for name, value in {"SLURM_JOB_ID": "1", "SLURM_JOB_NODELIST": host,
                        "SLURMD_NODENAME": host, "SLURM_JOB_CPUS_PER_NODE": str(cores),
                        "SLURM_CPUS_ON_NODE": str(cores)}.items():
        monkeypatch.setenv(name, value)


CASES = [
    BatchCase("singleMachine", by_name("singleMachine"), single_machine.KILL_GRACE),
    # inside a (faked) Slurm allocation of 2 cores of this machine
    BatchCase("allocation", by_name("allocation"), single_machine.KILL_GRACE),
    BatchCase("slurm", by_name("slurm"), runner.KILL_GRACE + 2, latency=10,
              directives=("#SBATCH --cpus-per-task=2", "#SBATCH --mem=512M",
                          "#SBATCH --time=")),
    BatchCase("gridEngine", by_name("gridEngine"), runner.KILL_GRACE + 2, latency=10,
              # per slot: (512 MiB + the 512 MiB vmem_allowance) / 2 slots
              directives=("#$ -pe smp 2", "h_vmem=512M", "h_rt=")),
    # pilots: the one-core jobs run in pilot jobs (up to 3 at once, so that the
    # tests of --maxThreads 3 find 3 slots); the two-core one, as a job of its own
    BatchCase("slurm", by_name("slurm", PILOTS), runner.KILL_GRACE + 2, latency=10,
              directives=("#SBATCH --cpus-per-task=2",), config=PILOTS),
    BatchCase("gridEngine", by_name("gridEngine", PILOTS), runner.KILL_GRACE + 2, latency=10,
              directives=("#$ -pe smp 2",), config=PILOTS),
    BatchCase("torque", by_name("torque"), runner.KILL_GRACE + 2, latency=5,
              path=str(FAKES / "torque"), directives=("ppn=2", "mem=512mb", "walltime=")),
    BatchCase("pbspro", by_name("pbspro"), runner.KILL_GRACE + 2, latency=5,
              path=str(FAKES / "pbspro"), directives=("ncpus=2", "mem=512mb", "walltime=")),
    BatchCase("lsf", by_name("lsf"), runner.KILL_GRACE + 2, latency=5,
              path=str(FAKES / "lsf"), directives=("#BSUB -n 2", "mem=256", "#BSUB -W")),
    # real Grid Engine through its DRMAA library (the native specification
    # is a comment of the job script)
    BatchCase("drmaa", by_name("drmaa"), runner.KILL_GRACE + 2, latency=10,
              directives=("-pe smp 2", "h_vmem=512M", "h_rt=")),
]


@pytest.fixture(params=CASES, ids=[case.id for case in CASES])
def case(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch,
         tmp_path_factory: pytest.TempPathFactory) -> BatchCase:
    """The batch system under test, its scheduler checked (or faked) first."""
    case: BatchCase = request.param
    if case.path:
        monkeypatch.setenv("PATH", f"{case.path}{os.pathsep}{os.environ['PATH']}")
        state = tmp_path_factory.mktemp(f"fake-{case.name}")
        monkeypatch.setenv("FAKE_PBS_DIR", str(state))
        monkeypatch.setenv("FAKE_LSF_DIR", str(state))
    if case.name == "allocation":
        fake_allocation_here(monkeypatch)
    require_scheduler(case.name)
    return case


# ------------------------------------------- singleMachine: its fork server


#: seconds within which the jobs of a dead fork server must be reported
LOST_WITHIN = 5.0


def _kill_fork_server(batch: single_machine.SingleMachine) -> None:
    server = batch._server
    assert server is not None, "the worker jobs did not go through the fork server"
    server.process.kill()
    server.process.wait(timeout=QUICK)
    deadline = time.monotonic() + QUICK
    while server.alive:  # the reader thread has seen the end of its output
        assert time.monotonic() < deadline
        time.sleep(0.01)


@pytest.mark.parametrize("issue_first", [False, True],
                         ids=["collect-then-issue", "issue-then-collect"])
def test_single_machine_fork_server_death_loses_no_job(jobs: Jobs, issue_first: bool) -> None:
    """The fork server's jobs are reported when it dies, and later workers run,
    whether the next issue() comes before or after the death is reported."""
    batch = single_machine.SingleMachine(max_threads=4)
    try:
        records = [jobs.path(f"worker{i}.json") for i in range(2)]
        specs = [jobs.worker(targets.sleep_recording, r, 60, cpu=0.5) for r in records]
        ids = [batch.issue(s) for s in specs]
        started = [wait_for_record(s, r, QUICK) for s, r in zip(specs, records)]
        _kill_fork_server(batch)
        later = jobs.worker(targets.say, "after")
        if issue_first:
            later_id = batch.issue(later)
            updates = collect(batch, [*ids, later_id], LOST_WITHIN)
        else:
            updates = collect(batch, ids, LOST_WITHIN)
            later_id = batch.issue(later)
            updates.update(collect(batch, [later_id], QUICK))
        for batch_id in ids:
            assert updates[batch_id].reason in (
                ExitReason.LOST, ExitReason.FAILED, ExitReason.KILLED), updates[batch_id]
        assert updates[later_id].reason is ExitReason.FINISHED, (updates[later_id],
                                                                 log_of(later))
        assert jobs.result(later) is not None
        assert_gone(batch, [s["pid"] for s in started], [s["pgid"] for s in started])
        assert_quiet(batch)
    finally:
        batch.close()
