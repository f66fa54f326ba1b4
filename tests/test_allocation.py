"""--batchSystem allocation: reading the allocation from each scheduler's
environment, the launcher and MPI command lines (pure), the slot accounting
on this machine inside a faked Slurm allocation, and the sort example inside
real Slurm (sbatch) and Grid Engine (qsub -pe smp 2) jobs."""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Iterator

import pytest
from conftest import require_scheduler
from test_batch_conformance import fake_allocation_here
from test_examples import SORT_CASES, sorted_lines

from jobtree import batch as batch_systems
from jobtree.errors import JobTreeError
from jobtree.batch import ExitReason, allocation
from jobtree.resources import Resources
from jobtree.batch.hosts import (Grant, GrantError, Launcher, Node, expand_counts,
                                 expand_hostlist, launch_argv, machinefile, mpi_prefix,
                                 read_grant)
from jobtree.testing import QUICK, Jobs, collect, targets
from jobtree.testing.harness import wait_for_record

ROOT = Path(__file__).resolve().parents[1]
MIB = 1024 ** 2
GIB = 1024 ** 3


# ------------------------------------------------------- Slurm's host lists
@pytest.mark.parametrize("text, hosts", [
    ("vm", ["vm"]),
    ("node[01-03,07]", ["node01", "node02", "node03", "node07"]),
    ("node[8-11]", ["node8", "node9", "node10", "node11"]),
    ("node[098-101],gpu1", ["node098", "node099", "node100", "node101", "gpu1"]),
    ("a[1-2],b[3],c", ["a1", "a2", "b3", "c"]),
    ("r[1-2]n[1-2]", ["r1n1", "r1n2", "r2n1", "r2n2"]),
    ("n[1-2]-ib", ["n1-ib", "n2-ib"]),
])
def test_slurm_host_lists_expand(text: str, hosts: list[str]) -> None:
    assert expand_hostlist(text) == hosts


@pytest.mark.parametrize("text", ["node[1-", "node[3-1]", "node[a-b]", "n[[1]]", ""])
def test_a_bad_host_list_is_a_clear_error(text: str) -> None:
    with pytest.raises(GrantError, match="SLURM_JOB_NODELIST"):
        expand_hostlist(text)


def test_slurm_core_counts_expand() -> None:
    assert expand_counts("2(x3),4") == [2, 2, 2, 4]
    assert expand_counts("8") == [8]
    with pytest.raises(GrantError, match="SLURM_JOB_CPUS_PER_NODE"):
        expand_counts("2(x)")


# ----------------------------------------------------- reading the grant
def test_slurm_allocation_with_memory_per_node() -> None:
    grant = read_grant({"SLURM_JOB_ID": "12", "SLURM_JOB_NODELIST": "n[1-3]",
                        "SLURM_JOB_CPUS_PER_NODE": "4(x2),2", "SLURM_MEM_PER_NODE": "2048",
                        "SLURMD_NODENAME": "n1", "SLURM_CPUS_ON_NODE": "4"})
    assert grant == Grant(Launcher.SLURM, "12", (Node("n1", 4, 2 * GIB), Node("n2", 4, 2 * GIB),
                                                  Node("n3", 2, 2 * GIB)), "n1")


def test_slurm_allocation_with_memory_per_cpu_and_only_cpus_on_node() -> None:
    """Only SLURM_CPUS_ON_NODE (older Slurm, or a stripped environment): every
    node gets that many; memory per cpu is times the node's cores."""
    grant = read_grant({"SLURM_NODELIST": "a,b", "SLURM_CPUS_ON_NODE": "2",
                        "SLURM_MEM_PER_CPU": "100"})
    assert grant is not None and grant.this_node is None
    assert grant.nodes == (Node("a", 2, 200 * MIB), Node("b", 2, 200 * MIB))


def test_slurm_counts_must_match_the_nodes() -> None:
    with pytest.raises(GrantError, match="3 nodes"):
        read_grant({"SLURM_JOB_NODELIST": "n[1-3]", "SLURM_JOB_CPUS_PER_NODE": "4,4"})


