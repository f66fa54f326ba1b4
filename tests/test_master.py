"""The master against a fake batch system and a fake clock (no sleeping):
idempotent ingestion, stale attempts, rescue of lost jobs, --maxJobDuration,
recovery of left-behind results."""

from __future__ import annotations

import collections
import os
from pathlib import Path
from typing import Sequence

import pytest

from jobtree import Target, graph, serialize, tree
from jobtree.batch import BatchJobId, BatchSystem, ExitReason, JobSpec, Update
from jobtree.jobstore import JobState, JobStore, NewJob
from jobtree.master import Master
from jobtree.options import default_options, resolve
from jobtree.paths import TreePaths
from jobtree.resources import Resources
from jobtree.target import class_name
from jobtree.worker import Worker


class Leaf(Target):
    def __init__(self, n: int) -> None:
        Target.__init__(self)
        self.n = n

    def run(self) -> None:
        self.logToMaster(f"leaf {self.n}")


class Root(Target):
    def __init__(self, width: int) -> None:
        Target.__init__(self)
        self.width = width

    def run(self) -> None:
        for n in range(self.width):
            self.addChildTarget(Leaf(n))
        self.setFollowOnTarget(Leaf(-1))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeBatch(BatchSystem):
    """Runs each issued worker in this process when asked for an update."""

    name = "fake"

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.queue: collections.OrderedDict[BatchJobId, JobSpec] = collections.OrderedDict()
        self.started: dict[BatchJobId, float] = {}
        self.forgotten: set[BatchJobId] = set()
        self.hang: set[int] = set()  # job ids that never finish until killed
        self.killed: list[BatchJobId] = []
        self.count = 0
        self.learnt: dict[BatchJobId, str] = {}  # scheduler ids not yet collected

    def limits(self) -> Resources:
        return Resources(cpu=4, memory=8 * 1024 ** 3)

    def capacity(self) -> int:
        return 3

    def issue(self, spec: JobSpec) -> BatchJobId:
        self.count += 1
        batch_id = BatchJobId(f"fake{self.count}")
        self.queue[batch_id] = spec
        self.started[batch_id] = self.clock()
        self.learnt[batch_id] = f"sched{self.count}"
        return batch_id

    def kill(self, ids: Sequence[BatchJobId]) -> None:
        self.killed.extend(ids)

    def issued(self) -> set[BatchJobId]:
        return set(self.queue) - self.forgotten

    def running(self) -> dict[BatchJobId, float]:
        return {i: self.clock() - self.started[i] for i in self.queue}

    def scheduler_ids(self) -> dict[BatchJobId, str]:
        learnt, self.learnt = self.learnt, {}
        return learnt

    def next_update(self, timeout: float) -> Update | None:
        self.clock.now += 1
        for batch_id, spec in list(self.queue.items()):
            if batch_id in self.killed:
                del self.queue[batch_id]
                return Update(batch_id, -15, ExitReason.KILLED)
            if batch_id in self.forgotten or spec.job_id in self.hang:
                continue
            del self.queue[batch_id]
            tree_dir, job, attempt = spec.argv[3:6]
            code = Worker(tree_dir, int(job), int(attempt)).run()
            return Update(batch_id, code, ExitReason.FINISHED, 0.1)
        return None


def _make_tree(tmp_path: Path, root: Target, **options: object) -> tuple[TreePaths, object]:
    namespace = default_options()
    namespace.jobTree = str(tmp_path / "jt")
    for key, value in options.items():
        setattr(namespace, key, value)
    config, _ = resolve(namespace)
    paths = TreePaths(config.jobTree)
    res = root.getResources()
    tree.create(paths, NewJob(class_name(root), root._jt_describe(), res.cpu, res.memory,
                              res.time, res.disk, serialize.dump_target(root)),
                config, {"script": None, "root_class": class_name(root)})
    return paths, config


def _master(paths: TreePaths, config: object, clock: Clock) -> tuple[Master, FakeBatch]:
    batch = FakeBatch(clock)
    return Master(JobStore.open(paths), config, {"main": batch}, clock=clock), batch


