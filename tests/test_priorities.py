"""Priorities (``Target(priority=N)``: ready targets are issued highest first,
ties in creation order) and bulk edits (``jobTreeRun --select ... --set
KEY=VALUE``: what the matching targets that may still run ask for next)."""

from __future__ import annotations

import json
import pickle
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import PIPELINES, quick_cluster_config, require_scheduler, run_command, run_script

from jobtree import Target
from jobtree.batch.base import JobSpec
from jobtree.errors import ResourceError
from jobtree.jobstore import JobState, JobStore, NewJob, TreeIndex
from jobtree.jobstore.records import JobRow
from jobtree.paths import TreePaths
from jobtree.placement import place_try
from jobtree.resources import Resources

sys.path.insert(0, str(PIPELINES))
from priorities import PRIORITIES  # noqa: E402

MIB = 1024 ** 2
#: the names the 20 children of priorities.py write, in the order they must run
EXPECTED = [f"c{n:02d}p{p}" for n, p in sorted(enumerate(PRIORITIES), key=lambda c: (-c[1], c[0]))]


def _order(tmp_path: Path, *options: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    out = tmp_path / "order.txt"
    done = run_script("priorities.py", "--jobTree", str(tmp_path / "tree"), "--out", str(out),
                      "--logLevel", "ERROR", *options)
    return done, out.read_text().split() if out.exists() else []


# ------------------------------------------------------------- priorities
def test_children_run_highest_priority_first_ties_in_creation_order(tmp_path: Path) -> None:
    done, order = _order(tmp_path, "--maxThreads", "1")
    assert done.returncode == 0, done.stderr
    assert order == EXPECTED


@pytest.mark.parametrize("system", ["slurm", "gridEngine"])
def test_a_cluster_submits_and_claims_highest_priority_first(tmp_path: Path,
                                                             system: str) -> None:
    require_scheduler(system)
    # one packing task claims the 20 entries of its array in the order written
    done, order = _order(tmp_path, "--batchSystem", system, "--maxJobs", "1",
                         "--clusterConfig", str(quick_cluster_config(tmp_path)))
    assert done.returncode == 0, done.stderr
    assert order == EXPECTED


def test_status_shows_and_selects_priorities(tmp_path: Path) -> None:
    done, _ = _order(tmp_path, "--maxThreads", "2")
    assert done.returncode == 0, done.stderr
    tree = str(tmp_path / "tree")
    listed = run_command("status", "--jobTree", tree, "--select", "priority >= 7")
    assert listed.returncode == 0, listed.stderr
    rows = [line.split("\t") for line in listed.stdout.splitlines()]
    assert sorted(int(row[5]) for row in rows) == [7, 7, 10, 10, 10]
    document = json.loads(run_command("status", "--jobTree", tree, "--select", "priority < 0",
                                      "--json").stdout)
    assert sorted(t["priority"] for t in document["targets"]) == [-2, -1, -1]


def test_the_priority_keyword_is_checked_and_kept() -> None:
    assert Target().getPriority() == 0
    assert Target(priority=-3).getPriority() == -3
    made = Target().addChildFn(print, priority=4)
    assert made.getPriority() == 4
    assert Target().addChildCommand("true", priority=2).getPriority() == 2
    for wrong in (1.5, "high", True):
        with pytest.raises(ResourceError, match="priority must be a whole number"):
            Target(priority=wrong)  # type: ignore[arg-type]
    old = Target()
    del old.__dict__["_jt_priority"]  # pickled by a jobtree before priorities
    assert pickle.loads(pickle.dumps(old)).getPriority() == 0


def _store(tmp_path: Path) -> JobStore:
    paths = TreePaths(str(tmp_path / "tree"))
    Path(paths.root).mkdir(parents=True)
    JobStore.initialise(paths, {"tree_id": "t"}, NewJob("R", "root", None, None, None, None,
                                                         b"p", priority=1), tries=1)
    return JobStore.open(paths)


def test_the_store_reads_ready_jobs_by_priority(tmp_path: Path) -> None:
    store = _store(tmp_path)
    with store.transaction():
        store._insert_children(1, [NewJob("C", f"c{p}", None, None, None, None, b"x",
                                          priority=p) for p in (0, 3, 0, -1, 3)], tries=1)
    ready = [(row.id, row.priority) for row, _ in store.ready(10)]
    assert ready == [(3, 3), (6, 3), (1, 1), (2, 0), (4, 0), (5, -1)]
    assert [row.id for row, _ in store.ready(2)] == [3, 6]
    store.close()


def test_a_format_6_index_is_upgraded_with_priority_0(tmp_path: Path) -> None:
    store = _store(tmp_path)
    paths = store.paths
    store.close()
    db = sqlite3.connect(paths.db)  # as format 6 made it
    db.execute("DROP INDEX jobs_state")
    db.execute("ALTER TABLE jobs DROP COLUMN priority")
    db.execute("ALTER TABLE jobs DROP COLUMN pinned")
    db.execute("CREATE INDEX jobs_state ON jobs(state)")
    db.execute("UPDATE meta SET value = '6' WHERE key = 'format_version'")
    db.commit()
    db.close()
    index = TreeIndex.open(paths)  # a reader leaves it as it is, and sees priority 0
    assert [(r.id, r.priority) for r in index.listing()] == [(1, 0)]
    assert index.job(1).priority == 0
    index.close()
    store = JobStore.open(paths)
    assert store.meta()["format_version"] == 7 and store.job(1).priority == 0
    (sql,) = store._db.execute("SELECT sql FROM sqlite_master WHERE name = 'jobs_state'"
                               ).fetchone()
    assert "priority" in sql
    store.close()


# -------------------------------------------------------------- --set
@pytest.mark.parametrize("system", ["singleMachine", "slurm"])
def test_set_changes_what_the_next_try_asks(tmp_path: Path, system: str) -> None:
    if system != "singleMachine":
        require_scheduler(system)
    out, gate, tree = tmp_path / "given.txt", tmp_path / "gate", str(tmp_path / "tree")
    failed = run_script("priorities.py", "--mode", "given", "--out", str(out), "--gate",
                        str(gate), "--jobTree", tree, "--retryCount", "0", "--logLevel", "ERROR",
                        "--batchSystem", system,
                        "--clusterConfig", str(quick_cluster_config(tmp_path)))
    assert failed.returncode == 1, failed.stderr
    assert out.read_text().split() == ["leaf", str(100 * MIB), "10", "1", "0"]
    gate.touch()
    again = run_command("run", "--jobTree", tree, "--select", "class LIKE '%Leaf'",
                        "--set", "memory=300M", "--set", "time=2m", "--set", "cpu=2",
                        "--set", "priority=5", "--logLevel", "ERROR")
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == [
        "jobTreeRun: --set changed the memory, time, cpu and priority of 1 target."]
    second = out.read_text().splitlines()[1].split()
    assert second[:4] == ["leaf", str(300 * MIB), "120", "2"]
    listed = run_command("status", "--jobTree", tree, "--select", "priority = 5")
    assert [line.split("\t")[5] for line in listed.stdout.splitlines()] == ["5"]
    done = run_command("status", "--jobTree", tree, "--select", "memory = 300 * 1048576")
    assert len(done.stdout.splitlines()) == 1, done.stdout + done.stderr


def test_set_wins_over_growth_after_running_out_of_memory(tmp_path: Path) -> None:
    tree = str(tmp_path / "tree")
    # the leaf asks 150M, touches 260M: its one try runs out of memory
    failed = run_script("grows.py", "--jobTree", tree, "--retryCount", "0",
                        "--logLevel", "ERROR")
    assert failed.returncode == 1, failed.stderr
    # grown, the next try would ask 300M; the user's 280M wins (and is enough)
    again = run_command("run", "--jobTree", tree, "--select", "class LIKE '%Grows'",
                        "--set", "memory=280M", "--logLevel", "ERROR")
    assert again.returncode == 0, again.stderr
    assert "changed the memory of 1 target" in again.stdout
    db = sqlite3.connect(f"file:{tmp_path / 'tree' / 'tree.db'}?mode=ro", uri=True)
    (memory, asked, attempt), = db.execute(
        "SELECT memory, asked, attempt FROM jobs WHERE cls LIKE '%Grows'").fetchall()
    db.close()
    assert (memory, asked, attempt) == (280 * MIB, None, 2)  # asked: just its own 280M


def test_pinned_values_hold_until_a_later_try_fails() -> None:
    row = JobRow(2, JobState.READY, 1, None, 2, None, 0, 1, 0, "C", "c", None, 280 * MIB,
                 None, None, None, None, None, None,
                 pinned=json.dumps({"after": 1, "fields": ["memory"]}))
    assert row.pinned_fields(None) == row.pinned_fields(1) == {"memory"}
    assert row.pinned_fields(2) == frozenset()  # a try after the edit failed: grows again


def test_place_try_asks_pinned_values_as_they_are(tmp_path: Path) -> None:
    from jobtree.options import default_options, resolve

    config, _ = resolve(default_options())
    own = Resources(memory=280 * MIB, time=10.0, cpu=1)
    oom = (1, "out of memory", json.dumps({"memory": 150 * MIB, "cpu": 1, "time": 10.0}))

    class Batch:
        def limits(self) -> Resources:
            return Resources()

    batches = {"main": Batch()}
    grown, _, _ = place_try(config, batches, own, oom, 2)  # type: ignore[arg-type]
    assert grown.memory == 300 * MIB
    pinned, _, asked = place_try(config, batches, own, oom, 2,  # type: ignore[arg-type]
                                 frozenset({"memory"}))
    assert pinned.memory == 280 * MIB and asked is None


def test_set_leaves_targets_that_ran_alone_and_says_so(tmp_path: Path) -> None:
    out, tree = tmp_path / "given.txt", str(tmp_path / "tree")
    failed = run_script("priorities.py", "--mode", "given", "--out", str(out), "--gate",
                        str(tmp_path / "gate"), "--jobTree", tree, "--retryCount", "0",
                        "--logLevel", "ERROR")
    assert failed.returncode == 1, failed.stderr
    again = run_command("run", "--jobTree", tree, "--select", "true", "--set", "priority=2",
                        "--retryCount", "0", "--logLevel", "ERROR")
    assert again.returncode == 1, again.stderr  # the gate is still closed
    assert again.stdout.splitlines() == [
        "jobTreeRun: --set changed the priority of 1 target (1 other matching target had "
        "already run and was left as it was)."]


@pytest.mark.parametrize("arguments, message", [
    (["--set", "memory=8G"], "needs --select to say which targets"),
    (["--select", "true"], "no --set was given"),
    (["--select", "true", "--set", "colour=red"], "give KEY=VALUE with one of the keys"),
    (["--select", "true", "--set", "memory"], "give KEY=VALUE with one of the keys"),
    (["--select", "true", "--set", "memory=lots"], "not valid for memory"),
    (["--select", "true", "--set", "priority=1.5"], "not valid for priority"),
    (["--select", "nope = 1", "--set", "memory=8G"], "is not a valid condition"),
])
def test_set_refuses_what_it_cannot_do_and_changes_nothing(
        tmp_path: Path, arguments: list[str], message: str) -> None:
    out, tree = tmp_path / "given.txt", str(tmp_path / "tree")
    failed = run_script("priorities.py", "--mode", "given", "--out", str(out), "--gate",
                        str(tmp_path / "gate"), "--jobTree", tree, "--retryCount", "0",
                        "--logLevel", "ERROR")
    assert failed.returncode == 1, failed.stderr
    refused = run_command("run", "--jobTree", tree, *arguments)
    assert refused.returncode == 2, refused.stderr
    assert message in refused.stderr and "Traceback" not in refused.stderr, refused.stderr
    assert len(out.read_text().splitlines()) == 1  # no master ran: the leaf did not run again
    index = TreeIndex.open(TreePaths(tree))
    assert [(r.state, r.priority) for r in index.listing(cls="Leaf")] == [("failed", 0)]
    index.close()


# ------------------------------------ targets a batch system holds back
def _held_back(tmp_path: Path, pilots: int) -> tuple[Any, Any, Any]:
    """A cluster shell on a fake scheduler, room for one job."""
    from test_cluster_decisions import Clock, FakeDialect, FakeScheduler

    from jobtree.batch.cluster import ClusterBatchSystem
    from jobtree.batch.settings import ClusterSettings

    fake, clock = FakeScheduler(), Clock()
    settings = ClusterSettings(workdir=str(tmp_path / "batch"), job_name="jt-test",
                               pack_time=0, poll_interval=1, exit_grace=30, max_jobs=1,
                               pilots=pilots, pilot_idle=60)
    batch = ClusterBatchSystem(FakeDialect(), settings, fake,  # type: ignore[arg-type]
                               clock=lambda: clock.wall, monotonic=lambda: clock.mono,
                               background=False)
    for job_id, priority in ((1, 0), (2, 0), (3, 5), (4, 5)):  # 3 and 4 became ready later
        batch.issue(JobSpec(job_id, 1, ["/bin/true"], Resources(cpu=1, memory=100 * MIB),
                            f"t{job_id}", str(tmp_path / f"{job_id}.log"), priority=priority))
    return batch, fake, clock


def test_a_cluster_submits_a_later_more_important_target_first(tmp_path: Path) -> None:
    from jobtree.batch import plan

    batch, fake, clock = _held_back(tmp_path, pilots=0)
    clock.advance(plan.GATHER)
    batch.step()
    assert fake.submitted == ["100"]  # room for one job: the first of priority 5
    [manifest] = (tmp_path / "batch" / "subs").glob("*.json")
    assert [e["key"] for e in json.loads(manifest.read_text())["entries"]] == ["3.1"]


def test_a_pilots_queue_holds_the_more_important_targets_first(tmp_path: Path) -> None:
    from jobtree.batch import plan

    batch, fake, clock = _held_back(tmp_path, pilots=1)
    clock.advance(plan.GATHER)
    batch.step()
    [queue] = (tmp_path / "batch" / "subs").glob("pilots-*.queue")
    assert [json.loads(line)["key"].rpartition("/")[2]
            for line in queue.read_text().splitlines()] == ["3.1", "4.1", "1.1", "2.1"]


def test_a_pilot_slot_claims_a_later_more_important_entry_first(tmp_path: Path) -> None:
    from jobtree.batch.pilot_runner import PilotSlot

    exit_dir, queue = tmp_path / "exit", tmp_path / "q.queue"
    exit_dir.mkdir()

    def line(key: str, priority: int) -> str:
        return json.dumps({"key": key, "argv": ["/bin/sh", "-c", "exit 0"],
                           "log": str(tmp_path / f"{key}.log"), "time_limit": None,
                           "worker": False, "walltime": None, "memory": None,
                           "priority": priority}) + "\n"

    queue.write_text(line("1.1", 0) + line("2.1", 0) + line("3.1", 0))
    slot = PilotSlot({"entries": [], "exit_dir": str(exit_dir), "task_walltime": None,
                      "pilot": {"sub_id": "P", "queue": str(queue), "slots": 1, "idle": 1}},
                     1, time.time())
    ran: list[str] = []

    def claim_next() -> None:
        assert slot.next()
        ran.extend(sorted({p.stem for p in exit_dir.glob("*.exit")} - set(ran)))

    claim_next()
    with open(queue, "a", encoding="utf-8") as handle:  # the master adds two
        handle.write(line("4.1", 3) + line("5.1", -1))
    for _ in range(4):
        claim_next()
    assert ran == ["1.1", "4.1", "2.1", "3.1", "5.1"]
    assert not slot.next()
