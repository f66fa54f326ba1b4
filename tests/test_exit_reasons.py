"""Why a job ended, on every scheduler: the accounting and status parsers, what
the job's own output says, and how the two become the Update of a target whose
task ended without an exit file (``jobfiles.update_for_lost``).

The scheduler outputs are recordings in ``tests/data/<scheduler>/`` (see the
README there for how each was made); no scheduler runs here. The real
schedulers' side is ``test_over_memory_is_out_of_memory`` in
``test_batch_conformance.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_command, run_script

from jobtree.batch import ExitReason
from jobtree.batch.adapter import SchedulerDialect
from jobtree.batch.base import EXIT_MEMORY, BatchJobId, Update
from jobtree.batch.gridengine import GridEngine
from jobtree.batch.jobfiles import Entry, JobFolder, Submitted, update_for_lost
from jobtree.batch.lsf import LSF
from jobtree.batch.native import NativeJob, NativeState, Request
from jobtree.batch.pbspro import PBSPro
from jobtree.batch.slurm import Slurm
from jobtree.batch.torque import Torque
from jobtree.results import failure_of

DATA = Path(__file__).resolve().parent / "data"


def entry(memory: int | None = 150 * 1024 ** 2, killed: bool = False) -> Entry:
    made = Entry(BatchJobId("7.1"), "7.1", ["python"], "/tmp/log", None,
                 Request(memory=memory), True)
    made.killed = killed
    return made


# ------------------------------------------------------------------ Slurm
def test_slurm_accounting_names_every_ending() -> None:
    rows = {r.id: r for r in Slurm().parse_accounting(
        (DATA / "slurm" / "sacct_endings.txt").read_text())}
    expected = {
        "101": (NativeState.FAILED, -9, "FAILED 0:9"),
        "102": (NativeState.OUT_OF_MEMORY, -125, "OUT_OF_MEMORY 0:125"),
        "103": (NativeState.TIMEOUT, 0, "TIMEOUT 0:0"),
        "104": (NativeState.CANCELLED, -15, "CANCELLED by 0 0:15"),
        "105_2": (NativeState.PREEMPTED, 0, "PREEMPTED 0:0"),
        "106": (NativeState.PREEMPTED, 0, "REQUEUED 0:0"),
        "107": (NativeState.NODE_FAILURE, 0, "NODE_FAIL 0:0"),
        "108": (NativeState.NODE_FAILURE, 0, "BOOT_FAIL 0:0"),
        "109": (NativeState.COMPLETED, 0, "COMPLETED 0:0"),
        "110": (NativeState.FAILED, 3, "FAILED 3:0"),
    }
    assert {i: (r.state, r.exit_code, r.said) for i, r in rows.items()} == expected


def test_slurm_listing_keeps_a_requeued_job_alive() -> None:
    """In squeue a requeued job waits to run again: it has not ended."""
    rows = Slurm().parse_status("12|jt|REQUEUED|0:03\n13|jt|PREEMPTED|0:05\n"
                                "14|jt|NODE_FAIL|0:05\n")
    assert [r.state for r in rows] == [NativeState.QUEUED, NativeState.PREEMPTED,
                                       NativeState.NODE_FAILURE]


@pytest.mark.parametrize(("name", "state"), [
    ("over_memory.out", NativeState.OUT_OF_MEMORY),
    ("oom_kill.out", NativeState.OUT_OF_MEMORY),
    ("time_limit.out", NativeState.TIMEOUT),
    ("preemption.out", NativeState.PREEMPTED),
    ("node_failure.out", NativeState.NODE_FAILURE),
])
def test_slurm_output_says_why(name: str, state: NativeState) -> None:
    said = Slurm().output_state((DATA / "slurm" / name).read_text())
    assert said is not None and said[0] is state, said


def test_slurm_memory_kill_is_out_of_memory_not_lost() -> None:
    """The memory kill of ``jobacct_gather`` (OverMemoryKill), recorded on
    the real Slurm: sacct says only FAILED 0:9, like any SIGKILL; the job's
    output says why."""
    slurm = Slurm()
    (row,) = slurm.parse_accounting((DATA / "slurm" / "sacct_over_memory.txt").read_text())
    assert (row.state, row.exit_code) == (NativeState.FAILED, -9)
    said = slurm.output_state((DATA / "slurm" / "over_memory.out").read_text())
    update = update_for_lost("slurm", entry(), row, row.id, said)
    assert update.reason is ExitReason.MEMLIMIT
    assert update.message is not None
    assert "more memory than the 150 MiB it asked for" in update.message
    assert "FAILED 0:9" in update.message and "Exceeded job memory limit" in update.message
    assert "without a word" not in update.message
    # without the output, a SIGKILL is all that is known
    plain = update_for_lost("slurm", entry(), row, row.id)
    assert plain.reason is ExitReason.FAILED
    assert plain.message is not None and "SIGKILL" in plain.message


def test_slurm_requeue_and_cancel_recorded() -> None:
    """``scontrol requeue`` and ``scancel`` of running jobs on the real Slurm:
    ``sacct --duplicates`` keeps the requeued run as REQUEUED, and the
    output of each says how slurmstepd stopped it."""
    slurm = Slurm()
    rows = slurm.parse_accounting((DATA / "slurm" / "sacct_requeue_cancel.txt").read_text())
    assert [(r.id, r.state) for r in rows] == [
        ("1171", NativeState.CANCELLED), ("1172", NativeState.PREEMPTED),
        ("1172", NativeState.CANCELLED)]
    said = slurm.output_state((DATA / "slurm" / "requeue.out").read_text())
    assert said is not None and said[0] is NativeState.PREEMPTED
    assert slurm.output_state((DATA / "slurm" / "cancel.out").read_text()) is None


@pytest.mark.parametrize(("line", "reason"), [
    ("102|OUT_OF_MEMORY|0:125|4", ExitReason.MEMLIMIT),
    ("103|TIMEOUT|0:0|60", ExitReason.TIMEOUT),
    ("105|PREEMPTED|0:0|60", ExitReason.PREEMPTED),
    ("106|REQUEUED|0:0|60", ExitReason.PREEMPTED),
    ("107|NODE_FAIL|0:0|60", ExitReason.NODE_FAILURE),
    ("104|CANCELLED by 0|0:15|3", ExitReason.KILLED),
])
def test_slurm_record_becomes_the_reason(line: str, reason: ExitReason) -> None:
    (row,) = Slurm().parse_accounting(line + "\n")
    update = update_for_lost("slurm", entry(), row, row.id)
    assert update.reason is reason, update
    assert update.message is not None and row.id in update.message


def test_definite_record_wins_over_the_output() -> None:
    """A specific record (TIMEOUT, recorded on the real Slurm) is not overruled
    by a memory warning in the output."""
    (row,) = Slurm().parse_accounting((DATA / "slurm" / "sacct_timeout.txt").read_text())
    assert row.state is NativeState.TIMEOUT
    said = (NativeState.OUT_OF_MEMORY, "slurmstepd: error: Exceeded job memory limit")
    assert update_for_lost("slurm", entry(), row, row.id, said).reason is ExitReason.TIMEOUT


def test_no_record_the_output_decides_and_a_kill_asked_for_stays_a_kill() -> None:
    said = Slurm().output_state((DATA / "slurm" / "time_limit.out").read_text())
    assert update_for_lost("slurm", entry(), None, "5", said).reason is ExitReason.TIMEOUT
    assert update_for_lost("slurm", entry(), None, "5", None).reason is ExitReason.LOST
    assert update_for_lost("slurm", entry(killed=True), None, "5",
                           said).reason is ExitReason.KILLED


# ------------------------------------------------------------ Grid Engine
def test_gridengine_memory_error_in_the_output_is_out_of_memory() -> None:
    """Under h_vmem (a ``ulimit -v``) the runner's own Python may fail to
    start: qacct says only ``failed 0``, ``exit_status 1``; the output says
    MemoryError."""
    sge = GridEngine()
    (row,) = sge.parse_accounting((DATA / "gridengine" / "qacct_exit3.txt").read_text())
    said = sge.output_state((DATA / "gridengine" / "vmem_python.out").read_text())
    assert said is not None and said[0] is NativeState.OUT_OF_MEMORY
    update = update_for_lost("gridEngine", entry(), row, row.id, said)
    assert update.reason is ExitReason.MEMLIMIT
    assert update.message is not None and "failed 0" in update.message


def test_gridengine_h_vmem_and_h_rt_records() -> None:
    sge = GridEngine()
    for name, reason in (("qacct_h_vmem.txt", ExitReason.MEMLIMIT),
                         ("qacct_h_rt.txt", ExitReason.TIMEOUT)):
        (row,) = sge.parse_accounting((DATA / "gridengine" / name).read_text())
        update = update_for_lost("gridEngine", entry(), row, row.id)
        assert update.reason is reason, (name, update)
        assert update.message is not None and "failed 37" in update.message


# ------------------------------------------------------------ Torque, PBS Pro
@pytest.mark.parametrize("dialect", [Torque(), PBSPro()], ids=["torque", "pbspro"])
def test_pbs_output_tells_a_walltime_kill_from_qdel(dialect: SchedulerDialect) -> None:
    """Older sites report a wall-time kill as 271, like qdel's SIGTERM; the
    MOM's line in the job's output tells them apart."""
    row = NativeJob("12.server", NativeState.CANCELLED, 271, said="exit status 271")
    for name, reason in (("walltime.out", ExitReason.TIMEOUT),
                         ("mem.out", ExitReason.MEMLIMIT)):
        said = dialect.output_state((DATA / "pbspro" / name).read_text())
        assert update_for_lost(dialect.name, entry(), row, row.id, said).reason is reason
    assert update_for_lost(dialect.name, entry(), row, row.id).reason is ExitReason.KILLED


def test_pbs_exit_statuses() -> None:
    from jobtree.batch import _pbs
    torque = dict(timeout=frozenset({-11}), memory=frozenset({-10}))
    pbspro = dict(timeout=frozenset({-29}), memory=frozenset({-27, -26}))
    assert _pbs.finished_state(-10, **torque) is NativeState.OUT_OF_MEMORY
    assert _pbs.finished_state(-11, **torque) is NativeState.TIMEOUT
    assert _pbs.finished_state(-27, **pbspro) is NativeState.OUT_OF_MEMORY
    assert _pbs.finished_state(-26, **pbspro) is NativeState.OUT_OF_MEMORY
    assert _pbs.finished_state(-29, **pbspro) is NativeState.TIMEOUT


# ------------------------------------------------------------------- LSF
def test_lsf_exit_reasons() -> None:
    rows = {r.id: r for r in LSF().parse_status(
        (DATA / "lsf" / "bjobs_endings.out").read_text())}
    assert {i: r.state for i, r in rows.items()} == {
        "301": NativeState.OUT_OF_MEMORY, "302": NativeState.TIMEOUT,
        "303": NativeState.PREEMPTED, "304": NativeState.PREEMPTED,
        "305": NativeState.TIMEOUT, "306": NativeState.CANCELLED,
        "307": NativeState.FAILED}
    assert rows["301"].said is not None and rows["301"].said.startswith("TERM_MEMLIMIT")


def test_lsf_job_report_in_the_output() -> None:
    said = LSF().output_state((DATA / "lsf" / "memlimit_report.out").read_text())
    assert said is not None and said[0] is NativeState.OUT_OF_MEMORY
    assert said[1].startswith("TERM_MEMLIMIT")


# ------------------------------------------------- the task's output file
@pytest.mark.parametrize(("dialect", "name"), [
    (Slurm(), "s1.2.out"), (GridEngine(), "s1.2.out"), (Torque(), "s1.out-2"),
    (PBSPro(), "s1.2.out"), (LSF(), "s1.2.out")])
def test_output_of_the_task_that_ran_the_target(tmp_path: Path, dialect: SchedulerDialect,
                                               name: str) -> None:
    """The output read is the one the scheduler wrote for the entry's array task."""
    folder = JobFolder(str(tmp_path))
    folder.create({})
    (tmp_path / "out" / name).write_text("slurmstepd: error: Exceeded job memory limit\n"
                                         "MemoryError\n")
    (tmp_path / "out" / dialect.output_name("s1", 1)).write_text("all fine\n")
    first, second = entry(), entry()
    sub = Submitted("s1", [first, second], 2, False, 0.0, "9")
    first.sub = second.sub = sub
    assert folder.output_says(dialect, first) is None
    said = folder.output_says(dialect, second)
    assert said is not None and said[0] is NativeState.OUT_OF_MEMORY


