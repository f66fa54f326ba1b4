"""The Grid Engine adapter: golden directives, parsers against outputs recorded
from the real Son of Grid Engine 8.1.9 (tests/data/gridengine/README.md), and a
few runs against the real scheduler when ``qsub`` is on PATH.

Set ``JOBTREE_REGOLDEN=1`` to rewrite the ``*.golden`` files after a deliberate change.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from jobtree.batch.settings import ClusterSettings
from jobtree.batch.gridengine import GridEngine, expand_tasks, state_of
from jobtree.batch.native import NativeJob, NativeState, Request, Submission
from jobtree.errors import ResourceError

DATA = Path(__file__).parent / "data" / "gridengine"
GiB = 1024 ** 3
MiB = 1024 ** 2


@pytest.fixture
def sge() -> GridEngine:
    return GridEngine()


def _job(request: Request = Request(), tasks: int = 1, name: str = "jt_tree") -> Submission:
    return Submission(name, "/tree/batch/subs/1-2-3.sh", "/tree/batch/out/1-2-3", tasks,
                      request, "/tree/batch")


CASES = {
    "plain": _job(),
    "cores4": _job(Request(cores=4)),
    "memory": _job(Request(cores=4, memory=10 * GiB)),
    "walltime": _job(Request(walltime=3 * 3600 + 61.5)),
    "queue_account": _job(Request(queue="long.q", account="lab42")),
    "array": _job(Request(memory=2 * GiB), tasks=10),
    "extras": _job(Request(extra=("-l scratch=10G", "-P myproject", "-l h_vmem=3G"),
                           memory=GiB)),
    "mpi": _job(Request(nodes=4, processes=8, cores=2, memory=64 * GiB,
                        parallel_environment="orte")),
    "mpi_one_node": _job(Request(processes=4)),
    "gpus": _job(Request(gpus=2, cores=8, memory=32 * GiB, walltime=600)),
    # SIGUSR1 two minutes before h_rt: the soft limit s_rt (the cluster config's warn_before)
    "warning": _job(Request(walltime=3600, warn_before=120)),
}


def _rendered(sge: GridEngine, job: Submission) -> str:
    argv, stdin = sge.submit_command(job)
    assert stdin is None
    return "\n".join([*sge.directives(job), f"# submit: {' '.join(argv)}"]) + "\n"


@pytest.mark.parametrize("case", sorted(CASES))
def test_directives_golden(sge: GridEngine, case: str) -> None:
    text = _rendered(sge, CASES[case])
    golden = DATA / f"{case}.golden"
    if os.environ.get("JOBTREE_REGOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text()


def test_directive_details(sge: GridEngine) -> None:
    plain = sge.directives(CASES["plain"])
    assert plain[:6] == ["#$ -N jt_tree", "#$ -S /bin/sh", "#$ -o /tree/batch/out/1-2-3.out",
                         "#$ -j y", "#$ -wd /tree/batch", "#$ -w e"]
    assert not any("-pe" in line or "-t " in line for line in plain)
    assert "#$ -pe smp 4" in sge.directives(CASES["cores4"])
    # h_vmem is per slot: 10 GiB over 4 slots
    assert "#$ -l h_vmem=2560M" in sge.directives(CASES["memory"])
    assert "#$ -l h_rt=03:01:02" in sge.directives(CASES["walltime"])
    array = sge.directives(CASES["array"])
    assert "#$ -o /tree/batch/out/1-2-3.$TASK_ID.out" in array
    assert array[-1] == "#$ -t 1-10" and not any("-tc" in line for line in array)
    mpi = sge.directives(CASES["mpi"])
    assert "#$ -pe orte 64" in mpi
    assert "#$ -l h_vmem=4096M" in mpi  # 64 GiB per node over 16 slots per node
    assert "#$ -l gpu=2" in sge.directives(CASES["gpus"])
    # extras come last, so a repeated -l overrides ours (qsub keeps the last)
    assert sge.directives(CASES["extras"])[-3:] == [
        "#$ -l scratch=10G", "#$ -P myproject", "#$ -l h_vmem=3G"]
    # memory rounds up to whole MiB per slot
    odd = sge.directives(_job(Request(cores=3, memory=1000 * MiB + 1)))
    assert "#$ -l h_vmem=334M" in odd


@pytest.mark.parametrize("request_, words", [
    (Request(nodes=2), "parallel environment"),
    (Request(cores=0), "at least 1"),
    (Request(extra=("-l 'oops",)), "badly quoted"),
    (Request(extra=("",)), "non-empty"),
])
def test_unexpressible_requests(sge: GridEngine, request_: Request, words: str) -> None:
    with pytest.raises(ResourceError, match=words):
        sge.directives(_job(request_))


@pytest.mark.parametrize("name", ["9lives", "a b", "x/y", "p*", "q?"])
def test_bad_job_names(sge: GridEngine, name: str) -> None:
    with pytest.raises(ResourceError, match="Grid Engine job name"):
        sge.directives(_job(name=name))


def test_bad_paths(sge: GridEngine) -> None:
    job = Submission("jt", "/s.sh", "/tree with blank/out/1", 1, Request(), "/t")
    with pytest.raises(ResourceError, match="blank"):
        sge.directives(job)
    job = Submission("jt", "/s.sh", "/host:dir/out/1", 1, Request(), "/t")
    with pytest.raises(ResourceError, match="colon"):
        sge.directives(job)


def test_request_for_uses_the_settings() -> None:
    from jobtree.resources import Resources
    from jobtree.batch.plan import request_for
    sge = GridEngine()
    settings = ClusterSettings(job_name="jt", parallel_environment="mpi", queue="all.q")
    request = request_for(Resources(cpu=2), settings, sge)
    assert request.parallel_environment == "mpi" and request.queue == "all.q"
    assert "#$ -pe mpi 2" in sge.directives(_job(request))


# ---------------------------------------------------------------- submit
def test_parse_submit(sge: GridEngine) -> None:
    assert sge.parse_submit((DATA / "qsub_terse.stdout").read_text()) == "21"
    assert sge.parse_submit((DATA / "qsub_terse_array.stdout").read_text()) == "22"
    assert sge.parse_submit("warning: something\n123\n") == "123"
    with pytest.raises(ValueError):
        sge.parse_submit("")
    with pytest.raises(ValueError):
        sge.parse_submit("Your job 12 (\"x\") has been submitted\n")


def test_task_ids(sge: GridEngine) -> None:
    assert sge.task_id("123", 4) == "123.4"
    assert sge.task_id("123", None) == "123"


# ---------------------------------------------------------------- status
def test_status_command(sge: GridEngine) -> None:
    import getpass
    assert sge.status_command("jt_tree") == ["qstat", "-xml", "-u", getpass.getuser()]


def _rows(sge: GridEngine, name: str) -> dict[str, NativeJob]:
    return {row.id: row for row in sge.parse_status((DATA / name).read_text())}


def test_parse_status_running_and_pending(sge: GridEngine) -> None:
    rows = _rows(sge, "qstat_running_pending.xml")
    assert rows["1"] == NativeJob("1", NativeState.RUNNING, name="gx_plain")
    assert rows["2.1"].state is NativeState.RUNNING
    # the pending range 2-6:1 is one row per task
    assert [rows[f"2.{i}"].state for i in range(2, 7)] == [NativeState.QUEUED] * 5
    assert rows["3"].state is NativeState.QUEUED  # hqw
    assert rows["4"].state is NativeState.QUEUED
    assert {r.name for r in rows.values()} == {"gx_plain", "gx_arr", "gx_pend", "gx_eqw"}
    assert len(rows) == 9


def test_parse_status_array_tasks(sge: GridEngine) -> None:
    rows = _rows(sge, "qstat_array_running.xml")
    assert rows["2.2"].state is rows["2.3"].state is NativeState.RUNNING
    assert [rows[f"2.{i}"].state for i in (4, 5, 6)] == [NativeState.QUEUED] * 3
    listed = _rows(sge, "qstat_task_list.xml")  # <tasks>4,5</tasks> after qdel 2.6
    assert {"2.4", "2.5"} <= set(listed) and "2.6" not in listed


def test_parse_status_error_and_deleting(sge: GridEngine) -> None:
    assert _rows(sge, "qstat_eqw.xml")["4"].state is NativeState.FAILED
    assert _rows(sge, "qstat_deleting.xml")["24"].state is NativeState.CANCELLED
    assert sge.parse_status((DATA / "qstat_empty.xml").read_text()) == []
    assert sge.parse_status("") == []
    with pytest.raises(ValueError):
        sge.parse_status("error: not xml")


@pytest.mark.parametrize("code, state", [
    ("qw", NativeState.QUEUED), ("hqw", NativeState.QUEUED), ("hRwq", NativeState.QUEUED),
    ("Rq", NativeState.QUEUED), ("t", NativeState.RUNNING), ("r", NativeState.RUNNING),
    ("hr", NativeState.RUNNING), ("Rr", NativeState.RUNNING), ("s", NativeState.RUNNING),
    ("S", NativeState.RUNNING), ("T", NativeState.RUNNING), ("ts", NativeState.RUNNING),
    ("Eqw", NativeState.FAILED), ("Ehqw", NativeState.FAILED), ("dr", NativeState.CANCELLED),
    ("dt", NativeState.CANCELLED), ("dRr", NativeState.CANCELLED), ("zz", NativeState.UNKNOWN),
])
def test_states(code: str, state: NativeState) -> None:
    assert state_of(code) is state


def test_expand_tasks() -> None:
    assert expand_tasks("3") == [3]
    assert expand_tasks("2-10:1") == list(range(2, 11))
    assert expand_tasks("2,5-7:1") == [2, 5, 6, 7]
    assert expand_tasks("1-9:4") == [1, 5, 9]
    with pytest.raises(ValueError):
        expand_tasks("x")


# ---------------------------------------------------------------- cancel
def test_cancel_commands(sge: GridEngine) -> None:
    assert sge.cancel_command(["12", "13.4"]) == ["qdel", "12", "13.4"]
    assert sge.cancel_by_name_command("jt_tree") == ["qdel", "jt_tree"]


# ------------------------------------------------------------ accounting
def test_accounting_command(sge: GridEngine) -> None:
    assert sge.accounting_command(["12"], "jt_tree") == ["qacct", "-j", "12"]
    assert sge.accounting_command(["12.1", "12.3"], "jt_tree") == ["qacct", "-j", "12"]
    assert sge.accounting_command(["12", "14.2"], "jt_tree") == ["qacct", "-j", "jt_tree"]
    assert sge.accounting_command([], "jt_tree") is None


@pytest.mark.parametrize("name, row", [
    ("qacct_completed.txt", NativeJob("1", NativeState.COMPLETED, 0, 20.0, "gx_plain")),
    ("qacct_exit3.txt", NativeJob("6", NativeState.FAILED, 3, 0.0, "gx_exit3")),
    ("qacct_h_rt.txt", NativeJob("7", NativeState.TIMEOUT, 137, 4.0, "gx_hrt")),
    ("qacct_h_vmem.txt", NativeJob("10", NativeState.OUT_OF_MEMORY, 137, 1.0, "gx_vmem2")),
    ("qacct_qdel.txt", NativeJob("9", NativeState.CANCELLED, 137, 12.0, "gx_del")),
    ("qacct_selfkill.txt", NativeJob("16", NativeState.CANCELLED, 137, 0.0, "gx_selfkill")),
    ("qacct_wd_failed.txt", NativeJob("4", NativeState.FAILED, None, 0.0, "gx_eqw")),
])
def test_parse_accounting(sge: GridEngine, name: str, row: NativeJob) -> None:
    assert sge.parse_accounting((DATA / name).read_text()) == [row]


def test_parse_accounting_array_and_errors(sge: GridEngine) -> None:
    rows = sge.parse_accounting((DATA / "qacct_array.txt").read_text())
    assert [r.id for r in rows] == ["2.1", "2.2", "2.3", "2.4", "2.5"]
    assert {r.state for r in rows} == {NativeState.COMPLETED}
    for name in ("qacct_not_found.stderr", "qacct_name_not_found.stderr"):
        assert sge.parse_accounting((DATA / name).read_text()) == []
    assert sge.parse_accounting("") == []


# ------------------------------------------------------------- transient
@pytest.mark.parametrize("name, transient", [
    ("qstat_qmaster_down.stderr", True),
    ("qsub_qmaster_down.stderr", True),
    ("qdel_qmaster_down.stderr", True),
    ("qsub_no_suitable_queues.stderr", False),
    ("qsub_unknown_resource.stderr", False),
    ("qsub_unknown_pe.stderr", False),
    ("qacct_not_found.stderr", False),
    ("qdel_unknown.stdout", False),
])
def test_transient(sge: GridEngine, name: str, transient: bool) -> None:
    assert sge.transient(1, (DATA / name).read_text()) is transient


def test_transient_messages(sge: GridEngine) -> None:
    assert sge.transient(None, "")
    assert sge.transient(1, 'error: unable to contact qmaster using port 6444 on host "vm"')
    assert sge.transient(1, "Unable to run job: failed receiving gdi request response for "
                            "mid=1 (got no message).")
    assert sge.transient(1, "Unable to run job: job rejected: Only 100 jobs are allowed per "
                            "user (current job count: 100)")
    assert not sge.transient(1, 'denied: job "12" does not exist')


# ------------------------------------------------------ the real scheduler
def _run(argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=60)


def _sge_up() -> bool:
    if shutil.which("qsub") is None or shutil.which("qstat") is None:
        return False
    try:
        return _run(["qstat"]).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


real = pytest.mark.skipif(not _sge_up(), reason="no Grid Engine here (qstat fails)")


def _write_script(sge: GridEngine, job: Submission, body: str) -> None:
    Path(job.script).write_text("\n".join(["#!/bin/sh", *sge.directives(job), body, ""]))


def _wait_gone(sge: GridEngine, name: str, job_id: str, seen: dict[str, NativeJob],
               limit: float = 180.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        result = _run(sge.status_command(name))
        assert result.returncode == 0, result.stderr
        rows = [r for r in sge.parse_status(result.stdout) if r.name == name]
        for row in rows:
            seen.setdefault(f"{row.id}:{row.state.name}", row)
        if not any(r.id.split(".")[0] == job_id for r in rows):
            return
        time.sleep(0.5)
    _run(["qdel", job_id])
    pytest.fail(f"Grid Engine job {job_id} still listed after {limit}s")


def _accounting(sge: GridEngine, ids: list[str], count: int,
                name: str) -> dict[str, NativeJob]:
    argv = sge.accounting_command(ids, name)
    assert argv is not None
    deadline = time.monotonic() + 30
    rows: dict[str, NativeJob] = {}
    while time.monotonic() < deadline:  # qacct lags qstat by about a second
        result = _run(argv)
        rows = {r.id: r for r in sge.parse_accounting(result.stdout) if r.id in ids}
        if len(rows) >= count:
            return rows
        time.sleep(0.5)
    pytest.fail(f"qacct never showed {ids}: {rows}")


@real
def test_real_array_job(tmp_path: Path) -> None:
    """Our directives are accepted and honoured; qstat -xml and qacct parse."""
    name = f"jt_test_{os.getpid()}"
    sge = GridEngine()
    job = Submission(name, str(tmp_path / "job.sh"), str(tmp_path / "out"), 3,
                     Request(memory=256 * MiB, walltime=120, queue="all.q", account="jt_acct"),
                     str(tmp_path))
    _write_script(sge, job, 'echo "task $SGE_TASK_ID in $(pwd)"; sleep 2\n'
                            '[ "$SGE_TASK_ID" = 2 ] && exit 3\nexit 0')
    result = _run(sge.submit_command(job)[0])
    assert result.returncode == 0, result.stderr
    job_id = sge.parse_submit(result.stdout)
    seen: dict[str, NativeJob] = {}
    _wait_gone(sge, name, job_id, seen)
    assert any(key.startswith(f"{job_id}.") for key in seen), seen
    for index in (1, 2, 3):
        log = tmp_path / f"out.{index}.out"  # $TASK_ID substituted in -o
        assert log.read_text().strip() == f"task {index} in {tmp_path}"
    ids = [sge.task_id(job_id, i) for i in (1, 2, 3)]
    rows = _accounting(sge, ids, 3, name)
    assert rows[ids[0]].state is NativeState.COMPLETED
    assert (rows[ids[1]].state, rows[ids[1]].exit_code) == (NativeState.FAILED, 3)
    assert rows[ids[2]].state is NativeState.COMPLETED
    assert {r.name for r in rows.values()} == {name}


@real
def test_real_multicore_job_and_timeout(tmp_path: Path) -> None:
    """-pe smp 2 with h_vmem per slot runs; h_rt kills and qacct says TIMEOUT."""
    name = f"jt_test_{os.getpid()}_pe"
    sge = GridEngine()
    job = Submission(name, str(tmp_path / "job.sh"), str(tmp_path / "out"), 1,
                     Request(cores=2, memory=512 * MiB, walltime=3), str(tmp_path))
    _write_script(sge, job, 'echo "slots $NSLOTS vmem $(ulimit -v)"; sleep 30')
    result = _run(sge.submit_command(job)[0])
    assert result.returncode == 0, result.stderr
    job_id = sge.parse_submit(result.stdout)
    _wait_gone(sge, name, job_id, {})
    # ulimit -v is h_vmem x slots: 2 x 256 MiB, in KiB
    assert (tmp_path / "out.out").read_text().strip() == "slots 2 vmem 524288"
    row = _accounting(sge, [job_id], 1, name)[job_id]
    assert row.state is NativeState.TIMEOUT
    assert row.exit_code == 137


@real
def test_real_impossible_request_is_refused(tmp_path: Path) -> None:
    """-w e makes qsub refuse what can never run, and it is not transient."""
    name = f"jt_test_{os.getpid()}_big"
    sge = GridEngine()
    job = Submission(name, str(tmp_path / "job.sh"), str(tmp_path / "out"), 1,
                     Request(cores=4096), str(tmp_path))
    _write_script(sge, job, "true")
    result = _run(sge.submit_command(job)[0])
    assert result.returncode == 1
    assert "Unable to run job" in result.stderr
    assert not sge.transient(result.returncode, result.stderr)


@real
def test_real_cancel_task_and_by_name(tmp_path: Path) -> None:
    """qdel takes task ids (123.4) and the job name."""
    name = f"jt_test_{os.getpid()}_del"
    sge = GridEngine()
    job = Submission(name, str(tmp_path / "job.sh"), str(tmp_path / "out"), 4,
                     Request(), str(tmp_path))
    _write_script(sge, job, "sleep 60")
    result = _run(["qsub", "-h", "-terse", job.script])  # held: it never starts
    assert result.returncode == 0, result.stderr
    job_id = sge.parse_submit(result.stdout)
    try:
        cancel = _run(sge.cancel_command([sge.task_id(job_id, 2), sge.task_id(job_id, 3)]))
        assert cancel.returncode == 0, cancel.stdout + cancel.stderr
        rows = {r.id for r in sge.parse_status(_run(sge.status_command(name)).stdout)
                if r.name == name}
        assert rows == {f"{job_id}.1", f"{job_id}.4"}
        by_name = sge.cancel_by_name_command(name)
        assert by_name is not None
        assert _run(by_name).returncode == 0
        rows = {r.id for r in sge.parse_status(_run(sge.status_command(name)).stdout)
                if r.name == name}
        assert rows == set()
    finally:
        _run(["qdel", job_id])