def test_pbs_nodefile(tmp_path: Path) -> None:
    nodefile = tmp_path / "nodes"
    nodefile.write_text("n1\nn1\nn2\nn1\nn2\n\n")
    grant = read_grant({"PBS_NODEFILE": str(nodefile), "PBS_JOBID": "7.server"})
    assert grant == Grant(Launcher.PBS, "7.server", (Node("n1", 3), Node("n2", 2)))


def test_grid_engine_pe_hostfile(tmp_path: Path) -> None:
    hostfile = tmp_path / "pe_hostfile"
    hostfile.write_text("vm 2 all.q@vm UNDEFINED\nn2 4 all.q@n2 0,1\nn2 1 long.q@n2 <NULL>\n")
    grant = read_grant({"PE_HOSTFILE": str(hostfile), "JOB_ID": "1583"})
    assert grant == Grant(Launcher.GRID_ENGINE, "1583", (Node("vm", 2), Node("n2", 5)))
    hostfile.write_text("vm two all.q\n")
    with pytest.raises(GrantError, match="host slots queue"):
        read_grant({"PE_HOSTFILE": str(hostfile)})


def test_a_missing_host_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(GrantError, match="cannot be read"):
        read_grant({"PBS_NODEFILE": str(tmp_path / "gone")})


def test_lsf_mcpu_hosts() -> None:
    grant = read_grant({"LSB_MCPU_HOSTS": "host1 4 host2 4", "LSB_JOBID": "99"})
    assert grant == Grant(Launcher.LSF, "99", (Node("host1", 4), Node("host2", 4)))
    with pytest.raises(GrantError, match="LSB_MCPU_HOSTS"):
        read_grant({"LSB_MCPU_HOSTS": "host1 4 host2"})