# --------------------------------------------------------- the master's side
@pytest.mark.parametrize("reason", list(ExitReason))
def test_every_reason_reaches_the_failure_record(reason: ExitReason) -> None:
    """The master records each reason as it came (item 5 decides later which
    count as a failed try)."""
    if reason is ExitReason.FINISHED:
        return
    got, message = failure_of(Update(BatchJobId("1"), None, reason, message="why"), None,
                              False)
    assert (got, message) == (reason, "why")


# ------------------------------------------------------------ singleMachine
def test_memory_error_on_single_machine_is_out_of_memory(tmp_path: Path) -> None:
    """A target that really runs out of memory (its address space capped, as
    h_vmem caps it) fails with the reason ``out of memory``, and its message
    says so; the rest of the tree runs."""
    tree = tmp_path / "jt"
    done = run_script("hungry.py", "--jobTree", str(tree), "--retryCount", "0",
                      "--logLevel", "ERROR", "--maxThreads", "2")
    assert done.returncode == 1, done.stderr
    status = run_command("status", "--jobTree", str(tree), "--json")
    assert status.returncode == 0, status.stderr
    (failed,) = json.loads(status.stdout)["failed"]
    assert failed["description"].startswith("Hungry"), failed
    assert failed["reason"] == "out of memory", failed
    assert failed["exit_code"] == EXIT_MEMORY, failed
    assert "MemoryError: the target ran out of memory" in failed["message"], failed


