"""The Torque and PBS Pro adapters: directives against golden files, parsers
against recorded outputs (``tests/data/torque``, ``tests/data/pbspro``), and the
fake ``qsub``/``qstat``/``qdel`` (``tests/fakes``) driven directly, their
output read by the adapters' own parsers.

Regenerate the golden files with ``JOBTREE_REGEN_GOLDEN=1`` and review the diff.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from jobtree.batch.adapter import SchedulerDialect
from jobtree.batch.native import NativeJob, NativeState, Request, Submission
from jobtree.batch.pbspro import PBSPro
from jobtree.batch.torque import Torque
from jobtree.errors import ResourceError

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
FAKES = HERE / "fakes"
GiB = 1024 ** 3
FLAVORS = ["torque", "pbspro"]


def dialect(flavor: str) -> SchedulerDialect:
    """The adapter of a flavour (the one place that constructs them)."""
    return Torque() if flavor == "torque" else PBSPro()


SUBMISSIONS = {
    "plain": Submission(name="jobtree-3f2a", script="/home/alice/tree/jobs/000001.sh",
                        log_stem="/home/alice/tree/logs/000001", tasks=1,
                        request=Request(cores=1, memory=2 * GiB, walltime=3600),
                        workdir="/home/alice/tree"),
    "full": Submission(name="jobtree-3f2a", script="/home/alice/tree/jobs/000002.sh",
                       log_stem="/home/alice/tree/logs/000002", tasks=1,
                       request=Request(cores=4, memory=10 * GiB, walltime=90061.5,
                                       disk=50 * GiB, disk_resource="scratch", gpus=2,
                                       queue="gpu", account="proj7",
                                       parallel_environment="smp",
                                       extra=("-l pmem=2gb", "-m n")),
                       workdir="/home/alice/tree"),
    "mpi": Submission(name="jobtree-3f2a", script="/home/alice/tree/jobs/000003.sh",
                      log_stem="/home/alice/tree/logs/000003", tasks=1,
                      request=Request(cores=2, memory=8 * GiB, walltime=600, nodes=3,
                                      processes=4), workdir="/home/alice/tree"),
    "array": Submission(name="jobtree-3f2a", script="/home/alice/tree/jobs/000004.sh",
                        log_stem="/home/alice/tree/logs/000004", tasks=40,
                        request=Request(cores=1, memory=GiB), workdir="/home/alice/tree"),
}


# ---------------------------------------------------------------- pure tests

@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("case", sorted(SUBMISSIONS))
def test_directives_match_golden_files(flavor: str, case: str) -> None:
    job = SUBMISSIONS[case]
    text = "\n".join(dialect(flavor).directives(job)) + "\n"
    golden = DATA / flavor / f"{case}.golden"
    if os.environ.get("JOBTREE_REGEN_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text()


@pytest.mark.parametrize("flavor", FLAVORS)
def test_submit_and_cancel_commands(flavor: str) -> None:
    adapter = dialect(flavor)
    job = SUBMISSIONS["plain"]
    assert adapter.submit_command(job) == (["qsub", job.script], None)
    assert adapter.cancel_command(["1.s", "2[3].s"]) == ["qdel", "1.s", "2[3].s"]
    assert adapter.cancel_by_name_command("jobtree-3f2a") is None
    assert adapter.accounting_command(["1.s"], "jobtree-3f2a") is None
    status = {"torque": ["qstat", "-x", "-t"],
              "pbspro": ["qstat", "-f", "-F", "json", "-x", "-t"]}[flavor]
    assert adapter.status_command("jobtree-3f2a") == status


@pytest.mark.parametrize("flavor", FLAVORS)
def test_paths_a_directive_cannot_carry_are_refused(flavor: str) -> None:
    bad = SUBMISSIONS["plain"]
    for field in ("log_stem", "workdir"):
        value = getattr(bad, field).replace("/tree", "/my tree")
        job = Submission(**{**bad.__dict__, field: value})
        if flavor == "pbspro" and field == "workdir":
            dialect(flavor).directives(job)  # PBS Pro has no start-folder directive
            continue
        with pytest.raises(ResourceError, match="blank"):
            dialect(flavor).directives(job)
    with pytest.raises(ResourceError, match="at least 1"):
        dialect(flavor).directives(Submission(**{**bad.__dict__, "request": Request(cores=0)}))


@pytest.mark.parametrize("flavor, server", [("torque", "head.cluster.example"),
                                            ("pbspro", "pbs01")])
def test_parse_submit_and_task_ids(flavor: str, server: str) -> None:
    adapter = dialect(flavor)
    number = {"torque": 4120, "pbspro": 8812}[flavor]
    plain = adapter.parse_submit((DATA / flavor / "qsub.out").read_text())
    array = adapter.parse_submit((DATA / flavor / "qsub-array.out").read_text())
    assert plain == f"{number}.{server}"
    assert array == f"{number + 1 if flavor == 'pbspro' else number + 6}[].{server}"
    assert adapter.task_id(array, 4) == array.replace("[]", "[4]")
    assert adapter.task_id(plain, None) == plain
    with pytest.raises(ValueError):
        adapter.parse_submit("")


def _by_id(rows: list[NativeJob]) -> dict[str, NativeJob]:
    return {row.id.split(".")[0]: row for row in rows}


def test_torque_parse_status_of_recorded_xml() -> None:
    rows = _by_id(dialect("torque").parse_status((DATA / "torque" / "qstat-x-t.xml").read_text()))
    s = NativeState
    expected = {"4120": (s.COMPLETED, 0, 44.0), "4121": (s.TIMEOUT, -11, 121.0),
                "4122": (s.CANCELLED, 271, 9.0), "4123": (s.OUT_OF_MEMORY, -10, 5.0),
                "4124": (s.CANCELLED, None, None), "4125": (s.RUNNING, None, 602.0),
                "4126[1]": (s.FAILED, 1, 12.0), "4126[2]": (s.RUNNING, None, 31.0),
                "4126[3]": (s.QUEUED, None, None), "4127": (s.QUEUED, None, None)}
    assert {k: (r.state, r.exit_code, r.elapsed) for k, r in rows.items()} == expected
    assert rows["4126[2]"].name == "jobtree-3f2a"  # Torque's "-2" suffix taken off
    assert rows["4125"].name == "other-pipeline"
    empty = (DATA / "torque" / "qstat-x-t-empty.xml").read_text()
    assert dialect("torque").parse_status(empty) == []
    assert dialect("torque").parse_status("") == []
    with pytest.raises(ValueError):
        dialect("torque").parse_status("<Data><Job>")


def test_pbspro_parse_status_of_recorded_json() -> None:
    text = (DATA / "pbspro" / "qstat-f-F-json-x-t.json").read_text()
    rows = _by_id(dialect("pbspro").parse_status(text))
    s = NativeState
    expected = {"8812": (s.COMPLETED, 0, 44.0), "8813[1]": (s.TIMEOUT, -29, 121.0),
                "8813[2]": (s.RUNNING, None, 31.0), "8813[3]": (s.QUEUED, None, None),
                "8814": (s.CANCELLED, 271, 9.0), "8815": (s.OUT_OF_MEMORY, -27, 5.0),
                "8816": (s.CANCELLED, None, None), "8817": (s.RUNNING, None, 602.0),
                "8818": (s.QUEUED, None, None), "8819": (s.FAILED, 1, 2.0)}
    assert {k: (r.state, r.exit_code, r.elapsed) for k, r in rows.items()} == expected
    assert rows["8817"].name == "other-pipeline"
    empty = (DATA / "pbspro" / "qstat-json-empty.json").read_text()
    assert dialect("pbspro").parse_status(empty) == []
    with pytest.raises(ValueError):
        dialect("pbspro").parse_status("{\"Jobs\":")


@pytest.mark.parametrize("flavor", FLAVORS)
def test_transient_errors(flavor: str) -> None:
    adapter = dialect(flavor)
    down = (DATA / flavor / "qstat-down.err").read_text()
    assert adapter.transient(111 if flavor == "torque" else 162, down)
    assert adapter.transient(None, "")
    assert adapter.transient(1, "pbs_iff: cannot connect to host\n")
    assert not adapter.transient(153, (DATA / flavor / "qstat-unknown.err").read_text())
    assert not adapter.transient(188, (DATA / flavor / "qsub-limits.err").read_text())


# ---------------------------------------------------------------- the fakes

class Fake:
    """Runs one flavour's fake commands against a private state folder."""

    def __init__(self, flavor: str, root: Path) -> None:
        self.flavor = flavor
        self.root = root
        self.state = root / "state"
        self.env = {**os.environ, "FAKE_PBS_DIR": str(self.state), "HOME": str(root),
                    "FAKE_PBS_SLOTS": "2"}

    def run(self, command: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(FAKES / self.flavor / command), *args], capture_output=True,
                              text=True, env=self.env, cwd=self.root, timeout=30)

    def submit(self, body: str, *directives: str, args: tuple[str, ...] = ()) -> str:
        script = self.root / f"job{time.monotonic_ns()}.sh"
        script.write_text("#!/bin/sh\n" + "".join(f"#PBS {d}\n" for d in directives) + body)
        done = self.run("qsub", *args, str(script))
        assert done.returncode == 0, done.stderr
        return dialect(self.flavor).parse_submit(done.stdout)

    def rows(self) -> dict[str, NativeJob]:
        adapter = dialect(self.flavor)
        done = self.run(*adapter.status_command("t"))
        assert done.returncode == 0, done.stderr
        return {row.id: row for row in adapter.parse_status(done.stdout)}

    def wait(self, check: Callable[[dict[str, NativeJob]], bool], timeout: float = 20) -> dict[
            str, NativeJob]:
        deadline = time.monotonic() + timeout
        while True:
            rows = self.rows()
            if check(rows):
                return rows
            assert time.monotonic() < deadline, rows
            time.sleep(0.1)


