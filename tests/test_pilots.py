"""Pilots (``--pilots N``): the master's pure decisions with a fake clock, and
whole pipelines on real Slurm and Grid Engine: what fits a pilot runs in one,
the rest as jobs of their own, and a pilot cancelled while it runs a target
loses nothing."""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import PIPELINES, quick_cluster_config, require_scheduler

from jobtree.batch import pilots, wire
from jobtree.batch.base import BatchJobId, ExitReason
from jobtree.batch.jobfiles import Entry, Submitted, update_for_lost, update_from_exit
from jobtree.batch.native import NativeJob, NativeState, Request
from jobtree.batch.settings import ClusterSettings
from jobtree.errors import BadOptionError

SETTINGS = ClusterSettings(pilots=2, pilot_cores=2, pilot_memory=4 * 1024 ** 3,
                           pilot_walltime=3600.0, pilot_idle=60.0, max_jobs=10)
GIB = 1024 ** 3


def _pilot(number: int, queue: str = "Q", running_since: float | None = None,
           ended: bool = False) -> Submitted:
    sub = Submitted(f"p{number}", [], 1, True, 0.0, f"{number}", queue=queue)
    if running_since is not None:
        sub.running_since[1] = running_since
    if ended:
        sub.ended_tasks.add(1)
    return sub


# ------------------------------------------------------- pure decisions


def test_what_fits_a_pilot() -> None:
    small = Request(cores=1, memory=GIB, walltime=600.0)
    assert pilots.fits(small, SETTINGS)
    assert pilots.fits(Request(cores=1), SETTINGS)
    # a core of the pilot has 2 GiB; more cores, nodes, GPUs, another queue: no
    assert not pilots.fits(dataclasses.replace(small, memory=3 * GIB), SETTINGS)
    assert not pilots.fits(dataclasses.replace(small, cores=2), SETTINGS)
    assert not pilots.fits(dataclasses.replace(small, nodes=2), SETTINGS)
    assert not pilots.fits(dataclasses.replace(small, gpus=1), SETTINGS)
    assert not pilots.fits(dataclasses.replace(small, walltime=7200.0), SETTINGS)
    assert not pilots.fits(dataclasses.replace(small, queue="long"), SETTINGS)
    assert not pilots.fits(dataclasses.replace(small, extra=("#SBATCH -C avx",)), SETTINGS)
    assert not pilots.fits(small, dataclasses.replace(SETTINGS, pilots=0))


def test_a_pilot_asks_for_its_configured_size() -> None:
    request = pilots.pilot_request(SETTINGS)
    assert (request.cores, request.memory, request.walltime, request.nodes) == \
        (2, 4 * GIB, 3600.0, 1)
    default = pilots.pilot_request(ClusterSettings(pilots=1, pilot_cores=3))
    assert default.memory == 3 * pilots.MEMORY_PER_CORE


def test_pilots_are_submitted_only_while_work_waits_and_within_max_jobs() -> None:
    assert pilots.to_submit(0, [], "Q", 10, 0.0, SETTINGS) == 0  # no idle reservations
    assert pilots.to_submit(100, [], "Q", 10, 0.0, SETTINGS) == 2  # up to --pilots
    assert pilots.to_submit(1, [], "Q", 10, 0.0, SETTINGS) == 1  # no more than waits
    assert pilots.to_submit(100, [], "Q", 1, 0.0, SETTINGS) == 1  # --maxJobs counts them
    assert pilots.to_submit(100, [_pilot(1)], "Q", 10, 0.0, SETTINGS) == 1
    # a pilot not yet started will take the two cores' worth that wait
    assert pilots.to_submit(2, [_pilot(1)], "Q", 10, 0.0, SETTINGS) == 0
    assert pilots.to_submit(3, [_pilot(1)], "Q", 10, 0.0, SETTINGS) == 1
    assert pilots.to_submit(2, [_pilot(1, running_since=0.0)], "Q", 10, 1.0, SETTINGS) == 1
    # an ended pilot, or one of an earlier master's queue, takes no work
    assert pilots.to_submit(100, [_pilot(1, ended=True), _pilot(2, queue="old")], "Q", 10,
                            0.0, SETTINGS) == 2


