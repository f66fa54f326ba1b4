"""The cluster base's decisions, with a fake clock and no sleeping.

The pure functions of :mod:`jobtree.batch.poll` and :mod:`jobtree.batch.plan`
are given records, a listing, the exit folder's file names and ``now``; the
shell (:class:`~jobtree.batch.cluster.ClusterBatchSystem`) is driven turn by
turn (``step()``, no thread) over a fake scheduler and fake clocks."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Callable, Sequence

import pytest

from jobtree.batch import plan, poll
from jobtree.batch.adapter import SchedulerDialect
from jobtree.batch.base import BatchJobId, ExitReason, JobSpec
from jobtree.batch.cluster import ClusterBatchSystem
from jobtree.batch.jobfiles import Entry, Submitted
from jobtree.batch.native import NativeJob, NativeState, Request, Submission
from jobtree.batch.settings import ClusterSettings
from jobtree.errors import SchedulerCommandError
from jobtree.resources import Resources

S = NativeState
SETTINGS = ClusterSettings(launch_grace=300.0, exit_grace=30.0)
T0 = 1_000_000.0  # the wall clock when the submission was made


def task_id(job_id: str, index: int | None) -> str:
    return job_id if index is None else f"{job_id}_{index}"


def entry(key: str, *, task: int | None = None, started: float | None = None,
          request: Request = Request(), worker: bool = False) -> Entry:
    return Entry(BatchJobId(key), key, ["true"], "/dev/null", None, request, worker,
                 started=started, task=task)


def submitted(entries: list[Entry], tasks: int = 1, pack: bool = False,
              sub_id: str = "s1", job_id: str = "100", at: float = T0) -> Submitted:
    sub = Submitted(sub_id, entries, tasks, pack, at, job_id)
    for item in entries:
        item.sub = sub
    return sub


def rows(**states: NativeState) -> dict[str, NativeJob]:
    return {key.lstrip("j"): NativeJob(key.lstrip("j"), state) for key, state in states.items()}


def decide(subs: Sequence[Submitted], listing: dict[str, NativeJob], now: float,
           seen: Sequence[str] = (), cleared: Sequence[str] = ()) -> poll.PollDecision:
    return poll.decide_poll(subs, listing, frozenset(seen), frozenset(cleared), now, SETTINGS,
                            task_id, "fake")


# ------------------------------------------------------------ lost launches
def test_a_launch_the_scheduler_lost_is_cancelled_after_launch_grace() -> None:
    target = entry("1.1")
    sub = submitted([target])
    listing = rows(j100=S.RUNNING)
    first = decide([sub], listing, T0 + 20)
    assert first.tasks["s1"].running_since == {1: T0 + 20}
    assert first.cancel == () and not first.warnings
    sub.running_since[1] = T0 + 20
    # just inside the grace: nothing yet
    assert decide([sub], listing, T0 + 20 + 299.9).cancel == ()
    # past it, with no launch marker: cancelled, and the log says why
    late = decide([sub], listing, T0 + 20 + 300)
    assert late.cancel == ("100",)
    assert late.tasks["s1"].cancelled == {1}
    assert late.warnings and "never started" in late.warnings[0] and "100" in late.warnings[0]
    # cancelled, its task can claim nothing: the target goes back at once, and
    # as no target of the submission ran, it counts as a barren submission
    assert late.lost == ()
    assert [(r.entries, r.barren, r.failed) for r in late.resubmit] == [((target,), True, ())]
    # the same task whose job script did start is left alone for good
    launched = decide([sub], listing, T0 + 20 + 300, seen=["s1-1.up"])
    assert launched.cancel == () and launched.tasks["s1"].launched == {1}


def test_a_lost_launch_goes_back_to_be_submitted_without_a_try_counted() -> None:
    target = entry("1.1")
    sub = submitted([target])
    sub.cancelled.add(1)
    sub.running_since[1] = T0
    decision = decide([sub], rows(j100=S.CANCELLED), T0 + 400)
    assert decision.tasks["s1"].ended == {1}
    assert decision.lost == ()  # no update for the master: no try is counted
    (again,) = decision.resubmit
    assert again.entries == (target,) and again.barren and again.failed == ()
    # a second barren submission of the same target fails it
    target.barren = poll.MAX_BARREN - 1
    (again,) = decide([sub], rows(j100=S.CANCELLED), T0 + 400).resubmit
    assert again.failed == (target,)


def test_a_queued_task_is_never_a_lost_launch() -> None:
    sub = submitted([entry("1.1")])
    decision = decide([sub], rows(j100=S.QUEUED), T0 + 10_000)
    assert decision.cancel == () and decision.tasks["s1"].running_since == {}


# ------------------------------------------------------------ excess tasks
def test_tasks_left_with_nothing_to_claim_are_cancelled() -> None:
    claimed = [entry("1.1", task=1, started=T0), entry("2.1", task=2, started=T0)]
    sub = submitted(claimed, tasks=4, pack=True)
    listing = rows(j100_1=S.RUNNING, j100_2=S.RUNNING, j100_3=S.QUEUED, j100_4=S.QUEUED)
    decision = decide([sub], listing, T0 + 5)
    assert decision.cancel == ("100_3", "100_4")
    assert decision.tasks["s1"].cancelled == {3, 4}
    assert poll.decide_idle([sub]) == {"s1": frozenset({3, 4})}
    # while one target is unclaimed, every task may still claim it
    waiting = submitted([entry("1.1", task=1, started=T0), entry("2.1")], tasks=4, pack=True)
    assert decide([waiting], listing, T0 + 5).cancel == ()
    assert poll.decide_idle([waiting]) == {}


def test_a_task_held_in_an_error_state_is_cancelled_once() -> None:
    sub = submitted([entry("1.1")])
    decision = decide([sub], rows(j100=S.FAILED), T0 + 1)
    assert "100" in decision.cancel and decision.stuck == {"100"}
    assert decide([sub], rows(j100=S.FAILED), T0 + 2, cleared=["100"]).stuck == frozenset()


# ---------------------------------------------------------- late exit files
def test_a_task_gone_without_an_exit_file_is_lost_only_after_exit_grace() -> None:
    target = entry("1.1", task=1, started=T0 + 1)
    sub = submitted([target])
    # too young to be missing from the listing: still alive
    assert decide([sub], {}, T0 + poll.ABSENT_GRACE - 1).tasks["s1"].ended == frozenset()
    gone = decide([sub], {}, T0 + 100)
    assert gone.tasks["s1"].ended == {1}
    assert gone.ended_seen == ((target, T0 + 100),) and gone.lost == ()
    sub.ended_tasks.add(1)
    target.ended_seen = T0 + 100
    assert decide([sub], {}, T0 + 129.9).lost == ()
    assert decide([sub], {}, T0 + 130).lost == (target,)
    # an exit file read in time makes the target reported: it is never lost
    target.reported = True
    assert decide([sub], {}, T0 + 130).lost == ()


# ---------------------------------------------------------------- adoption
def test_adoption_after_a_restart() -> None:
    running = submitted([entry("1.1", task=1, started=T0), entry("2.1")], sub_id="a",
                        job_id="100")
    exited = submitted([entry("3.1", task=1, started=T0)], sub_id="b", job_id="200")
    vanished = submitted([entry("4.1", task=1, started=T0)], sub_id="c", job_id="300")
    unwanted = submitted([entry("5.1")], sub_id="d", job_id="400")
    listing = rows(j100=S.RUNNING, j300=S.COMPLETED, j400=S.QUEUED, j999=S.RUNNING)
    listing["555"] = NativeJob("555", S.COMPLETED)
    wanted = {"1.1", "3.1", "4.1"}
    adoption = poll.decide_adoption([running, exited, vanished, unwanted], listing,
                                    frozenset({"3.1.exit"}), wanted, T0 + 60, task_id)
    assert [e.key for e in adoption.adopted] == ["1.1", "3.1"]
    assert [e.key for e in adoption.dropped] == ["2.1", "4.1", "5.1"]
    assert adoption.ended == {"a": frozenset(), "b": {1}, "c": {1}, "d": frozenset()}
    # a queued job no target needs, and a job of the tree no record knows
    assert adoption.orphans == ("400", "999")
    # without a listing only exit files (and submissions too young to be listed) count
    blind = poll.decide_adoption([running, exited], None, frozenset({"3.1.exit"}), wanted,
                                 T0 + 60, task_id)
    assert [e.key for e in blind.adopted] == ["3.1"] and blind.orphans == ()
    young = poll.decide_adoption([running], None, frozenset(), wanted, T0 + 1, task_id)
    assert [e.key for e in young.adopted] == ["1.1"]


# ---------------------------------------------------------------- planning
def test_the_submit_rate_allows_a_burst_then_rate_a_second() -> None:
    bucket = plan.Tokens.full(2.0, 0.0)
    granted = []
    for now in (0.0, 0.0, 0.0, 0.25, 0.5, 0.5, 1.0):
        bucket, ok = plan.take_token(bucket, 2.0, now)
        granted.append(ok)
    assert granted == [True, True, False, False, True, False, True]
    slow = plan.Tokens.full(0.5, 0.0)
    slow, first = plan.take_token(slow, 0.5, 0.0)
    slow, second = plan.take_token(slow, 0.5, 1.9)
    slow, third = plan.take_token(slow, 0.5, 2.1)
    assert (first, second, third) == (True, False, True)


def test_groups_and_submissions() -> None:
    small, big = Request(cores=1), Request(cores=8)
    pending = [entry(f"{i}.1", request=big if i % 3 == 0 else small) for i in range(1, 10)]
    groups = plan.groups(pending, budget=4)
    assert [(g.request, len(g.entries), g.slots) for g in groups] == [(small, 6, 3),
                                                                        (big, 3, 1)]
    packing = ClusterSettings(pack_time=60.0)
    one = plan.next_submission(groups[0].entries, 3, packing, min_array=2)
    assert (len(one.entries), one.tasks, one.pack) == (6, 3, True)
    plain = ClusterSettings(pack_time=0.0)
    first = plan.next_submission(groups[0].entries, 3, plain, min_array=2)
    assert (len(first.entries), first.tasks, first.pack) == (3, 3, False)
    assert plan.next_submission(groups[0].entries, 3, ClusterSettings(pack_time=0, arrays=False),
                                min_array=2).tasks == 1
    # an array smaller than the scheduler allows becomes a plain job of one target
    assert len(plan.next_submission(groups[0].entries, 2, plain, min_array=3).entries) == 1
    assert plan.task_walltime(Request(walltime=100), True, packing) == 100 + 60 + 60
    assert plan.task_walltime(Request(walltime=100), False, packing) == 100


# ------------------------------------------------- the shell, turn by turn
class FakeDialect(SchedulerDialect):
    """Ids 100, 101, ...; the listing is ``ID STATE`` lines."""

    name = "fake"
    directive_prefix = "#FAKE"
    index_variable = "FAKE_TASK"

    def directives(self, job: Submission) -> list[str]:
        return []

    def submit_command(self, job: Submission) -> tuple[list[str], str | None]:
        return ["fakesub", job.script], None

    def parse_submit(self, stdout: str) -> str:
        return stdout.strip()

    def task_id(self, job_id: str, index: int | None) -> str:
        return task_id(job_id, index)

    def status_command(self, name: str) -> list[str]:
        return ["fakestat"]

    def parse_status(self, stdout: str) -> list[NativeJob]:
        return [NativeJob(i, NativeState[s]) for i, s in
                (line.split() for line in stdout.splitlines() if line.strip())]

    def cancel_command(self, ids: Sequence[str]) -> list[str]:
        return ["fakedel", *ids]

    def cancel_by_name_command(self, name: str) -> list[str] | None:
        return None


class FakeScheduler:
    """Stands in for the command runner: records submissions and cancels."""

    def __init__(self) -> None:
        self.listing: dict[str, str] = {}
        self.submitted: list[str] = []
        self.cancelled: list[str] = []
        self.down = False
        self.calls = 0

    def run(self, argv: Sequence[str], stdin: str | None = None,
            ok: Callable[[int, str], bool] | None = None, attempts: int | None = None) -> str:
        self.calls += 1
        if self.down:
            raise SchedulerCommandError(list(argv), 1, "connection refused", transient=True)
        if argv[0] == "fakesub":
            self.submitted.append(str(100 + len(self.submitted)))
            return self.submitted[-1]
        if argv[0] == "fakedel":
            self.cancelled.extend(argv[1:])
            return ""
        return "".join(f"{i} {s}\n" for i, s in self.listing.items())

    def summary(self) -> str:
        return f"{self.calls} scheduler commands in all"


class Clock:
    def __init__(self) -> None:
        self.wall, self.mono = T0, 0.0

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds


@pytest.fixture
def shell(tmp_path: Path) -> tuple[ClusterBatchSystem, FakeScheduler, Clock]:
    fake, clock = FakeScheduler(), Clock()
    settings = ClusterSettings(workdir=str(tmp_path / "batch"), job_name="jt-test",
                               pack_time=0, poll_interval=1, exit_grace=30, launch_grace=300)
    batch = ClusterBatchSystem(FakeDialect(), settings, fake,  # type: ignore[arg-type]
                               clock=lambda: clock.wall, monotonic=lambda: clock.mono,
                               background=False)
    return batch, fake, clock


def _issue(batch: ClusterBatchSystem, tmp_path: Path) -> BatchJobId:
    return batch.issue(JobSpec(1, 1, ["/bin/true"], Resources(cpu=1), "t1",
                               str(tmp_path / "1.log")))


def test_the_shell_resubmits_a_lost_launch_without_sleeping(
        shell: tuple[ClusterBatchSystem, FakeScheduler, Clock], tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    batch, fake, clock = shell
    batch_id = _issue(batch, tmp_path)
    batch.step()
    assert fake.submitted == []  # issued targets are gathered for a moment first
    clock.advance(plan.GATHER)
    fake.listing = {"100": "RUNNING"}
    batch.step()  # submits
    assert fake.submitted == ["100"]
    clock.advance(10)
    batch.step()  # the next poll lists it as running
    clock.advance(299.9)
    batch.step()
    assert fake.cancelled == []
    clock.advance(10)  # the next poll: over launch_grace, and no launch marker
    caplog.set_level(logging.WARNING)
    batch.step()
    assert fake.cancelled == ["100"]
    assert "never started" in caplog.text
    fake.listing = {"100": "CANCELLED"}
    batch.step()  # its target was put back to be submitted: it goes now
    assert fake.submitted == ["100", "101"]
    assert batch.next_update(0) is None and batch.issued() == {batch_id}


def test_the_shell_waits_exit_grace_for_an_exit_file(
        shell: tuple[ClusterBatchSystem, FakeScheduler, Clock], tmp_path: Path) -> None:
    batch, fake, clock = shell
    late, lost = _issue(batch, tmp_path), batch.issue(JobSpec(
        2, 1, ["/bin/true"], Resources(cpu=2), "t2", str(tmp_path / "2.log")))
    clock.advance(plan.GATHER)
    batch.step()
    assert fake.submitted == ["100", "101"]  # two requests: two jobs
    exit_dir = tmp_path / "batch" / "exit"
    for key, job in (("1.1", "100"), ("2.1", "101")):
        (exit_dir / f"{key}.run").write_text(json.dumps({"task": 1, "started": clock.wall}))
    fake.listing = {"100": "RUNNING", "101": "RUNNING"}
    clock.advance(10)
    batch.step()
    assert set(batch.running()) == {late, lost}
    fake.listing = {}  # both gone from the listing, neither left an exit file
    clock.advance(10)
    batch.step()
    clock.advance(29)
    batch.step()
    assert batch.next_update(0) is None
    # an exit file that comes late, but within exit_grace: finished normally
    (exit_dir / "1.1.exit").write_text(json.dumps({"code": 0, "wall": 3.0}))
    clock.advance(0.5)
    batch.step()
    update = batch.next_update(0)
    assert update is not None and (update.batch_id, update.reason) == (late, ExitReason.FINISHED)
    assert batch.next_update(0) is None
    clock.advance(0.5)
    batch.step()  # 30 s after the tasks were seen gone: the other one is lost
    update = batch.next_update(0)
    assert update is not None and (update.batch_id, update.reason) == (lost, ExitReason.LOST)
    assert update.native_id == "101" and "without a word" in (update.message or "")
    assert batch.next_update(0) is None


def test_the_shell_waits_out_a_scheduler_that_is_down(
        shell: tuple[ClusterBatchSystem, FakeScheduler, Clock], tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    batch, fake, clock = shell
    caplog.set_level(logging.WARNING)
    fake.down = True
    batch_id = _issue(batch, tmp_path)
    clock.advance(plan.GATHER)
    batch.step()
    tries = fake.calls
    assert tries == 1 and "cannot reach fake" in caplog.text
    clock.advance(14)
    batch.step()
    assert fake.calls == tries  # the next submission waits 15 s
    clock.advance(1)
    batch.step()
    assert fake.calls == tries + 1 and caplog.text.count("cannot reach fake") == 1
    fake.down = False
    clock.advance(15)
    batch.step()
    assert fake.submitted == ["100"] and "answers again after 30s" in caplog.text
    assert batch.next_update(0) is None and batch.issued() == {batch_id}