@pytest.fixture(params=FLAVORS)
def fake(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Fake]:
    fake = Fake(request.param, tmp_path)
    yield fake
    (fake.state / "down").unlink(missing_ok=True)
    alive = [i for i, r in fake.rows().items() if r.state.alive]
    if alive:
        fake.run("qdel", *alive)
        fake.wait(lambda rows: not any(r.state.alive for r in rows.values()))


def _gone(rows: dict[str, NativeJob], job_id: str) -> bool:
    return job_id in rows and not rows[job_id].state.alive


def test_fake_runs_a_job_and_keeps_its_record(fake: Fake) -> None:
    job = fake.submit('echo "ran $PBS_JOBID in $(pwd) from $PBS_O_WORKDIR"\nexit 3\n',
                      "-N jobtree-t", "-j oe", f"-o {fake.root}/plain.out",
                      "-l walltime=00:01:00")
    row = fake.wait(lambda rows: _gone(rows, job))[job]
    assert (row.state, row.exit_code, row.name) == (NativeState.FAILED, 3, "jobtree-t")
    assert (fake.root / "plain.out").read_text() == (
        f"ran {job} in {fake.root} from {fake.root}\n")
    ok = fake.submit("true\n", "-N jobtree-t")
    assert fake.wait(lambda rows: _gone(rows, ok))[ok].state is NativeState.COMPLETED


