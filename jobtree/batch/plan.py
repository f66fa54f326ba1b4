"""What to submit next to a cluster scheduler: pure planning.

Issued targets wait in a queue. Each time the shell
(:class:`~jobtree.batch.cluster.ClusterBatchSystem`) may submit, they are
grouped by what they ask for (:func:`groups`); the oldest targets get the
scheduler jobs ``max_jobs`` leaves room for, and each group becomes one or
more submissions (:func:`next_submission`): an array job of several tasks, or
a plain job, and with packing on, tasks that claim targets one after another.
A token bucket (:func:`take_token`) holds the submit commands to
``submit_rate`` a second. Nothing here runs a command or asks the time.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import math
from typing import Iterable, Sequence

from ..errors import ResourceError
from ..resources import Resources, format_duration
from .adapter import SchedulerDialect
from .jobfiles import Entry
from .native import Request, Submission
from .settings import ClusterSettings

#: seconds to gather issued targets before submitting them
GATHER = 0.1
#: most entries in one submission
MAX_ENTRIES = 1000
#: most targets the master hands over at once per allowed scheduler job when packing
PER_TASK = 50
#: seconds a packing task may go on after its last claim, and that a timeLimit
#: request gets on top of the limit: the job starts, and the runner stops the
#: target itself (and says why) before the scheduler would
SPARE = 60.0
#: the least wall time asked: a minute, which Slurm and LSF count in
LEAST_WALLTIME = 60.0


@dataclasses.dataclass(frozen=True)
class Group:
    """Targets waiting to be submitted that ask for the same.

    Attributes:
        request: what each of their scheduler jobs asks for.
        worker: whether they are worker jobs (a runner prepares for those).
        entries: the targets, oldest first.
        slots: the scheduler jobs (array tasks) they may have now.
    """

    request: Request
    worker: bool
    entries: tuple[Entry, ...]
    slots: int


@dataclasses.dataclass(frozen=True)
class Planned:
    """One submission to make: ``tasks`` tasks over ``entries``.

    Attributes:
        entries: the targets it holds.
        tasks: its tasks (1: a plain job).
        pack: whether its tasks claim targets one after another.
    """

    entries: tuple[Entry, ...]
    tasks: int
    pack: bool


@dataclasses.dataclass(frozen=True)
class Tokens:
    """A token bucket for the submit rate.

    Attributes:
        tokens: submit commands allowed at ``at`` (at most ``max(1, rate)``).
        at: when it was last filled (``time.monotonic()``).
    """

    tokens: float
    at: float

    @classmethod
    def full(cls, rate: float, now: float) -> Tokens:
        """A full bucket: a burst of ``max(1, rate)`` commands may go at once."""
        return cls(max(1.0, rate), now)


def take_token(bucket: Tokens, rate: float, now: float) -> tuple[Tokens, bool]:
    """The bucket after one submit command is asked for at ``now``, and
    whether it may go (``rate`` commands a second, after the first burst)."""
    rate = max(rate, 1e-3)
    tokens = min(max(1.0, rate), bucket.tokens + (now - bucket.at) * rate)
    if tokens < 1:
        return Tokens(tokens, now), False
    return Tokens(tokens - 1, now), True


def capacity(settings: ClusterSettings) -> int:
    """How many targets the master should keep issued at once."""
    per_task = PER_TASK if settings.pack_time > 0 else 1
    return max(1, min(settings.max_jobs * per_task, 20000))


def by_priority(entries: Iterable[Entry]) -> list[Entry]:
    """``entries`` highest priority first, in their order within a priority
    (the master issues in priority order, so a sort is needed only for a
    target that became ready after lower ones were issued)."""
    return sorted(entries, key=lambda e: -e.priority)


def groups(pending: Sequence[Entry], budget: int) -> list[Group]:
    """The waiting targets grouped by request, the group of the most important
    (then oldest) target first; the first ``budget`` targets in that order
    give their groups the scheduler jobs there is room for."""
    pending = by_priority(pending)
    members: dict[tuple[Request, bool], list[Entry]] = {}
    for entry in pending:
        if entry.request is not None:
            members.setdefault((entry.request, entry.worker), []).append(entry)
    slots = collections.Counter((e.request, e.worker)
                                for e in itertools.islice(pending, max(0, budget)))
    return [Group(request, worker, tuple(entries), slots.get((request, worker), 0))
            for (request, worker), entries in members.items()]


def next_submission(entries: Sequence[Entry], tasks: int, settings: ClusterSettings,
                    min_array: int) -> Planned:
    """The next submission of a group: ``tasks`` scheduler jobs (or array
    tasks) for its oldest ``entries``; packing tasks may claim the rest too.

    Args:
        entries: the group's targets not yet planned, oldest first.
        tasks: the scheduler jobs the group may still have (at least 1).
        settings: ``pack_time`` and ``arrays``.
        min_array: the fewest tasks an array may have on this scheduler.
    """
    pack = settings.pack_time > 0
    if not settings.arrays:
        tasks = 1
    chosen = entries[:MAX_ENTRIES] if pack else entries[:min(tasks, MAX_ENTRIES)]
    tasks = min(tasks, len(chosen))
    if 1 < tasks < min_array:
        tasks = 1
        chosen = chosen if pack else chosen[:1]
    return Planned(tuple(chosen), tasks, pack)


def task_walltime(request: Request, pack: bool, settings: ClusterSettings) -> float | None:
    """The wall time a task asks for: a packing task may claim targets for
    ``pack_time`` more, and gets a minute to spare (never past ``walltime_max``)."""
    if pack and request.walltime:
        walltime = request.walltime + settings.pack_time + SPARE
        return min(walltime, settings.walltime_max or walltime)
    return request.walltime


def walltime_request(resources: Resources, settings: ClusterSettings) -> float | None:
    """The wall time one target asks of a scheduler (before the packing margin).

    ``time`` is an estimate: the request is ``max(walltime_floor, time ×
    walltime_factor)``, so a poor estimate does not get the target killed. A
    ``timeLimit`` is asked as it is, with :data:`SPARE` on top (the runner
    enforces it). Neither: None, the queue's default. The request goes no
    further than ``--maxJobDuration`` (with the spare) and than
    ``walltime_max`` (less the packing margin), is never below a minute, and
    is rounded up to whole minutes (an estimate's, from an hour on, to
    quarter hours, so that targets with close estimates share array jobs).

    Raises:
        ResourceError: the timeLimit is longer than ``walltime_max``.
    """
    limit, most = resources.time_limit, settings.walltime_max
    if limit is not None and most is not None and limit > most:
        raise ResourceError(
            f"timeLimit {format_duration(limit)} is longer than the queue allows "
            f"(walltime_max = {format_duration(most)} in the cluster config). Ask for a "
            f"shorter timeLimit, or use a queue that allows it (queue=...).")
    if limit is not None:
        walltime = limit + SPARE
    elif resources.time is not None:
        walltime = max(settings.walltime_floor, resources.time * settings.walltime_factor)
    else:
        return None
    step = 900 if walltime > 3600 and limit is None else 60
    walltime = math.ceil(walltime / step) * step
    if settings.max_job_duration is not None:  # the master stops it there
        walltime = min(walltime, math.ceil((settings.max_job_duration + SPARE) / 60) * 60)
    if most is not None:  # room for the packing margin, unless a limit needs it
        margin = settings.pack_time + SPARE if settings.pack_time > 0 else 0.0
        walltime = min(walltime, max(math.floor((most - margin) / 60) * 60, limit or 0))
    return max(LEAST_WALLTIME, float(walltime))


def request_for(resources: Resources, settings: ClusterSettings,
                dialect: SchedulerDialect) -> Request:
    """The scheduler request for a target's resources and the settings.

    Raises:
        ResourceError: it cannot be expressed (the adapter's directives say why).
    """
    request = Request(
        cores=max(1, math.ceil(resources.cpu or 1)),
        memory=scheduler_memory(resources.memory, settings),
        walltime=walltime_request(resources, settings),
        disk=resources.disk if settings.disk_resource else None, gpus=resources.gpus,
        nodes=resources.nodes or 1, processes=resources.processes or 1,
        queue=resources.queue or settings.queue, account=resources.account or settings.account,
        parallel_environment=settings.parallel_environment,
        extra=tuple(settings.extra) + tuple(resources.directives or ()),
        disk_resource=settings.disk_resource, vmem_allowance=settings.vmem_allowance,
        warn_before=settings.warn_before)
    dialect.directives(Submission("check", "check", "check", 1, request, "."))
    return request


def scheduler_memory(memory: int | None, settings: ClusterSettings) -> int | None:
    """The memory asked of a scheduler for a target that asks ``memory``:
    at least ``memory_floor`` (what a worker needs to start), which
    ``max_memory`` caps, and never less than the target asked. None (the
    scheduler's default) stays None."""
    if memory is None:
        return None
    floor = settings.memory_floor
    if settings.max_memory is not None:
        floor = min(floor, settings.max_memory)
    return max(memory, floor)
