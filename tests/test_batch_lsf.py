"""The LSF adapter: directives and command lines against golden files, parsers
against recorded outputs, and the whole cycle against the fake LSF in
tests/fakes/lsf (bsub, bjobs, bkill over a locked JSON file, jobs really run)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from jobtree.batch.cluster import ClusterBatchSystem
from jobtree.batch.settings import ClusterSettings
from jobtree.batch.lsf import LSF
from jobtree.batch.native import NativeJob, NativeState, Request, Submission
from jobtree.errors import ResourceError

HERE = Path(__file__).resolve().parent
DATA = HERE / "data" / "lsf"
FAKES = HERE / "fakes" / "lsf"
MiB = 1024 ** 2
GiB = 1024 ** 3


@pytest.fixture
def lsf() -> LSF:
    return LSF()


def submission(tasks: int = 1, **request: object) -> Submission:
    return Submission(name="jt-3f2a", script="/tree/jobs/000001.sh",
                      log_stem="/tree/logs/000001", tasks=tasks,
                      request=Request(**request),  # type: ignore[arg-type]
                      workdir="/tree/work")


# ------------------------------------------------------------------ golden

GOLDEN = {
    "plain": submission(),
    "array": submission(tasks=8, memory=2 * GiB, walltime=5400),
    "mpi": submission(nodes=2, processes=4, cores=2, memory=16 * GiB, walltime=59),
    "full": submission(cores=4, memory=10 * GiB, walltime=7200, disk=20 * GiB,
                       disk_resource="tmp", gpus=2,
                       queue="gpu", account="proj42", parallel_environment="smp",
                       extra=("-x", '-R "select[avx2]"'), warn_before=300),
}


@pytest.mark.parametrize("case", sorted(GOLDEN))
def test_directives_match_golden(lsf: LSF, case: str) -> None:
    expected = (DATA / f"{case}.golden").read_text().splitlines()
    assert lsf.directives(GOLDEN[case]) == expected


def test_submit_command_feeds_the_script_on_stdin(lsf: LSF) -> None:
    assert lsf.script_on_stdin
    assert lsf.submit_command(GOLDEN["array"]) == (["bsub"], None)


def test_memory_is_divided_over_the_slots_of_a_node(lsf: LSF) -> None:
    lines = lsf.directives(submission(cores=3, memory=1000 * MiB))
    assert '#BSUB -R "span[hosts=1] rusage[mem=334]"' in lines
    assert "#BSUB -M 1000" in lines


@pytest.mark.parametrize(("request_args", "message"), [
    ({"cores": 0}, "at least one"),
    ({"walltime": 0}, "wall time"),
])
def test_impossible_requests_are_refused(lsf: LSF, request_args: dict[str, object],
                                         message: str) -> None:
    with pytest.raises(ResourceError, match=message):
        lsf.directives(submission(**request_args))


def test_array_names_are_checked(lsf: LSF) -> None:
    bad_name = Submission(name="my tree", script="s", log_stem="l", tasks=2,
                          request=Request(), workdir="/w")
    with pytest.raises(ResourceError, match="array names"):
        lsf.directives(bad_name)


# ----------------------------------------------------------------- parsers

@pytest.mark.parametrize(("sample", "job_id"), [
    ("bsub_submitted.out", "4711"), ("bsub_submitted_default.out", "4712"),
    ("bsub_submitted_after_retry.out", "4713")])
def test_parse_submit(lsf: LSF, sample: str, job_id: str) -> None:
    assert lsf.parse_submit((DATA / sample).read_text()) == job_id


def test_parse_submit_without_an_id_raises(lsf: LSF) -> None:
    with pytest.raises(ValueError):
        lsf.parse_submit((DATA / "bsub_too_many_processors.err").read_text())


def test_task_ids(lsf: LSF) -> None:
    assert lsf.task_id("123", 4) == "123[4]"
    assert lsf.task_id("123", None) == "123"


def test_status_command(lsf: LSF) -> None:
    assert lsf.status_command("jt-3f2a") == [
        "bjobs", "-a", "-noheader", "-o",
        "jobid jobindex stat exit_code exit_reason run_time job_name delimiter='|'",
        "-J", "jt-3f2a"]


def test_parse_status(lsf: LSF) -> None:
    rows = {row.id: row for row in lsf.parse_status((DATA / "bjobs_status.out").read_text())}
    S = NativeState
    assert rows["4711"] == NativeJob("4711", S.COMPLETED, 0, 35.0, "jt-3f2a")
    assert rows["4712[1]"] == NativeJob("4712[1]", S.COMPLETED, 0, 12.0, "jt-3f2a")
    assert rows["4712[2]"] == NativeJob("4712[2]", S.FAILED, 1, 3.0, "jt-3f2a")
    assert rows["4712[3]"].state is S.RUNNING and rows["4712[3]"].exit_code is None
    assert rows["4712[4]"].state is S.QUEUED
    assert (rows["4713"].state, rows["4713"].exit_code, rows["4713"].elapsed) == (
        S.TIMEOUT, 140, 3601.0)
    assert rows["4714"].state is S.OUT_OF_MEMORY
    assert rows["4715"].state is S.CANCELLED
    assert rows["4716"].state is S.LOST and rows["4719"].state is S.LOST
    assert rows["4717"].state is S.QUEUED
    assert rows["4718"].state is S.RUNNING
    assert rows["4720"].state is S.TIMEOUT          # the description without the keyword
    assert rows["4721"].name == "jt-3f2a|with|bars"
    assert len(rows) == 14


def test_parse_status_ignores_tables_and_messages(lsf: LSF) -> None:
    assert lsf.parse_status((DATA / "bjobs_default.out").read_text()) == []
    assert lsf.parse_status("") == []


@pytest.mark.parametrize("sample", ["bjobs_name_not_found.err", "bjobs_no_unfinished.err",
                                    "bkill_finished.err", "bkill_no_match.err"])
def test_nothing_to_list_or_kill_is_not_an_error(lsf: LSF, sample: str) -> None:
    stderr = (DATA / sample).read_text()
    assert lsf.no_jobs(255, stderr)
    assert not lsf.transient(255, stderr)


@pytest.mark.parametrize("sample", ["lsf_down.err", "lim_down.err",
                                    "mbatchd_not_responding.err",
                                    "bsub_submitted_after_retry.out"])
def test_daemons_down_is_transient(lsf: LSF, sample: str) -> None:
    stderr = (DATA / sample).read_text()
    assert lsf.transient(255, stderr)
    assert not lsf.no_jobs(255, stderr)


def test_refused_submission_is_not_transient(lsf: LSF) -> None:
    stderr = (DATA / "bsub_too_many_processors.err").read_text()
    assert not lsf.transient(255, stderr) and not lsf.no_jobs(255, stderr)
    assert lsf.transient(None, "")


def test_cancel_commands(lsf: LSF) -> None:
    assert lsf.cancel_command(["4711", "4712[3]"]) == ["bkill", "4711", "4712[3]"]
    assert lsf.cancel_by_name_command("jt-3f2a") == ["bkill", "-J", "jt-3f2a", "0"]
    assert lsf.accounting_command(["4711"], "jt-3f2a") is None


# --------------------------------------------------------------- the fake

class FakeLSF:
    """Runs the fake LSF's commands in one state folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.state = root / "state"
        self.env = {**os.environ, "PATH": f"{FAKES}{os.pathsep}{os.environ['PATH']}",
                    "FAKE_LSF_DIR": str(self.state), "FAKE_LSF_MINUTE": "1",
                    "FAKE_LSF_TERMINATE_INTERVAL": "0.3", "FAKE_LSF_RUNLIMIT_GRACE": "2",
                    "FAKE_LSF_SLOTS": "4"}

    def run(self, argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, input=stdin, capture_output=True, text=True, env=self.env,
                              cwd=self.root, timeout=30)

    def submit(self, lsf: LSF, job: Submission, body: str, limit: int | None = None) -> str:
        """Submits ``body`` as ``job``; ``limit`` adds LSF's ``%L`` to an array's
        name (at most L elements running at once), which jobtree never asks for."""
        directives = lsf.directives(job)
        if limit is not None:
            directives = [line.replace(f"[1-{job.tasks}]", f"[1-{job.tasks}]%{limit}")
                          for line in directives]
        script = "\n".join(["#!/bin/sh", *directives, body, ""])
        Path(job.script).write_text(script)
        argv, stdin = lsf.submit_command(job)
        done = self.run(argv, stdin if stdin is not None else Path(job.script).read_text())
        assert done.returncode == 0, done.stderr
        return lsf.parse_submit(done.stdout)

    def status(self, lsf: LSF, name: str) -> dict[str, NativeJob]:
        done = self.run(lsf.status_command(name))
        if done.returncode != 0:
            assert lsf.no_jobs(done.returncode, done.stderr), done.stderr
        return {row.id: row for row in lsf.parse_status(done.stdout)}

    def pgids(self) -> list[int]:
        jobs = json.loads((self.state / "state.json").read_text())["jobs"]
        return [job["pgid"] for job in jobs.values() if job["pgid"]]