def test_fake_qdel_kills_a_running_job_and_drops_a_queued_one(fake: Fake) -> None:
    marker = fake.root / "pid"
    first = fake.submit(f"echo $$ > {marker}\nsleep 60\n", "-N jobtree-t")
    others = [fake.submit("sleep 60\n", "-N jobtree-t") for _ in range(2)]  # 2 slots
    rows = fake.wait(lambda rows: rows[first].state is NativeState.RUNNING and marker.exists())
    assert rows[others[1]].state is NativeState.QUEUED
    assert fake.run("qdel", first, others[1]).returncode == 0
    rows = fake.wait(lambda rows: _gone(rows, first) and _gone(rows, others[1]))
    assert (rows[first].state, rows[first].exit_code) == (NativeState.CANCELLED, 271)
    assert (rows[others[1]].state, rows[others[1]].exit_code) == (NativeState.CANCELLED, None)
    pid = int(marker.read_text())
    assert not Path(f"/proc/{pid}").exists()
    again = fake.run("qdel", first)
    assert again.returncode in (15016 % 256, 15139 % 256), again.stderr


def test_fake_enforces_walltime(fake: Fake) -> None:
    job = fake.submit("sleep 30\n", "-N jobtree-t", "-l walltime=00:00:01", "-j oe",
                      f"-o {fake.root}/wall.out")
    row = fake.wait(lambda rows: _gone(rows, job))[job]
    assert row.state is NativeState.TIMEOUT
    assert row.exit_code == (-11 if fake.flavor == "torque" else -29)
    assert "walltime" in (fake.root / "wall.out").read_text()