def test_runs_a_tree_and_ingestion_is_idempotent(tmp_path: Path) -> None:
    paths, config = _make_tree(tmp_path, Root(5))
    clock = Clock()
    master, _ = _master(paths, config, clock)
    assert master.run() == 0
    counts = master.store.counts()
    assert counts[JobState.DONE] == 7 and sum(counts.values()) == 7
    rows = master.store._db.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
    # ingesting the root's result again (or a stale attempt) changes nothing
    with master.store.transaction():
        assert master._ingest(1, 1, None) is False
        assert master.store.ingest_success(1, 1, [], "x", 0, 0) is None
        assert master.store.record_failure(1, 1, "failed", 1, None, None, 0) is None
    assert master.store.counts() == counts
    assert master.store._db.execute("SELECT COUNT(*) FROM messages").fetchone()[0] == rows == 6
    assert graph.check(master.store) == []


def test_left_behind_result_is_ingested_once_at_recovery(tmp_path: Path) -> None:
    paths, config = _make_tree(tmp_path, Root(2))
    clock = Clock()
    master, batch = _master(paths, config, clock)
    master.recover()
    master._issue_ready()  # the root is issued ...
    spec = next(iter(batch.queue.values()))
    assert Worker(paths.root, spec.job_id, spec.attempt).run() == 0  # ... and finishes
    master.store.close()  # the master dies before it hears of it
    again, _ = _master(paths, config, clock)
    again.recover()
    counts = again.store.counts()
    assert counts[JobState.RAN] == 1 and counts[JobState.READY] == 2
    assert again.run() == 0
    assert again.store.counts()[JobState.DONE] == 4


def test_stale_attempt_result_is_ignored(tmp_path: Path) -> None:
    paths, config = _make_tree(tmp_path, Root(2))
    clock = Clock()
    master, batch = _master(paths, config, clock)
    master.recover()
    master._issue_ready()
    spec = next(iter(batch.queue.values()))
    assert Worker(paths.root, spec.job_id, spec.attempt).run() == 0
    os.rename(paths.result(1, 1), paths.result(1, 7))  # a result of an attempt never issued
    master.store.close()
    again, _ = _master(paths, config, clock)
    again.recover()  # attempt 1 was interrupted: the root is ready again
    assert again.store.counts()[JobState.READY] == 1
    assert again.run() == 0
    assert again.store.counts()[JobState.DONE] == 4
    assert not os.path.exists(paths.result(1, 7))  # removed (by the janitor, off-thread)


def test_lost_job_is_rescued_and_retried(tmp_path: Path) -> None:
    paths, config = _make_tree(tmp_path, Root(1), rescueJobsFrequency=10)
    clock = Clock()
    master, batch = _master(paths, config, clock)
    batch.forgotten.add(BatchJobId("fake1"))  # the scheduler loses the root's first attempt
    assert master.run() == 0
    failures = master.store.failures(permanent_only=False)
    assert [(f["job"], f["attempt"], f["reason"]) for f in failures] == [(1, 1, "lost")]
    assert master.store.counts()[JobState.DONE] == 3


def test_max_job_duration_kills_with_timeout(tmp_path: Path) -> None:
    paths, config = _make_tree(tmp_path, Root(1), maxJobDuration=60, retryCount=0)
    clock = Clock()
    master, batch = _master(paths, config, clock)
    batch.hang.add(1)
    assert master.run() == 1
    (failure,) = master.store.failures()
    assert failure["reason"] == "timeout" and failure["job"] == 1
    assert "over --maxJobDuration (0:01:00)" in failure["message"], failure
    assert batch.killed == [BatchJobId("fake1")]
    assert clock.now - 1000 < 100  # noticed within a few housekeeping rounds


def test_too_big_target_fails_without_running(tmp_path: Path) -> None:
    paths, config = _make_tree(tmp_path, Root(1), defaultMemory="16G")
    clock = Clock()
    master, batch = _master(paths, config, clock)
    assert master.run() == 1
    (failure,) = master.store.failures()
    assert failure["reason"] == "too big" and "--maxMemory" in failure["message"]
    assert batch.count == 0