def wait_for(check: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.time() + timeout
    while not check():
        assert time.time() < deadline, "timed out"
        time.sleep(0.1)


def group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeLSF]:
    cluster = FakeLSF(tmp_path)
    yield cluster
    cluster.run(["bkill", "0"])
    for pgid in cluster.pgids():
        wait_for(lambda: group_gone(pgid))
    if (cluster.state / "state.json").exists():
        wait_for(lambda: not any(j["stat"] in ("PEND", "RUN") for j in json.loads(
            (cluster.state / "state.json").read_text())["jobs"].values()))


def job(tmp_path: Path, name: str = "jt-3f2a", **kwargs: object) -> Submission:
    tasks = int(kwargs.pop("tasks", 1))  # type: ignore[arg-type]
    return Submission(name=name, script=str(tmp_path / f"{name}.sh"),
                      log_stem=str(tmp_path / name), tasks=tasks,
                      request=Request(**kwargs), workdir=str(tmp_path))  # type: ignore[arg-type]


def test_fake_runs_a_job_with_lsf_environment(fake: FakeLSF, lsf: LSF, tmp_path: Path) -> None:
    job_id = fake.submit(lsf, job(tmp_path, cores=2),
                         'echo "$LSB_JOBID $LSB_JOBINDEX $LSB_DJOB_NUMPROC $PWD"; echo err >&2')
    wait_for(lambda: fake.status(lsf, "jt-3f2a")[job_id].state is NativeState.COMPLETED)
    row = fake.status(lsf, "jt-3f2a")[job_id]
    assert (row.exit_code, row.name) == (0, "jt-3f2a")
    assert (tmp_path / "jt-3f2a.out").read_text() == f"{job_id} 0 2 {tmp_path}\nerr\n"
    table = fake.run(["bjobs", "-a"])
    assert table.stdout.splitlines()[0].split() == [
        "JOBID", "USER", "STAT", "QUEUE", "FROM_HOST", "EXEC_HOST", "JOB_NAME", "SUBMIT_TIME"]
    assert fake.run(["bjobs"]).stderr == "No unfinished job found\n"