def test_a_pilot_near_its_wall_time_is_replaced() -> None:
    pilot = _pilot(1, running_since=1000.0)
    assert pilots.accepting(pilot, "Q", 1000.0 + 3000.0, SETTINGS)
    assert not pilots.accepting(pilot, "Q", 1000.0 + 3400.0, SETTINGS)
    assert pilots.to_submit(100, [pilot, _pilot(2)], "Q", 10, 1000.0 + 3400.0, SETTINGS) == 1


def test_queued_pilots_are_cancelled_once_no_work_waited_for_the_idle_time() -> None:
    queued, running = _pilot(1), _pilot(2, running_since=5.0)
    assert pilots.surplus([queued, running], 3, None, 100.0, SETTINGS) == []
    assert pilots.surplus([queued, running], 0, 50.0, 100.0, SETTINGS) == []  # not yet
    assert pilots.surplus([queued, running], 0, 40.0, 100.0, SETTINGS) == [queued]


def test_a_pilot_counts_one_job_while_it_lives() -> None:
    pilot = _pilot(1)
    assert pilot.live_tasks() == 1  # with nothing claimed yet
    pilot.ended_tasks.add(1)
    assert pilot.live_tasks() == 0


def test_a_lost_pilot_gives_its_target_back_without_a_try() -> None:
    entry = Entry(BatchJobId("3.1"), "3.1", ["true"], "/dev/null", None, None, True)
    entry.sub = _pilot(1)
    row = NativeJob("1", NativeState.CANCELLED, None, None)
    assert update_for_lost("slurm", entry, row, "1").reason is ExitReason.PREEMPTED
    stopped = update_from_exit(entry, {"code": -15, "reason": "pilot", "host": "n1"}, "1")
    assert stopped.reason is ExitReason.PREEMPTED and "pilot job 1" in (stopped.message or "")
    entry.killed = True  # the master asked: killed, as anywhere
    assert update_for_lost("slurm", entry, row, "1").reason is ExitReason.KILLED


def test_multi_node_pilots_are_refused_clearly(tmp_path: Path) -> None:
    from argparse import Namespace

    from jobtree.batch.settings import cluster_settings

    config = tmp_path / "c.ini"
    config.write_text("[cluster]\npilots = 2\npilot_nodes = 2\n")
    with pytest.raises(BadOptionError, match="pilot_nodes = 1"):
        cluster_settings("slurm", Namespace(clusterConfig=str(config)), None, None, None,
                         None, None)


# ---------------------------------------------------- real schedulers

CANCEL = {"slurm": "scancel", "gridEngine": "qdel"}


def _config(tmp_path: Path, more: str = "") -> Path:
    config = quick_cluster_config(tmp_path)
    with open(config, "a", encoding="utf-8") as handle:
        handle.write("pilot_idle = 10\npilot_walltime = 30m\npilot_cores = 2\n" + more)
    return config


def _start(tmp_path: Path, system: str, width: int, sleep: float,
           more: str = "") -> subprocess.Popen[bytes]:
    log = open(tmp_path / "master.log", "wb")  # noqa: SIM115 - the child keeps it
    return subprocess.Popen(
        [sys.executable, str(PIPELINES / "pilot_mix.py"), "--out", str(tmp_path / "out"),
         "--width", str(width), "--sleep", str(sleep), "--jobTree", str(tmp_path / "tree"),
         "--batchSystem", system, "--clusterConfig", str(_config(tmp_path, more)),
         "--pilots", "2", "--retryCount", "0"],
        stdout=subprocess.DEVNULL, stderr=log)


def _outputs(out: Path, width: int) -> dict[int, str]:
    return {i: (out / str(i)).read_text() for i in range(width + 1)}


@pytest.mark.parametrize("system", ["slurm", "gridEngine", "drmaa"])
def test_pilots_run_what_fits_and_jobs_the_rest(tmp_path: Path, system: str) -> None:
    require_scheduler(system)
    master = _start(tmp_path, system, 8, 0.0)
    assert master.wait(timeout=300) == 0, (tmp_path / "master.log").read_text()[-3000:]
    ran_in = _outputs(tmp_path / "out", 8)
    in_pilots = {ran_in[i] for i in range(8)}
    assert len(in_pilots) <= 2, ran_in  # at most --pilots jobs ran the one-core targets
    assert ran_in[8] not in in_pilots  # the two-core one fits no pilot: a job of its own
    queues = glob.glob(str(tmp_path / "tree" / "batch" / "*" / "subs" / "pilots-*.queue"))
    keys = [json.loads(line)["key"] for q in queues for line in open(q, encoding="utf-8")]
    assert len(keys) == 10  # the root, 8 children and the follow-on went through the queue
    assert not glob.glob(str(tmp_path / "out" / "overlap-*"))