# ------------------------------------- a runner stopped by the scheduler's signal
@pytest.mark.parametrize(("output", "reason"), [
    ("preemption.out", ExitReason.PREEMPTED), ("time_limit.out", ExitReason.TIMEOUT),
    ("requeue.out", ExitReason.PREEMPTED), ("cancel.out", ExitReason.KILLED)])
def test_runner_stopped_by_slurm_says_why(tmp_path: Path, output: str,
                                          reason: ExitReason) -> None:
    """slurmstepd writes why into the job's output before it sends SIGTERM, so
    an exit file that says only "killed" (the runner caught the SIGTERM) is
    refined by it; a plain ``scancel`` stays a kill."""
    folder = JobFolder(str(tmp_path))
    folder.create({})
    (tmp_path / "out" / "s1.out").write_text((DATA / "slurm" / output).read_text())
    target = entry()
    target.sub = Submitted("s1", [target], 1, False, 0.0, "1172")
    record = {"code": -15, "reason": "killed", "wall": 3.0}
    update = folder.exit_update(Slurm(), target, record, "1172")
    assert update.reason is reason, update
    if reason is not ExitReason.KILLED:
        assert update.message is not None and "DUE TO" in update.message
    target.killed = True  # jobtree asked for the kill: the output does not matter
    assert folder.exit_update(Slurm(), target, record, "1172").reason is ExitReason.KILLED