def test_fake_reports_failures_and_missing_jobs(fake: FakeLSF, lsf: LSF, tmp_path: Path) -> None:
    assert fake.status(lsf, "jt-3f2a") == {}
    job_id = fake.submit(lsf, job(tmp_path), "exit 3")
    wait_for(lambda: fake.status(lsf, "jt-3f2a")[job_id].state is NativeState.FAILED)
    assert fake.status(lsf, "jt-3f2a")[job_id].exit_code == 3
    missing = fake.run(["bkill", "99"])
    assert (missing.returncode, missing.stderr) == (255, "Job <99>: No matching job found\n")
    finished = fake.run(["bkill", job_id])
    assert finished.stderr == f"Job <{job_id}>: Job has already finished\n"
    assert lsf.no_jobs(finished.returncode, finished.stderr)


def test_fake_bkill_kills_the_process_group(fake: FakeLSF, lsf: LSF, tmp_path: Path) -> None:
    job_id = fake.submit(lsf, job(tmp_path), "sleep 60 & sleep 60; wait")
    wait_for(lambda: bool(fake.pgids()))
    wait_for(lambda: fake.status(lsf, "jt-3f2a")[job_id].state is NativeState.RUNNING)
    done = fake.run(lsf.cancel_command([job_id]))
    assert done.stdout == f"Job <{job_id}> is being terminated\n"
    wait_for(lambda: fake.status(lsf, "jt-3f2a")[job_id].state is NativeState.CANCELLED)
    assert fake.status(lsf, "jt-3f2a")[job_id].exit_code in (130, 143, 137)
    wait_for(lambda: all(group_gone(pgid) for pgid in fake.pgids()), timeout=5)