def test_outside_any_allocation_is_a_one_paragraph_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert read_grant({"HOME": "/root"}) is None
    for name in ("SLURM_JOB_NODELIST", "SLURM_NODELIST", "PBS_NODEFILE", "PE_HOSTFILE",
                 "LSB_MCPU_HOSTS"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(allocation.NotInAllocationError) as caught:
        batch_systems.create("allocation")
    message = str(caught.value)
    assert "\n" not in message
    for said in ("salloc", "sbatch", "qsub", "bsub", "singleMachine"):
        assert said in message, message
    assert isinstance(caught.value, JobTreeError)  # the commands print it, exit status 2
    assert "allocation" in batch_systems.known_names()


# ----------------------------------------------------- the command lines
def test_launch_command_lines() -> None:
    argv = ["/py", "-m", "jobtree.worker", "/t", "3", "1"]
    assert launch_argv(Launcher.SLURM, "n2", argv, cores=2, memory=GIB, name="jt3.1") == [
        "srun", "--nodes=1", "--ntasks=1", "--cpus-per-task=2", "-w", "n2", "--exact",
        "--job-name=jt3.1", "--quiet", "--mem=1024M", "--", *argv]
    env = {"PYTHONPATH": "/src a"}
    assert launch_argv(Launcher.PBS, "n2", argv, environ=env) == [
        "pbsdsh", "-h", "n2", "--", "env", "PYTHONPATH=/src a", *argv]
    assert launch_argv(Launcher.GRID_ENGINE, "n2", argv) == [
        "qrsh", "-inherit", "-nostdin", "n2", *argv]
    assert launch_argv(Launcher.LSF, "n2", argv) == ["blaunch", "n2", *argv]
    ssh = launch_argv(Launcher.SSH, "n2", argv, environ=env)
    assert ssh[:5] == ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=accept-new"]
    assert ssh[5] == "n2" and shlex.split(ssh[6]) == ["env", "PYTHONPATH=/src a", *argv]


def test_mpi_step_command_lines() -> None:
    assert mpi_prefix(Launcher.SLURM, ["n1", "n2"], 8, cores=2, memory=4 * GIB) == [
        "srun", "--nodes=2", "--ntasks=16", "--ntasks-per-node=8", "--cpus-per-task=2",
        "-w", "n1,n2", "--exact", "--mem=4096M"]
    assert "--overlap" in mpi_prefix(Launcher.SLURM, ["n1"], 2, overlap=True)
    assert mpi_prefix(Launcher.PBS, ["n1", "n2"], 4, hostfile="/t/h") == [
        "mpirun", "-np", "8", "-machinefile", "/t/h"]
    assert machinefile(["n1", "n2"], 2) == "n1\nn1\nn2\nn2\n"


# --------------------------------------- on this machine, in a faked allocation
def _stamps(paths: list[str]) -> list[dict[str, float]]:
    return [json.loads(Path(p).read_text()) for p in paths]


def _overlap(a: dict[str, float], b: dict[str, float]) -> bool:
    return a["start"] < b["end"] and b["start"] < a["end"]


def test_it_honours_the_cores_given_not_the_nodes(monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    """A 1-core allocation on this machine runs one 1-core target at a time,
    however many cores the machine has."""
    fake_allocation_here(monkeypatch, cores=1)
    batch = batch_systems.create("allocation", workdir=str(tmp_path / "batch"))
    jobs = Jobs(tmp_path)
    try:
        assert batch.limits().cpu == 1
        records = [jobs.path(f"stamp{i}.json") for i in range(3)]
        ids = [batch.issue(jobs.script("stamp", r, "0.3", cpu=1)) for r in records]
        assert batch.issued() == set(ids)
        updates = collect(batch, ids, QUICK * 3)
        assert {u.reason for u in updates.values()} == {ExitReason.FINISHED}, updates
        stamps = _stamps(records)
        for i, a in enumerate(stamps):
            for b in stamps[i + 1:]:
                assert not _overlap(a, b), stamps
    finally:
        batch.close()


def test_two_cores_run_two_half_core_targets_beside_a_waiting_two_core_one(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake_allocation_here(monkeypatch, cores=2)
    batch = batch_systems.create("allocation", workdir=str(tmp_path / "batch"))
    jobs = Jobs(tmp_path)
    try:
        big, small = jobs.path("big.json"), jobs.path("small.json")
        ids = [batch.issue(jobs.script("stamp", small, "0.3", cpu=1)),
               batch.issue(jobs.script("stamp", big, "0.3", cpu=2))]
        collect(batch, ids, QUICK * 2)
        assert not _overlap(*_stamps([small, big]))
    finally:
        batch.close()


def test_a_job_larger_than_any_node_fails_for_good(monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    """An MPI target asking more nodes than the allocation holds fails at once,
    saying why; trying again cannot help."""
    fake_allocation_here(monkeypatch, cores=2)
    batch = batch_systems.create("allocation", workdir=str(tmp_path / "batch"))
    jobs = Jobs(tmp_path)
    try:
        spec = jobs.command(["true"])
        spec = dataclasses.replace(spec, resources=Resources(cpu=1, nodes=2, processes=1))
        update = collect(batch, [batch.issue(spec)], QUICK)
        (only,) = update.values()
        assert only.reason is ExitReason.FAILED and only.permanent, only
        assert "2 nodes" in (only.message or "") and "larger allocation" in only.message
    finally:
        batch.close()


def test_an_mpi_target_gets_its_step(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A one-node MPI target on the master's node finds the srun step and the
    machine file for its ranks in its environment."""
    fake_allocation_here(monkeypatch, cores=2)
    batch = batch_systems.create("allocation", workdir=str(tmp_path / "batch"))
    jobs = Jobs(tmp_path)
    try:
        out = jobs.path("env.txt")
        spec = jobs.command(["sh", "-c", f'echo "$JOBTREE_MPI_RUN|$JOBTREE_MPI_NP|'
                                         f'$JOBTREE_MPI_HOSTFILE" > {out}'])
        spec = dataclasses.replace(spec, resources=Resources(cpu=1, processes=2))
        (update,) = collect(batch, [batch.issue(spec)], QUICK).values()
        assert update.reason is ExitReason.FINISHED, update
        run, count, hostfile = Path(out).read_text().strip().split("|")
        host = socket.gethostname()
        assert shlex.split(run) == ["srun", "--nodes=1", "--ntasks=2", "--ntasks-per-node=2",
                                    "--cpus-per-task=1", "-w", host, "--exact", "--overlap"]
        assert count == "2"
        assert Path(hostfile).read_text() == f"{host}\n{host}\n"
    finally:
        batch.close()


# ------------------------------------------- inside real scheduler allocations
def _wait_for(command: list[str], still: str, timeout: float) -> None:
    """Waits until the scheduler no longer lists the job (``still`` is in the
    listing while it is there)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listing = subprocess.run(command, capture_output=True, text=True).stdout
        if still not in listing:
            return
        time.sleep(1)
    raise AssertionError(f"the job did not end within {timeout:g}s")


def _sort_script(tmp_path: Path, name: str, extra: str = "") -> tuple[Path, Path, list[bytes]]:
    contents, chunk = SORT_CASES[name]
    to_sort = tmp_path / "input.txt"
    to_sort.write_bytes(contents)
    expected = sorted_lines(to_sort)
    script = tmp_path / "run.sh"
    script.write_text(
        f"#!/bin/sh\n{extra}export PYTHONPATH={shlex.quote(str(ROOT))}\n"
        f"exec {shlex.quote(sys.executable)} {ROOT / 'examples' / 'sort.py'} "
        f"--fileToSort {to_sort} --N {chunk} --jobTree {tmp_path / 'jt'} "
        f"--batchSystem allocation\n")
    script.chmod(0o755)
    return script, to_sort, expected


@pytest.mark.parametrize("steps", [False, True], ids=["fork-server", "srun-steps"])
def test_sort_inside_an_sbatch_allocation(tmp_path: Path, steps: bool) -> None:
    """The sort example run by an sbatch job with --batchSystem allocation; with
    JOBTREE_ALLOCATION_STEPS=all every target is an srun step of its own."""
    require_scheduler("slurm")
    extra = "export JOBTREE_ALLOCATION_STEPS=all\n" if steps else ""
    script, to_sort, expected = _sort_script(tmp_path, "10KB-deep-tree", extra)
    out = tmp_path / "slurm.out"
    job = subprocess.run(["sbatch", "--parsable", "-c", "2", "--mem=2G", "-o", str(out),
                          "-D", str(tmp_path), str(script)],
                         capture_output=True, text=True, check=True).stdout.strip()
    _wait_for(["squeue", "-h", "-o", "%i", "-j", job], job, 600)
    log = out.read_text() if out.exists() else "<no output>"
    assert to_sort.read_bytes().splitlines(keepends=True) == expected, log
    assert "allocation: slurm job" in log and "(2 cores, 2048 MiB)" in log, log
    if steps:
        listing = subprocess.run(["sacct", "-n", "-P", "-j", job, "-o", "JobName"],
                                 capture_output=True, text=True).stdout.split()
        assert sum(name.startswith("jt") for name in listing) >= 10, listing


def test_sort_inside_a_grid_engine_pe_job(tmp_path: Path) -> None:
    """The sort example run by a Grid Engine job of 2 slots (-pe smp 2)."""
    require_scheduler("gridEngine")
    script, to_sort, expected = _sort_script(tmp_path, "10KB-deep-tree")
    out = tmp_path / "sge.out"
    job = subprocess.run(["qsub", "-terse", "-cwd", "-pe", "smp", "2", "-b", "y", "-j", "y",
                          "-o", str(out), str(script)], cwd=tmp_path,
                         capture_output=True, text=True, check=True).stdout.strip()
    _wait_for(["qstat"], f" {job} ", 600)
    log = out.read_text() if out.exists() else "<no output>"
    assert to_sort.read_bytes().splitlines(keepends=True) == expected, log
    assert "allocation: gridEngine job" in log and "(2 cores)" in log, log


def test_an_mpi_step_inside_an_sbatch_allocation(tmp_path: Path) -> None:
    """A target asking processes=2 runs `$JOBTREE_MPI_RUN sh -c ...` as a real
    srun step of 2 ranks inside the sbatch job."""
    require_scheduler("slurm")
    out, result = tmp_path / "slurm.out", tmp_path / "ranks.txt"
    pipeline = tmp_path / "mpi.py"
    pipeline.write_text(textwrap.dedent("""\
        import argparse
        import sys
        from jobtree import Stack
        from jobtree.target import CommandTarget

        if __name__ == "__main__":
            parser = argparse.ArgumentParser()
            Stack.addJobTreeOptions(parser)
            options = parser.parse_args()
            root = CommandTarget(COMMAND, processes=2, cpu=1, memory="256M")
            sys.exit(Stack(root).startJobTree(options))
        """).replace("COMMAND", repr(
            f"$JOBTREE_MPI_RUN sh -c 'echo rank $SLURM_PROCID' > {result}")))
    script = tmp_path / "run.sh"
    script.write_text(f"#!/bin/sh\nexport PYTHONPATH={shlex.quote(str(ROOT))}\n"
                      f"exec {shlex.quote(sys.executable)} {pipeline} --jobTree "
                      f"{tmp_path / 'jt'} --batchSystem allocation\n")
    script.chmod(0o755)
    job = subprocess.run(["sbatch", "--parsable", "-c", "2", "--mem=1G", "-o", str(out),
                          "-D", str(tmp_path), str(script)],
                         capture_output=True, text=True, check=True).stdout.strip()
    _wait_for(["squeue", "-h", "-o", "%i", "-j", job], job, 300)
    log = out.read_text() if out.exists() else "<no output>"
    assert result.exists(), log
    assert sorted(result.read_text().split()) == ["0", "1", "rank", "rank"], log
    steps = subprocess.run(["sacct", "-n", "-P", "-j", job, "-o", "JobID,NTasks"],
                           capture_output=True, text=True).stdout.split()
    assert any(line.endswith(".0|2") for line in steps), steps


MPI4PY = "/usr/bin/python3"


def test_an_mpi4py_target_runs_with_mpirun(monkeypatch: pytest.MonkeyPatch,
                                          tmp_path: Path) -> None:
    """Inside a (faked) Grid Engine job of 2 slots on this machine, a target
    asking processes=2 starts a real mpi4py program through $JOBTREE_MPI_RUN
    (mpirun with the machine file); it sees 2 ranks."""
    probe = subprocess.run([MPI4PY, "-c", "import mpi4py"], capture_output=True)
    if probe.returncode != 0 or not shutil.which("mpirun"):
        pytest.skip("MPI is not installed here (apt-get install openmpi-bin python3-mpi4py)")
    hostfile = tmp_path / "pe_hostfile"
    hostfile.write_text(f"{socket.gethostname()} 2 all.q@{socket.gethostname()} UNDEFINED\n")
    for name in ("SLURM_JOB_NODELIST", "SLURM_NODELIST", "PBS_NODEFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PE_HOSTFILE", str(hostfile))
    # Open MPI refuses root unless told (the tests may run as root)
    monkeypatch.setenv("OMPI_ALLOW_RUN_AS_ROOT", "1")
    monkeypatch.setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    batch = batch_systems.create("allocation", workdir=str(tmp_path / "batch"))
    jobs = Jobs(tmp_path)
    try:
        out = jobs.path("ranks.txt")
        program = ("from mpi4py import MPI; c = MPI.COMM_WORLD; "
                   "print(c.Get_rank(), c.Get_size(), flush=True)")
        spec = jobs.command(["sh", "-c", f"$JOBTREE_MPI_RUN {MPI4PY} -c '{program}' > {out}"])
        spec = dataclasses.replace(spec, resources=Resources(cpu=1, processes=2))
        (update,) = collect(batch, [batch.issue(spec)], 120).values()
        assert update.reason is ExitReason.FINISHED, (update, Path(spec.log_path).read_text())
        assert sorted(Path(out).read_text().splitlines()) == ["0 2", "1 2"]
    finally:
        batch.close()


def test_the_sort_in_a_faked_allocation_and_jobtreekill_outside_it(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The sort example, end to end through the master, in a (faked) 2-core
    Slurm allocation of this machine; then jobTreeKill, run outside any
    allocation, finds no scheduler job to cancel instead of failing."""
    contents, chunk = SORT_CASES["10KB-deep-tree"]
    to_sort = tmp_path / "input.txt"
    to_sort.write_bytes(contents)
    expected = sorted_lines(to_sort)
    fake_allocation_here(monkeypatch, cores=2)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    tree = tmp_path / "jt"
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "sort.py"), "--fileToSort",
                           str(to_sort), "--N", str(chunk), "--jobTree", str(tree),
                           "--batchSystem", "allocation"], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert to_sort.read_bytes().splitlines(keepends=True) == expected
    for name in ("SLURM_JOB_NODELIST", "SLURMD_NODENAME", "SLURM_JOB_CPUS_PER_NODE",
                 "SLURM_CPUS_ON_NODE", "SLURM_JOB_ID"):
        monkeypatch.delenv(name)
    killed = subprocess.run([sys.executable, "-m", "jobtree.cli.kill", "--jobTree", str(tree)],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert "Traceback" not in killed.stderr and "salloc" not in killed.stderr, killed.stderr
    assert killed.returncode == 0, (killed.stdout, killed.stderr)


# ------------------------- another node, reached through a fake launcher
FAKE_SRUN = """#!/bin/sh
# a stand-in for srun: records its command line, then runs the command here
echo "$@" >> "$FAKE_SRUN_LOG"
while [ "$1" != "--" ]; do shift; done
shift
exec "$@"
"""


@pytest.fixture
def two_nodes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[allocation.Allocation]:
    """An allocation of 1 core on the master's node ("here") and 1 on "n2",
    which a fake srun reaches (it runs the command on this machine)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text(FAKE_SRUN)
    (bin_dir / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SRUN_LOG", str(tmp_path / "srun.log"))
    grant = Grant(Launcher.SLURM, "5", (Node("here", 1, GIB), Node("n2", 1, GIB)), "here")
    batch = allocation.Allocation(grant, workdir=str(tmp_path / "batch"))
    yield batch
    batch.close()


def test_work_goes_to_the_other_node_through_the_launcher(two_nodes: allocation.Allocation,
                                                          tmp_path: Path) -> None:
    batch = two_nodes
    assert not batch.local and not batch.takes_input  # the master writes job inputs
    jobs = Jobs(tmp_path)
    records = [jobs.path(f"stamp{i}.json") for i in range(3)]
    specs = [jobs.script("stamp", r, "0.3", cpu=1, memory=GIB // 2) for r in records]
    worker = jobs.worker(targets.say, "on n2", memory=GIB // 2)
    ids = [batch.issue(s) for s in specs] + [batch.issue(worker)]
    updates = collect(batch, ids, QUICK * 4)
    assert {u.reason for u in updates.values()} == {ExitReason.FINISHED}, updates
    assert jobs.result(worker) is not None
    launched = (tmp_path / "srun.log").read_text().splitlines()
    assert launched and all(" -w n2 --exact " in line and "--mem=512M" in line
                            and "--cpus-per-task=1" in line for line in launched), launched
    assert len(launched) < 4  # the master's node ran its share itself
    stamps = _stamps(records)
    # one core on each node: at most two of the three at once
    assert not (_overlap(stamps[0], stamps[1]) and _overlap(stamps[1], stamps[2])
                and _overlap(stamps[0], stamps[2])), stamps


def test_a_job_on_the_other_node_is_killed_and_timed(two_nodes: allocation.Allocation,
                                                     tmp_path: Path) -> None:
    batch = two_nodes
    jobs = Jobs(tmp_path)
    hold = jobs.script("sleep", jobs.path("hold.json"), "60", cpu=1)
    far = jobs.script("sleep", jobs.path("far.json"), "60", cpu=1)
    limited = jobs.script("sleep", jobs.path("limited.json"), "60", cpu=1, time_limit=0.5)
    hold_id, far_id = batch.issue(hold), batch.issue(far)
    wait_for_record(far, jobs.path("far.json"), QUICK)
    assert "n2" in (tmp_path / "srun.log").read_text()
    batch.kill([far_id])
    assert collect(batch, [far_id], QUICK, check_issued=False)[far_id].reason is \
        ExitReason.KILLED
    limited_id = batch.issue(limited)  # goes to n2, now free again
    update = collect(batch, [limited_id], QUICK * 2, check_issued=False)[limited_id]
    assert update.reason is ExitReason.TIMEOUT and "timeLimit" in (update.message or "")
    batch.kill([hold_id])
    collect(batch, [hold_id], QUICK, check_issued=False)


def test_ssh_is_the_fallback_launcher(monkeypatch: pytest.MonkeyPatch) -> None:
    grant = Grant(Launcher.PBS, None, (Node("a", 2), Node("b", 2)))
    monkeypatch.setenv("PATH", "/nonexistent")
    assert allocation.choose_launcher(grant, {}, False) is Launcher.SSH
    grant = dataclasses.replace(grant, scheduler=Launcher.SLURM)
    assert allocation.choose_launcher(
        grant, {"JOBTREE_ALLOCATION_LAUNCHER": "ssh"}, False) is Launcher.SSH