@pytest.mark.parametrize("system", ["slurm", "gridEngine"])
def test_a_pilot_cancelled_mid_run_loses_nothing(tmp_path: Path, system: str) -> None:
    require_scheduler(system)
    width = 6
    master = _start(tmp_path, system, width, 4.0)
    try:
        exit_dirs = str(tmp_path / "tree" / "batch" / "*" / "exit")
        deadline = time.monotonic() + 120
        victim = None
        while victim is None:  # a child (it sleeps 4 s) running in a pilot
            assert time.monotonic() < deadline, (tmp_path / "master.log").read_text()[-3000:]
            for name in glob.glob(os.path.join(exit_dirs, "pilots-*", "*.run")):
                record = wire.read_marker(name)
                if record is None:
                    continue
                if ("pilot" in record and not os.path.exists(name[:-4] + ".exit")
                        and glob.glob(str(tmp_path / "out" / "start-*"))):
                    victim = record["pilot"]
                    break
            time.sleep(0.2)
        subs = Path(glob.glob(exit_dirs)[0]).parent / "subs"
        job_id = (subs / f"{victim}.id").read_text().strip()
        subprocess.run([CANCEL[system], job_id], check=True, capture_output=True)
        assert master.wait(timeout=300) == 0, (tmp_path / "master.log").read_text()[-3000:]
    finally:
        if master.poll() is None:
            master.kill()
    outputs = _outputs(tmp_path / "out", width)
    assert (tmp_path / "out" / "total").read_text() == str(width + 1)
    assert not glob.glob(str(tmp_path / "out" / "overlap-*"))  # never twice at once
    # the target the cancelled pilot ran went again elsewhere (with --retryCount
    # 0: no try counted for it)
    again = [n for n in range(width)
             if any(Path(p).read_text() == job_id
                    for p in glob.glob(str(tmp_path / "out" / f"start-{n}-*")))
             and outputs[n] != job_id]
    assert again, outputs


def test_a_pilot_the_scheduler_refuses_fails_its_targets_with_the_reason(
        tmp_path: Path) -> None:
    require_scheduler("slurm")
    master = _start(tmp_path, "slurm", 2, 0.0, "pilot_memory = 900G\n")
    assert master.wait(timeout=300) == 1
    log = (tmp_path / "master.log").read_text()
    assert "slurm refused a pilot job (slurm refused the job:" in log, log[-3000:]
    assert "pilot_memory" in log and "run without --pilots" in log, log[-3000:]


# ------------------------------------------ the shell, turn by turn (fakes)


def _shell(tmp_path: Path) -> tuple[Any, Any, Any]:
    from test_cluster_decisions import Clock, FakeDialect, FakeScheduler

    from jobtree.batch.cluster import ClusterBatchSystem

    fake, clock = FakeScheduler(), Clock()
    settings = ClusterSettings(workdir=str(tmp_path / "batch"), job_name="jt-test",
                               pack_time=0, poll_interval=1, exit_grace=30, pilots=2,
                               pilot_idle=60, max_jobs=10)
    batch = ClusterBatchSystem(FakeDialect(), settings, fake,  # type: ignore[arg-type]
                               clock=lambda: clock.wall, monotonic=lambda: clock.mono,
                               background=False)
    return batch, fake, clock


def _claims(tmp_path: Path) -> Path:
    """The one claims folder of the queue (where its entries' markers go)."""
    [folder] = [p for p in (tmp_path / "batch" / "exit").iterdir() if p.is_dir()]
    return folder


def _claim(tmp_path: Path, key: str, pilot: str, when: float, done: bool) -> None:
    """Claims ``key`` (``FOLDER/JOB.ATTEMPT``, or ``JOB.ATTEMPT`` in the one
    claims folder) for ``pilot``, as a slot does, and ends it if ``done``."""
    exit_dir = tmp_path / "batch" / "exit" if "/" in key else _claims(tmp_path)
    (exit_dir / f"{key}.run").write_text(json.dumps(
        {"task": 1, "slot": 1, "pilot": pilot, "started": when}))
    if done:
        (exit_dir / f"{key}.exit").write_text(json.dumps(
            {"code": 0, "reason": None, "wall": 0.1, "task": 1}))