def test_fake_memory_limit_is_term_memlimit(fake: FakeLSF, lsf: LSF, tmp_path: Path) -> None:
    """Over its ``-M``, a job is killed at once (as with cgroup enforcement):
    exit code 137, ``TERM_MEMLIMIT``, and LSF's job report in its output says so."""
    body = (f"{sys.executable} -c 'import time; data = b\"x\" * (200 * 1024 ** 2); "
            f"time.sleep(30)'")
    job_id = fake.submit(lsf, job(tmp_path, memory=60 * MiB), body)
    wait_for(lambda: fake.status(lsf, "jt-3f2a")[job_id].state is NativeState.OUT_OF_MEMORY)
    row = fake.status(lsf, "jt-3f2a")[job_id]
    assert row.exit_code == 137 and row.said is not None and "TERM_MEMLIMIT" in row.said
    text = (tmp_path / "jt-3f2a.out").read_text()
    assert "Exited with exit code 137." in text, text
    said = lsf.output_state(text)
    assert said is not None and said[0] is NativeState.OUT_OF_MEMORY


def test_fake_run_limit_is_a_timeout(fake: FakeLSF, lsf: LSF, tmp_path: Path) -> None:
    job_id = fake.submit(lsf, job(tmp_path, walltime=60), "sleep 30")   # -W 1 = 1 s here
    wait_for(lambda: fake.status(lsf, "jt-3f2a")[job_id].state is NativeState.TIMEOUT)
    assert fake.status(lsf, "jt-3f2a")[job_id].exit_code == 140         # 128 + SIGUSR2
    stubborn = fake.submit(lsf, job(tmp_path, name="jt-stub", walltime=60),
                           "trap '' USR2 INT; sleep 30")
    wait_for(lambda: fake.status(lsf, "jt-stub")[stubborn].state is NativeState.TIMEOUT)
    assert fake.status(lsf, "jt-stub")[stubborn].exit_code in (143, 137)


def test_fake_array_respects_the_running_limit(fake: FakeLSF, lsf: LSF, tmp_path: Path) -> None:
    stamp = "$(date +%s.%N)"
    body = f'echo "$LSB_JOBINDEX start {stamp}"; sleep 0.6; echo "$LSB_JOBINDEX end {stamp}"'
    job_id = fake.submit(lsf, job(tmp_path, tasks=5), body, limit=2)
    ids = [lsf.task_id(job_id, index) for index in range(1, 6)]
    rows = fake.status(lsf, "jt-3f2a")
    assert sorted(rows) == sorted(ids)
    assert sum(row.state is NativeState.RUNNING for row in rows.values()) <= 2
    wait_for(lambda: all(r.state is NativeState.COMPLETED
                         for r in fake.status(lsf, "jt-3f2a").values()))
    events = []
    for index in range(1, 6):
        lines = (tmp_path / f"jt-3f2a.{index}.out").read_text().split()
        assert lines[0] == str(index)
        events += [(float(lines[2]), 1), (float(lines[5]), -1)]
    running = peak = 0
    for _, step in sorted(events):
        running += step
        peak = max(peak, running)
    assert peak <= 2
    assert fake.run(["bjobs", "-a", "-noheader", "-o", "jobid stat",
                     f"{job_id}[3]"]).stdout == f"{job_id} DONE\n"