def test_a_requeue_is_told_apart_after_the_output_is_rewritten(tmp_path: Path) -> None:
    """A requeued Slurm task's output is rewritten when it starts again, so the
    runner copies the output's end into the exit file of the entry it stopped;
    an entry an earlier incarnation left is given up as ``requeued``."""
    folder = JobFolder(str(tmp_path))
    folder.create({})
    (tmp_path / "out" / "s1.out").write_text("")  # the restarted task's fresh output
    target = entry()
    target.sub = Submitted("s1", [target], 1, False, 0.0, "1172")
    said = (DATA / "slurm" / "requeue.out").read_text()
    record = {"code": -15, "reason": "killed", "wall": 3.0, "said": said}
    assert folder.exit_update(Slurm(), target, record, "1172").reason is ExitReason.PREEMPTED
    stranded = folder.exit_update(Slurm(), target, {"code": None, "reason": "requeued",
                                                    "claimed_on": "n1"}, "1172")
    assert stranded.reason is ExitReason.PREEMPTED and "requeued job 1172" in (
        stranded.message or "")


def test_settle_reads_the_exit_file_first(tmp_path: Path) -> None:
    folder = JobFolder(str(tmp_path))
    folder.create({})
    (tmp_path / "out" / "s1.out").write_text((DATA / "slurm" / "over_memory.out").read_text())
    target = entry()
    target.sub = Submitted("s1", [target], 1, False, 0.0, "1169")
    (row,) = Slurm().parse_accounting((DATA / "slurm" / "sacct_over_memory.txt").read_text())
    assert folder.settle(Slurm(), target, row, "1169").reason is ExitReason.MEMLIMIT
    (tmp_path / "exit" / "7.1.exit").write_text('{"code": 0, "wall": 1.0}')
    assert folder.settle(Slurm(), target, row, "1169").reason is ExitReason.FINISHED