def test_the_shell_feeds_pilots_replaces_ended_ones_and_settles_lost_targets(
        tmp_path: Path) -> None:
    from jobtree.batch import plan
    from jobtree.batch.base import JobSpec
    from jobtree.resources import Resources

    batch, fake, clock = _shell(tmp_path)
    ids = [batch.issue(JobSpec(n, 1, ["/bin/true"], Resources(cpu=1, memory=GIB), f"t{n}",
                               str(tmp_path / f"{n}.log"))) for n in range(1, 6)]
    clock.advance(plan.GATHER)
    batch.step()
    assert fake.submitted == ["100", "101"]  # two pilots for five targets, no other job
    subs = tmp_path / "batch" / "subs"
    [queue] = glob.glob(str(subs / "pilots-*.queue"))
    folder = _claims(tmp_path).name  # where the entries' markers go
    assert [json.loads(line)["key"] for line in open(queue, encoding="utf-8")] == \
        [f"{folder}/{n}.1" for n in range(1, 6)]  # in the order issued
    pilots_ = {p.read_text(): p.name[:-3]
               for p in map(Path, glob.glob(str(subs / "*-pilot.id")))}
    first, second = pilots_["100"], pilots_["101"]
    fake.listing = {"100": "RUNNING", "101": "RUNNING"}
    _claim(tmp_path, "1.1", first, clock.wall, done=True)
    _claim(tmp_path, "2.1", second, clock.wall, done=False)
    clock.advance(1)
    batch.step()
    update = batch.next_update(0)
    assert update is not None and update.batch_id == ids[0]
    assert update.reason is ExitReason.FINISHED and update.native_id == "100"
    # the first pilot went idle and said so: another takes its place at once
    (tmp_path / "batch" / "exit" / f"{first}.ended").write_text("")
    batch.step()
    assert fake.submitted == ["100", "101", "102"]
    # a queued target is killed for no pilot to claim
    batch.kill([ids[4]])
    killed = batch.next_update(0)
    assert killed is not None and killed.reason is ExitReason.KILLED
    assert wire.read_marker(str(_claims(tmp_path) / "5.1.run")) == {"killed": True}
    # the second pilot is lost while it runs 2.1: after exit_grace, it runs again
    fake.listing = {"102": "QUEUED"}
    clock.advance(10)  # past the time a job may be missing from the listing
    batch.step()
    assert batch.next_update(0) is None  # waits exit_grace for a late exit file
    clock.advance(31)
    batch.step()
    lost = batch.next_update(0)
    assert lost is not None and lost.batch_id == ids[1], lost
    assert lost.reason is ExitReason.PREEMPTED and "pilot job 101" in (lost.message or "")
    # were it still running after all, it is told to claim nothing more
    assert (tmp_path / "batch" / "exit" / f"{second}.stop").exists()
    # no work left to wait for: the pilot still queued is cancelled after pilot_idle
    _claim(tmp_path, "3.1", second, clock.wall, done=True)
    _claim(tmp_path, "4.1", second, clock.wall, done=True)
    batch.step()
    assert {u.batch_id for u in (batch.next_update(0), batch.next_update(0)) if u} == \
        {ids[2], ids[3]}
    batch.step()  # no target waits from now on
    clock.advance(59)
    batch.step()
    assert "102" not in fake.cancelled
    clock.advance(2)
    batch.step()
    assert fake.cancelled == ["102"]