def test_fake_queues_beyond_its_slots_and_cancels_by_name(fake: FakeLSF, lsf: LSF,
                                                           tmp_path: Path) -> None:
    first = fake.submit(lsf, job(tmp_path, tasks=4), "sleep 60")
    waiting = fake.submit(lsf, job(tmp_path), "sleep 60")
    other = fake.submit(lsf, job(tmp_path, name="jt-other"), "true")
    wait_for(lambda: sum(r.state is NativeState.RUNNING
                         for r in fake.status(lsf, "jt-3f2a").values()) == 4)
    assert fake.status(lsf, "jt-3f2a")[waiting].state is NativeState.QUEUED
    assert fake.status(lsf, "jt-other")[other].state is NativeState.QUEUED   # FIFO
    fake.run(lsf.cancel_by_name_command("jt-3f2a") or [])
    wait_for(lambda: all(r.state is NativeState.CANCELLED
                         for r in fake.status(lsf, "jt-3f2a").values()))
    assert fake.status(lsf, "jt-3f2a")[waiting].exit_code == 130
    assert lsf.task_id(first, 4) in fake.status(lsf, "jt-3f2a")
    wait_for(lambda: fake.status(lsf, "jt-other")[other].state is NativeState.COMPLETED)


def test_fake_refuses_and_goes_down(fake: FakeLSF, lsf: LSF, tmp_path: Path) -> None:
    refused = fake.run(["bsub", "-n", "9"], "true\n")
    assert (refused.returncode, refused.stderr) == (
        255, "Too many processors requested. Job not submitted.\n")
    fake.state.mkdir(parents=True, exist_ok=True)
    (fake.state / "down").touch()
    for argv in (["bsub"], lsf.status_command("jt-3f2a"), ["bkill", "1"]):
        done = fake.run(argv, "true\n")
        assert done.returncode == 255 and lsf.transient(done.returncode, done.stderr)
    (fake.state / "down").unlink()


def test_fake_requires_its_state_folder(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "FAKE_LSF_DIR"}
    done = subprocess.run([str(FAKES / "bjobs")], capture_output=True, text=True, env=env)
    assert done.returncode == 2 and "FAKE_LSF_DIR" in done.stderr


def test_cluster_base_runs_targets_through_the_fake(fake: FakeLSF, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The base's whole cycle (script on stdin, bjobs by name, exit files) on the fake."""
    import sys

    from jobtree.batch.base import ExitReason, JobSpec
    from jobtree.resources import Resources

    for name in ("PATH", "FAKE_LSF_DIR", "FAKE_LSF_MINUTE"):
        monkeypatch.setenv(name, fake.env[name])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(HERE.parent), *filter(None, [os.environ.get("PYTHONPATH")])]))
    batch = ClusterBatchSystem(LSF(), ClusterSettings(
        workdir=str(tmp_path / "batch"), job_name="jt-e2e", poll_interval=0.5, pack_time=0))
    try:
        for i in range(3):
            batch.issue(JobSpec(i, 1, [sys.executable, "-c", f"import sys; sys.exit({i % 2})"],
                                Resources(cpu=1, memory=100 * MiB, time=600), f"t{i}",
                                str(tmp_path / f"t{i}.log")))
        updates = {}
        deadline = time.time() + 60
        while len(updates) < 3 and time.time() < deadline:
            update = batch.next_update(1)
            if update is not None:
                updates[update.batch_id] = update
    finally:
        batch.close()
    assert sorted((u.exit_code, u.reason) for u in updates.values()) == [
        (0, ExitReason.FINISHED), (0, ExitReason.FINISHED), (1, ExitReason.FAILED)]
    assert all(u.native_id and u.native_id.endswith("]") for u in updates.values())
