"""What one look at the scheduler means for each submission: pure decisions.

:class:`~jobtree.batch.cluster.ClusterBatchSystem` lists the tree's jobs once
per poll, then looks at the exit folder (which start markers ``KEY.run``,
exit files ``KEY.exit`` and launch markers ``SUB-TASK.up`` are there). The
functions here turn those, the submission records, the settings and ``now``
into decisions: which tasks ended, which to cancel (tasks left with nothing to
claim, launches the scheduler lost, tasks held in an error state), which
targets ended without an exit file (lost, once ``exit_grace`` has passed),
which go back to be submitted again, and, after a restart, which of a previous
master's targets are adopted. They run no command, read no file and never ask
the time; they do not change the records they are given. The shell carries
the decisions out (:meth:`ClusterBatchSystem._poll`).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Collection, Iterable, Mapping

from ..resources import format_duration
from .jobfiles import Entry, Submitted
from .native import NativeJob, NativeState
from .settings import ClusterSettings

#: a task missing from the listing this soon after its submission may not be listed yet
ABSENT_GRACE = 10.0
#: submissions whose tasks all ended without running a single target, before
#: their targets fail (the job script cannot start: a bad prologue, no Python)
MAX_BARREN = 2

#: the adapter's :meth:`~jobtree.batch.adapter.SchedulerDialect.task_id`
TaskId = Callable[[str, int | None], str]


@dataclasses.dataclass(frozen=True)
class TaskChanges:
    """What a poll learnt of one submission's tasks, to add to its record.

    Attributes:
        ended: tasks now known to have ended.
        cancelled: tasks to cancel (none of them is left with a target to run).
        launched: tasks whose job script was seen to start (their ``.up`` marker).
        running_since: tasks listed as running for the first time, and when.
    """

    ended: frozenset[int] = frozenset()
    cancelled: frozenset[int] = frozenset()
    launched: frozenset[int] = frozenset()
    running_since: Mapping[int, float] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Resubmit:
    """Targets of a submission whose tasks all ended without claiming them.

    Attributes:
        sub_id: the submission.
        entries: the targets, to be submitted again without a try counted.
        barren: whether this counts against them: no task of the submission
            ran any target (its job script may be unable to start one).
        failed: those of ``entries`` that reach :data:`MAX_BARREN` barren
            submissions with this one: they fail instead.
    """

    sub_id: str
    entries: tuple[Entry, ...]
    barren: bool
    failed: tuple[Entry, ...]


@dataclasses.dataclass(frozen=True)
class PollDecision:
    """What to do after one listing of the scheduler's jobs.

    Attributes:
        tasks: changes to each submission's tasks, by submission id.
        cancel: scheduler ids to cancel, in order.
        stuck: listed as failed (held in an error state): cancelled once, remembered.
        ended_seen: targets first seen with their task ended and no exit file, and when.
        lost: targets whose task ended over ``exit_grace`` ago without an
            exit file: settle them from the scheduler's accounting.
        resubmit: targets to submit again.
        warnings: anomalies to log.
    """

    tasks: Mapping[str, TaskChanges]
    cancel: tuple[str, ...] = ()
    stuck: frozenset[str] = frozenset()
    ended_seen: tuple[tuple[Entry, float], ...] = ()
    lost: tuple[Entry, ...] = ()
    resubmit: tuple[Resubmit, ...] = ()
    warnings: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Adoption:
    """What a new master takes over of the submissions a previous one left.

    Attributes:
        adopted: targets the master still wants whose task is alive or left
            an exit file: they stay issued.
        dropped: the other targets (they are issued again, or not wanted).
        ended: the tasks of each submission that ended, by submission id.
        orphans: scheduler ids of tasks no target needs any more: cancel them.
    """

    adopted: tuple[Entry, ...]
    dropped: tuple[Entry, ...]
    ended: Mapping[str, frozenset[int]]
    orphans: tuple[str, ...]


# ------------------------------------------------------------------ ids
def task_ids(sub: Submitted, task_id: TaskId, only: Iterable[int] | None = None) -> list[str]:
    """The scheduler ids of the tasks of ``sub`` (of those in ``only``, if given)."""
    if not sub.job_id:
        return []
    if sub.tasks == 1:
        return [task_id(sub.job_id, None)] if only is None or 1 in set(only) else []
    indices = range(1, sub.tasks + 1) if only is None else sorted(set(only))
    return [task_id(sub.job_id, i) for i in indices]


def native_id(entry: Entry, task_id: TaskId) -> str | None:
    """The scheduler id of the task that ran (or runs) ``entry``, if known."""
    sub = entry.sub
    if sub is None or not sub.job_id:
        return None
    index = entry.task if sub.tasks > 1 else None
    if index is None and sub.tasks > 1 and not sub.pack:
        index = sub.entries.index(entry) + 1
    return task_id(sub.job_id, index)


def _row(sub: Submitted, index: int, rows: Mapping[str, NativeJob],
         task_id: TaskId) -> NativeJob | None:
    return rows.get(task_id(sub.job_id or "", index if sub.tasks > 1 else None))


# ---------------------------------------------------------------- tasks
def alive_tasks(sub: Submitted, rows: Mapping[str, NativeJob], now: float,
                task_id: TaskId) -> frozenset[int]:
    """The tasks of ``sub`` the listing shows alive (or that are too young
    to be listed yet); every other task has ended."""
    young = now - sub.submitted < ABSENT_GRACE
    alive = set()
    for index in range(1, sub.tasks + 1):
        row = _row(sub, index, rows, task_id)
        if (row is not None and row.state.alive) or (row is None and young):
            alive.add(index)
    return frozenset(alive)


def idle_tasks(sub: Submitted, ended: Collection[int],
               cancelled: Collection[int]) -> frozenset[int]:
    """Tasks of a packing submission left with nothing to claim: every target
    is claimed (or killed before it started) by another task, and the task
    has neither ended nor been cancelled. Empty while a target is unclaimed."""
    if not sub.pack or sub.tasks == 1:
        return frozenset()
    claimers: set[int] = set()
    for entry in sub.entries:
        if entry.reported and entry.task is None:
            continue  # killed before it started
        if entry.task is None:
            return frozenset()  # a target is still to be claimed
        claimers.add(entry.task)
    return frozenset(range(1, sub.tasks + 1)) - claimers - set(ended) - set(cancelled)


def lost_launches(sub: Submitted, rows: Mapping[str, NativeJob], seen: Collection[str],
                  ended: Collection[int], cancelled: Collection[int], now: float,
                  settings: ClusterSettings,
                  task_id: TaskId) -> tuple[frozenset[int], frozenset[int], dict[int, float]]:
    """Tasks listed as running for longer than ``launch_grace`` whose job
    script never started (its first command writes ``SUB-TASK.up``): launches
    the scheduler lost, as when a node's daemon dies at that moment.

    Returns:
        the lost tasks (to cancel; their targets go to a new job without a try
        counted, as for any task that ended without claiming a target), the
        tasks seen launched, and the tasks listed as running for the first time.
    """
    lost: set[int] = set()
    launched: set[int] = set()
    first_seen: dict[int, float] = {}
    for index in range(1, sub.tasks + 1):
        if index in ended or index in cancelled or index in sub.launched:
            continue
        row = _row(sub, index, rows, task_id)
        if row is None or row.state is not NativeState.RUNNING:
            continue
        since = sub.running_since.get(index)
        if since is None:
            since = first_seen[index] = now
        if now - since < settings.launch_grace:
            continue
        if f"{sub.sub_id}-{index}.up" in seen:
            launched.add(index)
        else:
            lost.add(index)
    return frozenset(lost), frozenset(launched), first_seen


def _lost_launch_warning(scheduler: str, ids: list[str], grace: float) -> str:
    many = len(ids) > 1
    return (f"{scheduler} {'jobs' if many else 'job'} {', '.join(ids)} listed as running for "
            f"over {format_duration(grace)}, but {'their' if many else 'its'} job script never "
            f"started: a launch the scheduler lost (a node daemon that died?). Cancelling "
            f"{'them' if many else 'it'}; {'their' if many else 'its'} targets go to a new job "
            f"(launch_grace in the cluster config sets the wait).")


def ended_without_exit(sub: Submitted, seen: Collection[str], ended: Collection[int],
                       cancelled: Collection[int], now: float, settings: ClusterSettings
                       ) -> tuple[list[tuple[Entry, float]], list[Entry], list[Entry]]:
    """Targets whose task ended without leaving an exit file.

    Returns:
        targets seen so for the first time (and ``now``); those seen so for
        ``exit_grace`` or longer (lost); and the targets no task claimed, once
        every task of the submission has ended (to submit again).
    """
    first: list[tuple[Entry, float]] = []
    lost: list[Entry] = []
    unclaimed: list[Entry] = []
    all_ended = len(set(ended) | set(cancelled)) >= sub.tasks
    for index, entry in enumerate(sub.entries, 1):
        if entry.reported:
            continue
        task = entry.task if sub.pack else index
        if entry.started is None and f"{entry.key}.run" not in seen:
            if all_ended:
                unclaimed.append(entry)
            continue
        if task is not None and task in ended:
            since = entry.ended_seen
            if since is None:
                since = now
                first.append((entry, now))
            if now - since >= settings.exit_grace:
                lost.append(entry)
    return first, lost, unclaimed


def resubmission(sub: Submitted, entries: list[Entry]) -> Resubmit:
    """How the unclaimed ``entries`` of ``sub`` go back to be submitted."""
    ran_any = any(e.started is not None or e.reported for e in sub.entries if e not in entries)
    barren = not ran_any
    failed = tuple(e for e in entries if e.barren + barren >= MAX_BARREN)
    return Resubmit(sub.sub_id, tuple(entries), barren, failed)


# ----------------------------------------------------------- decisions
def decide_poll(subs: Iterable[Submitted], rows: Mapping[str, NativeJob],
                seen: Collection[str], cleared: Collection[str], now: float,
                settings: ClusterSettings, task_id: TaskId, scheduler: str) -> PollDecision:
    """What one listing of the scheduler's jobs means.

    Args:
        subs: the submissions (those not yet submitted are skipped).
        rows: the listing, by scheduler id.
        seen: the names of the files in the exit folder, looked at after the
            listing was taken (and after their start markers were read into
            the entries).
        cleared: ids of failed tasks already cancelled.
        now: the time (``time.time()``, as the submissions' times are).
        settings: ``launch_grace`` and ``exit_grace``.
        task_id: the adapter's task ids.
        scheduler: the scheduler's name, for warnings.
    """
    changes: dict[str, TaskChanges] = {}
    cancel: list[str] = []
    first_seen: list[tuple[Entry, float]] = []
    lost: list[Entry] = []
    resubmit: list[Resubmit] = []
    warnings: list[str] = []
    for sub in subs:
        if not sub.job_id:
            continue
        alive = alive_tasks(sub, rows, now, task_id)
        ended = sub.ended_tasks | (frozenset(range(1, sub.tasks + 1)) - alive)
        idle = idle_tasks(sub, ended, sub.cancelled)
        cancelled = sub.cancelled | idle
        launches, launched, since = lost_launches(sub, rows, seen, ended, cancelled, now,
                                                  settings, task_id)
        cancelled |= launches
        cancel.extend(task_ids(sub, task_id, idle))
        if launches:
            ids = task_ids(sub, task_id, launches)
            cancel.extend(ids)
            warnings.append(_lost_launch_warning(scheduler, ids, settings.launch_grace))
        first, gone, unclaimed = ended_without_exit(sub, seen, ended, cancelled, now, settings)
        first_seen.extend(first)
        lost.extend(gone)
        if unclaimed:
            resubmit.append(resubmission(sub, unclaimed))
        changes[sub.sub_id] = TaskChanges(frozenset(ended - sub.ended_tasks),
                                          frozenset(cancelled - sub.cancelled), launched, since)
    # a task listed as failed is cancelled once: one held in an error state
    # (Grid Engine's Eqw) would otherwise stay in the queue for ever
    stuck = [i for i, row in rows.items()
             if row.state is NativeState.FAILED and i not in cleared]
    cancel.extend(stuck)
    return PollDecision(changes, tuple(cancel), frozenset(stuck), tuple(first_seen),
                        tuple(lost), tuple(resubmit), tuple(warnings))


def decide_idle(subs: Iterable[Submitted]) -> dict[str, frozenset[int]]:
    """Tasks of packing submissions that came too late to claim anything,
    once every target of their submission has started (or was reported): they
    are cancelled at once, before the scheduler starts them only to exit."""
    idle: dict[str, frozenset[int]] = {}
    for sub in subs:
        if (sub.pack and sub.tasks > 1 and len(sub.cancelled | sub.ended_tasks) < sub.tasks
                and all(e.started is not None or e.reported for e in sub.entries)):
            tasks = idle_tasks(sub, sub.ended_tasks, sub.cancelled)
            if tasks:
                idle[sub.sub_id] = tasks
    return idle


def done(subs: Iterable[Submitted]) -> list[Submitted]:
    """Submissions whose targets were all reported and whose tasks all ended
    (or were cancelled): their files can go. While a task may still start, it
    could claim a target again, so the markers stay."""
    return [sub for sub in subs if all(e.reported for e in sub.entries)
            and len(sub.ended_tasks | sub.cancelled) >= sub.tasks]


def decide_adoption(subs: Iterable[Submitted], rows: Mapping[str, NativeJob] | None,
                    seen: Collection[str], wanted: Collection[str], now: float,
                    task_id: TaskId) -> Adoption:
    """Which targets of a previous master's submissions a new master adopts.

    Args:
        subs: the submissions read back from the job folder.
        rows: the scheduler's listing, or None if it could not be had (then
            only targets that left an exit file, or whose submission is too
            young to be listed, are adopted).
        seen: the names of the files in the exit folder.
        wanted: the ids (``JOB.ATTEMPT``) of the targets the tree has as issued.
        now: the time (``time.time()``).
        task_id: the adapter's task ids.
    """
    listing = rows or {}
    adopted: list[Entry] = []
    dropped: list[Entry] = []
    ended: dict[str, frozenset[int]] = {}
    orphans: list[str] = []
    known: set[str] = set()
    for sub in subs:
        known.update(task_ids(sub, task_id))
        alive = alive_tasks(sub, listing, now, task_id)
        ended[sub.sub_id] = frozenset(range(1, sub.tasks + 1)) - alive
        keep = [e for e in sub.entries
                if e.batch_id in wanted and (alive or f"{e.key}.exit" in seen)]
        adopted.extend(keep)
        dropped.extend(e for e in sub.entries if e not in keep)
        if not keep:
            orphans.extend(task_ids(sub, task_id, alive))
    orphans.extend(r.id for r in listing.values() if r.state.alive and r.id not in known)
    return Adoption(tuple(adopted), tuple(dropped), ended, tuple(orphans))