@pytest.mark.parametrize("width", [0, 1, 30])
def test_counts_and_graph_stay_consistent(tmp_path: Path, width: int) -> None:
    paths, config = _make_tree(tmp_path, Root(width))
    master, _ = _master(paths, config, Clock())
    assert master.run() == 0
    assert master.store.counts()[JobState.DONE] == width + 2
    assert graph.check(master.store) == []
    dot = graph.to_dot(graph.build(master.store))
    assert dot.count("->") == width + 1 and "style=dashed" in dot


def test_restarted_master_adopts_jobs_the_batch_system_still_runs(tmp_path: Path) -> None:
    paths, config = _make_tree(tmp_path, Root(2))
    clock = Clock()
    master, batch = _master(paths, config, clock)
    master.recover()
    master._issue_ready()
    assert master.store.job(1).batch_id is None  # the scheduler's id comes later
    master._watch_running(clock())
    assert master.store.job(1).batch_id == "sched1"
    master.store.close()  # the master dies; the scheduler keeps running the job

    class Adopting(FakeBatch):
        def adopt(self, jobs: Sequence[tuple[int, int]]) -> dict[tuple[int, int], BatchJobId]:
            self.queue.update(batch.queue)
            self.started.update(batch.started)
            self.count = batch.count
            by_job = {(s.job_id, s.attempt): i for i, s in self.queue.items()}
            return {job: by_job[job] for job in jobs}

    adopting = Adopting(clock)
    again = Master(JobStore.open(paths), config, {"main": adopting}, clock=clock)
    assert again.run() == 0
    assert again.store.job(1).attempt == 1  # the same attempt finished; nothing re-issued
    assert again.store.counts()[JobState.DONE] == 4