@pytest.mark.parametrize("system", ["torque", "pbspro", "lsf"])
def test_pilots_on_the_fake_schedulers(tmp_path: Path, system: str,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    fakes = Path(__file__).resolve().parent / "fakes" / system
    monkeypatch.setenv("PATH", f"{fakes}{os.pathsep}{os.environ['PATH']}")
    (tmp_path / "state").mkdir()
    monkeypatch.setenv("FAKE_PBS_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("FAKE_LSF_DIR", str(tmp_path / "state"))
    master = _start(tmp_path, system, 4, 0.0)
    assert master.wait(timeout=300) == 0, (tmp_path / "master.log").read_text()[-3000:]
    assert (tmp_path / "out" / "total").read_text() == "5"
    subs = tmp_path / "tree" / "batch" / f"main-{system}" / "subs"
    [queue] = glob.glob(str(subs / "pilots-*.queue"))
    assert len(open(queue, encoding="utf-8").readlines()) == 6  # all but the two-core one
    assert len(glob.glob(str(subs / "*-pilot.sh"))) <= 2


def _slot(tmp_path: Path) -> Any:
    from jobtree.batch.pilot_runner import PilotSlot

    (tmp_path / "exit").mkdir()
    queue = tmp_path / "q.queue"
    entries = [{"key": f"{n}.1", "argv": ["/bin/sh", "-c", "exit 0"],
                "log": str(tmp_path / f"{n}.log"), "time_limit": None, "worker": False,
                "walltime": walltime, "memory": None}
               for n, walltime in ((1, 7200.0), (2, 60.0), (3, None))]
    queue.write_text("".join(json.dumps(e) + "\n" for e in entries) + '{"key": "4.1", "ar')
    manifest = {"entries": [], "exit_dir": str(tmp_path / "exit"), "task_walltime": 3600.0,
                "pilot": {"sub_id": "P", "queue": str(queue), "slots": 1, "idle": 1}}
    return PilotSlot(manifest, 1, time.time())


def test_a_slot_claims_in_order_what_fits_its_time_and_stops_when_told(
        tmp_path: Path) -> None:
    slot = _slot(tmp_path)
    exit_dir = tmp_path / "exit"
    (exit_dir / "P.stop").write_text("stop")  # the master took the pilot for ended
    assert not slot.next() and not list(exit_dir.glob("*.run"))
    (exit_dir / "P.stop").unlink()
    slot.draining = False
    assert slot.next()  # 1.1 asks 2 hours, more than the pilot has: 2.1 goes first
    assert sorted(p.name for p in exit_dir.glob("*.exit")) == ["2.1.exit"]
    record = wire.read_marker(str(exit_dir / "2.1.run"))
    assert record["pilot"] == "P" and record["task"] == 1
    assert slot.next() and (exit_dir / "3.1.exit").exists()
    assert not slot.next()  # 1.1 never fits; 4.1's line is not complete yet
    assert not (exit_dir / "1.1.run").exists() and not (exit_dir / "4.1.run").exists()


def _worker_entry(tree: Path, job: int) -> dict[str, Any]:
    return {"key": f"{job}.1", "argv": [sys.executable, "-m", "jobtree.worker", str(tree),
                                        str(job), "1"],
            "log": str(tree / f"{job}.log"), "time_limit": None, "worker": True}


def test_a_pilots_results_are_synced_together_then_published_before_their_exits(
        tmp_path: Path) -> None:
    """A worker in a pilot leaves its result unsynced; the slot syncs several
    at once (at most PUBLISH_AFTER later), renames each into place and only
    then writes its exit file, so the master never reads an exit whose
    result is not durable. A worker stopped before its end published nothing."""
    from jobtree.batch import runner as pilot_runner
    from jobtree.paths import TreePaths
    from jobtree.resources import Resources
    from jobtree.worker import Worker

    tree = tmp_path / "tree"
    (tree / "results").mkdir(parents=True)
    paths = TreePaths(str(tree))
    config = {"defaults": Resources().to_dict(), "limits": Resources().to_dict(),
              "tree_id": "t", "sync_results": True, "defer_results": True}
    for job in (1, 2, 3):
        Worker(str(tree), job, 1, config).write_result(f"result {job}".encode())
        assert not os.path.exists(paths.result(job, 1))  # not yet
    slot = _slot(tmp_path)
    slot._deferring[str(tree)] = config
    exit_dir = tmp_path / "exit"
    entries = [_worker_entry(tree, job) for job in (1, 2, 3)]
    for entry in entries:
        assert wire.claim(str(exit_dir), entry["key"], {"task": 1, "started": 1.0})
    slot._settle(entries[0], {"code": 0, "reason": None})
    slot._settle(entries[1], {"code": -9, "reason": "memory"})  # killed: maybe torn
    slot._settle(entries[2], {"code": 1, "reason": None})  # a failure result is published too
    assert not (exit_dir / "1.1.exit").exists() and not (exit_dir / "3.1.exit").exists()
    assert (exit_dir / "2.1.exit").exists() and not os.path.exists(paths.pending_result(2, 1))
    slot._tick()  # too soon
    assert not (exit_dir / "1.1.exit").exists()
    slot._unpublished_since -= pilot_runner.PUBLISH_AFTER
    slot._tick()
    for job in (1, 3):
        assert Path(paths.result(job, 1)).read_bytes() == f"result {job}".encode()
        assert not os.path.exists(paths.pending_result(job, 1))
    assert wire.read_marker(str(exit_dir / "1.1.exit"))["code"] == 0
    assert wire.read_marker(str(exit_dir / "3.1.exit"))["code"] == 1
    assert not os.path.exists(paths.result(2, 1))


def test_the_claims_folders_of_settled_targets_are_removed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from jobtree.batch import pilots, plan, wire
    from jobtree.batch.base import BatchJobId, JobSpec
    from jobtree.batch.pilot_runner import queue_start, read_lines
    from jobtree.resources import Resources

    monkeypatch.setattr(pilots, "CLAIMS_PER_FOLDER", 2)
    batch, fake, clock = _shell(tmp_path)
    for n in range(1, 6):
        batch.issue(JobSpec(n, 1, ["/bin/true"], Resources(cpu=1, memory=GIB), f"t{n}",
                            str(tmp_path / f"{n}.log")))
    clock.advance(plan.GATHER)
    batch.step()
    exit_dir = tmp_path / "batch" / "exit"
    [queue] = (tmp_path / "batch" / "subs").glob("pilots-*.queue")
    keys = [json.loads(line)["key"] for line in queue.read_text().splitlines()]
    folders = sorted({key.partition("/")[0] for key in keys}, key=lambda f: int(f[-1]))
    assert len(folders) == 3 and all((exit_dir / f).is_dir() for f in folders)
    [pilot, _] = sorted(p.name[:-3] for p in (tmp_path / "batch" / "subs").glob("*-pilot.id"))
    fake.listing = {"100": "RUNNING", "101": "RUNNING"}
    for key in keys[:3]:  # the first folder's two, and one of the second's
        _claim(tmp_path, key, pilot, clock.wall, done=True)
    clock.advance(1)
    batch.step()
    assert {str(u.batch_id) for u in iter(lambda: batch.next_update(0), None)} == \
        {"1.1", "2.1", "3.1"}
    clock.advance(1)
    batch.step()
    # every entry of the first is settled: gone, and nothing can be claimed in it again
    assert sorted(p.name for p in exit_dir.iterdir() if p.is_dir()) == sorted(folders[1:])
    assert not wire.claim(str(exit_dir), keys[0], {"task": 9})
    assert not wire.settle_once(str(exit_dir), keys[0], {"code": 0})
    # a pilot that starts now reads the queue from the first line of the second
    start = queue_start(str(queue))
    assert start == len(b"".join(queue.read_bytes().splitlines(keepends=True)[:2]))
    assert [e["key"] for e in read_lines(str(queue), start)[0]] == keys[2:]
    # the others hold a target not yet settled (the last is where new ones go)
    _claim(tmp_path, keys[3], pilot, clock.wall, done=True)
    clock.advance(1)
    batch.step()
    assert str(batch.next_update(0).batch_id) == "4.1"  # type: ignore[union-attr]
    clock.advance(1)
    batch.step()
    assert [p.name for p in exit_dir.iterdir() if p.is_dir()] == [folders[2]]
    # at the end, with every target settled, the last one goes too
    batch.kill([BatchJobId("5.1")])
    assert batch.next_update(0) is not None
    batch.close()
    assert not [p for p in exit_dir.iterdir() if p.is_dir()]


def test_an_exit_seen_before_its_claim_still_names_the_pilot_that_ran_it(
        tmp_path: Path) -> None:
    from jobtree.batch import plan
    from jobtree.batch.base import JobSpec
    from jobtree.resources import Resources

    batch, fake, clock = _shell(tmp_path)
    batch.issue(JobSpec(1, 1, ["/bin/true"], Resources(cpu=1, memory=GIB), "t1",
                        str(tmp_path / "1.log")))
    clock.advance(plan.GATHER)
    batch.step()
    [pilot] = [p.name[:-3] for p in (tmp_path / "batch" / "subs").glob("*-pilot.id")]
    _claim(tmp_path, "1.1", pilot, clock.wall, done=True)
    key = f"{_claims(tmp_path).name}/1.1"
    batch._read_markers([f"{key}.exit", f"{key}.run"])  # as a listing may give them
    update = batch.next_update(0)
    assert update is not None and update.native_id == "100"