def test_fake_walltime_as_older_sites_report_it(fake: Fake) -> None:
    """Older sites report a wall-time kill as 271, like qdel: the MOM's line in
    the job's output is what tells them apart."""
    fake.env["FAKE_PBS_WALLTIME_EXIT"] = "271"
    job = fake.submit("sleep 30\n", "-N jobtree-t", "-l walltime=00:00:01", "-j oe",
                      f"-o {fake.root}/wall.out")
    row = fake.wait(lambda rows: _gone(rows, job))[job]
    assert (row.state, row.exit_code) == (NativeState.CANCELLED, 271)
    said = dialect(fake.flavor).output_state((fake.root / "wall.out").read_text())
    assert said is not None and said[0] is NativeState.TIMEOUT, said


def test_fake_enforces_memory(fake: Fake) -> None:
    """Over its ``mem``, a job is killed (all its processes) with the MOM's
    line in its output and the flavour's exit status (-10, -27)."""
    memory = "-l mem=60mb" if fake.flavor == "torque" else "-l select=1:ncpus=1:mem=60mb"
    body = (f"{sys.executable} -c 'import time; data = b\"x\" * (200 * 1024 ** 2); "
            f"time.sleep(30)'\n")
    job = fake.submit(body, "-N jobtree-t", memory, "-j oe", f"-o {fake.root}/mem.out")
    row = fake.wait(lambda rows: _gone(rows, job))[job]
    assert (row.state, row.exit_code) == (
        NativeState.OUT_OF_MEMORY, -10 if fake.flavor == "torque" else -27)
    text = (fake.root / "mem.out").read_text()
    assert "PBS: job killed: mem" in text, text
    said = dialect(fake.flavor).output_state(text)
    assert said is not None and said[0] is NativeState.OUT_OF_MEMORY


def test_fake_runs_an_array_with_its_index_and_log_names(fake: Fake) -> None:
    variable = dialect(fake.flavor).index_variable
    pattern = "-t 1-3%1" if fake.flavor == "torque" else "-J 1-3%1"
    out = f"{fake.root}/arr" + (".^array_index^.out" if fake.flavor == "pbspro" else ".out")
    array = fake.submit(f"echo index=${variable}\n", "-N jobtree-t", pattern, "-j oe",
                        f"-o {out}")
    assert array.endswith("[].fakeserver")
    tasks = [dialect(fake.flavor).task_id(array, i) for i in (1, 2, 3)]
    rows = fake.wait(lambda rows: all(_gone(rows, t) for t in tasks))
    assert all(rows[t].state is NativeState.COMPLETED and rows[t].name == "jobtree-t"
               for t in tasks)
    assert array not in rows  # the parent row is not a task
    for index in (1, 2, 3):
        log = (f"arr.out-{index}" if fake.flavor == "torque" else f"arr.{index}.out")
        assert (fake.root / log).read_text() == f"index={index}\n"


def test_fake_refuses_what_no_node_has_and_unknown_ids(fake: Fake) -> None:
    script = fake.root / "big.sh"
    spec = "nodes=1:ppn=64" if fake.flavor == "torque" else "select=1:ncpus=64"
    script.write_text(f"#!/bin/sh\n#PBS -l {spec}\ntrue\n")
    refused = fake.run("qsub", str(script))
    assert (refused.returncode, refused.stderr) == (
        15036 % 256, (DATA / fake.flavor / "qsub-limits.err").read_text())
    unknown = fake.run("qstat", "99.fakeserver")
    assert unknown.returncode == 153
    assert unknown.stderr == (DATA / fake.flavor / "qstat-unknown.err").read_text().replace(
        "99.head.cluster.example", "99.fakeserver").replace("99.pbs01", "99.fakeserver")


def test_fake_server_down_keeps_jobs_running(fake: Fake) -> None:
    job = fake.submit("sleep 1\n", "-N jobtree-t")
    fake.wait(lambda rows: rows[job].state is NativeState.RUNNING)
    (fake.state / "down").touch()
    adapter = dialect(fake.flavor)
    for argv in (adapter.status_command("t"), ["qdel", job], ["qsub", "x.sh"]):
        done = fake.run(*argv)
        assert done.returncode != 0 and adapter.transient(done.returncode, done.stderr), done
    time.sleep(1.5)
    (fake.state / "down").unlink()
    assert fake.wait(lambda rows: _gone(rows, job))[job].state is NativeState.COMPLETED