def test_torn_result_left_by_a_crash_costs_no_try(tmp_path: Path) -> None:
    paths, config = _make_tree(tmp_path, Root(1), retryCount=0)
    clock = Clock()
    master, batch = _master(paths, config, clock)
    master.recover()
    master._issue_ready()
    spec = next(iter(batch.queue.values()))
    assert Worker(paths.root, spec.job_id, spec.attempt).run() == 0
    data = Path(paths.result(1, 1)).read_bytes()
    Path(paths.result(1, 1)).write_bytes(data[: len(data) // 2])  # the machine crashed
    master.store.close()
    again, _ = _master(paths, config, clock)
    assert again.run() == 0  # no try was used up by the torn file
    assert again.store.failures(permanent_only=False) == []
    assert again.store.job(1).attempt == 2


class LateResults(FakeBatch):
    """A batch system on other machines whose results show up late (NFS)."""

    def __init__(self, clock: Clock, delay: int) -> None:
        super().__init__(clock)
        self.delay = delay
        self.hidden: list[tuple[str, int]] = []
        self.tree_results = ""

    def next_update(self, timeout: float) -> Update | None:
        for path, due in list(self.hidden):
            if self.clock.now >= due:
                os.rename(path + ".late", path)
                self.hidden.remove((path, due))
        update = super().next_update(timeout)
        if update is not None and update.reason is ExitReason.FINISHED:
            fresh = [name for name in os.listdir(self.tree_results)
                     if not name.startswith(".") and not name.endswith(".late")]
            for name in fresh:
                path = os.path.join(self.tree_results, name)
                os.rename(path, path + ".late")
                self.hidden.append((path, int(self.clock.now) + self.delay))
        return update


@pytest.mark.parametrize("delay,failed", [(5, 0), (10 ** 6, 1)])
def test_results_that_show_up_late_are_waited_for(tmp_path: Path, delay: int,
                                                   failed: int) -> None:
    paths, config = _make_tree(tmp_path, Root(2), retryCount=0)
    clock = Clock()
    batch = LateResults(clock, delay)
    batch.tree_results = paths.results
    master = Master(JobStore.open(paths), config, {"main": batch}, clock=clock)
    assert master.run() == failed
    if failed:
        (failure,) = master.store.failures()
        assert failure["reason"] == "lost"
        assert failure["message"] == "the worker exited 0 but left no result"
    else:
        assert master.store.counts()[JobState.DONE] == 4
        assert master.store.failures(permanent_only=False) == []


def test_chains_settle_the_same_without_update_returning(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite before 3.35 has no UPDATE ... RETURNING: counting down a parent's
    pending chains then takes an UPDATE and a SELECT."""
    from jobtree import jobstore

    monkeypatch.setattr(jobstore.store, "_RETURNING", False)
    paths, config = _make_tree(tmp_path, Root(4))
    master, _ = _master(paths, config, Clock())
    assert master.run() == 0
    assert master.store.counts()[JobState.DONE] == 6
    assert graph.check(master.store) == []


def test_why_an_attempt_failed() -> None:
    from jobtree.results import failure_of

    lost = Update(BatchJobId("b1"), 0, ExitReason.FINISHED)
    assert failure_of(lost, None, False) == (ExitReason.LOST,
                                             "the worker exited 0 but left no result")
    killed = Update(BatchJobId("b2"), -9, ExitReason.KILLED)
    reason, message = failure_of(killed, None, True, 60.0)
    assert reason is ExitReason.TIMEOUT
    assert message is not None and "over --maxJobDuration (0:01:00)" in message
    assert failure_of(killed, {"ok": False, "error": "boom"}, False) == (
        ExitReason.KILLED, "boom")
    assert failure_of(None, {"ok": False, "error": "boom"}, False) == (ExitReason.FAILED, "boom")
    assert failure_of(None, None, False) == (ExitReason.LOST, None)


class Preempting(FakeBatch):
    """Preempts the root's first ``times`` attempts (a node failure every other time)."""

    def __init__(self, clock: Clock, times: int) -> None:
        super().__init__(clock)
        self.times = times

    def next_update(self, timeout: float) -> Update | None:
        for batch_id, spec in list(self.queue.items()):
            if spec.job_id == 1 and spec.attempt <= self.times:
                del self.queue[batch_id]
                reason = ExitReason.NODE_FAILURE if spec.attempt % 2 else ExitReason.PREEMPTED
                return Update(batch_id, None, reason, native_id=f"sched-{spec.attempt}")
        return super().next_update(timeout)


def test_preemption_and_node_failure_count_no_try(tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    from jobtree.results import UNCOUNTED_IN_ROW

    paths, config = _make_tree(tmp_path, Root(1), retryCount=0)
    clock = Clock()
    batch = Preempting(clock, UNCOUNTED_IN_ROW)
    master = Master(JobStore.open(paths), config, {"main": batch}, clock=clock)
    with caplog.at_level("WARNING", logger="jobtree.master"):
        assert master.run() == 0  # no try left, yet every preemption was retried
    failures = master.store.failures(permanent_only=False)
    assert [f["reason"] for f in failures] == [
        "node failure" if a % 2 else "preempted" for a in range(1, UNCOUNTED_IN_ROW + 1)]
    warned = [r.getMessage() for r in caplog.records if "no fault of its own" in r.getMessage()]
    assert len(warned) == UNCOUNTED_IN_ROW
    assert "scheduler job sched-2" in warned[1] and "without counting a try" in warned[1]


def test_endless_preemption_counts_at_last(tmp_path: Path) -> None:
    from jobtree.results import UNCOUNTED_IN_ROW

    paths, config = _make_tree(tmp_path, Root(1), retryCount=1)
    clock = Clock()
    batch = Preempting(clock, 10 ** 6)  # preempted for ever
    master = Master(JobStore.open(paths), config, {"main": batch}, clock=clock)
    assert master.run() == 1
    failures = master.store.failures(permanent_only=False)
    # the free ones, then the two tries retryCount=1 gives
    assert len(failures) == UNCOUNTED_IN_ROW + 2
    assert [f["attempt"] for f in master.store.failures()] == [UNCOUNTED_IN_ROW + 2]
