"""What a cluster adapter speaks: the shapes of submissions, resource requests
and the scheduler's view of its jobs.

An adapter (``slurm.py``, ``gridengine.py``, ``torque.py``, ``pbspro.py``,
``lsf.py``) is a :class:`jobtree.batch.adapter.SchedulerDialect` made of pure
methods over these records: build a command line from a :class:`Submission`,
parse a command's output into :class:`NativeJob` rows.
:class:`jobtree.batch.cluster.ClusterBatchSystem` does all the I/O.
"""

from __future__ import annotations

import dataclasses
import enum
import math


class NativeState(enum.Enum):
    """A scheduler job's state, mapped from the scheduler's own codes."""

    QUEUED = "queued"
    """Waiting to start (pending, held, queued, suspended before start)."""
    RUNNING = "running"
    """Started (running, suspended while running, completing, exiting)."""
    COMPLETED = "completed"
    """Ended with exit status 0."""
    FAILED = "failed"
    """Ended with a non-zero exit status, or the scheduler failed it."""
    CANCELLED = "cancelled"
    """Cancelled (by jobtree, a user or an administrator)."""
    TIMEOUT = "timeout"
    """Killed for running over its wall time."""
    OUT_OF_MEMORY = "out of memory"
    """Killed for using more memory than it asked for."""
    PREEMPTED = "preempted"
    """Stopped to make room for another job (preempted), or requeued: it did
    nothing wrong."""
    NODE_FAILURE = "node failure"
    """Its node failed (or failed to boot) under it."""
    LOST = "lost"
    """The scheduler lost it, and says no more."""
    UNKNOWN = "unknown"
    """A state the adapter does not know (treated as still alive)."""

    @property
    def alive(self) -> bool:
        """Whether the job may still run (queued, running or unknown)."""
        return self in (NativeState.QUEUED, NativeState.RUNNING, NativeState.UNKNOWN)


@dataclasses.dataclass(frozen=True)
class NativeJob:
    """One row of a scheduler's listing or accounting: a job or one array task.

    Attributes:
        id: the job's id as :meth:`SchedulerDialect.task_id` spells it
            (``"812345"``, ``"812345_3"``, ``"77.3"``, ``"12[3].server"``).
        state: its state.
        exit_code: its exit status, if the scheduler says.
        elapsed: seconds it has run (so far, or in all), if the scheduler says.
        name: its job name, if listed.
        said: the scheduler's own words for how it ended (``FAILED 0:9``,
            ``TERM_MEMLIMIT``, ``failed 37 : qmaster enforced h_rt ...``), for
            the failure report; None while it runs or if the scheduler says nothing.
    """

    id: str
    state: NativeState
    exit_code: int | None = None
    elapsed: float | None = None
    name: str | None = None
    said: str | None = dataclasses.field(default=None, compare=False)


@dataclasses.dataclass(frozen=True)
class Request:
    """What one scheduler job asks for, in one model for every scheduler.

    A plain job is one process on one node with ``cores`` cores. An MPI or
    hybrid job is ``nodes`` nodes × ``processes`` processes per node ×
    ``cores`` cores (OpenMP threads) per process.

    Attributes:
        cores: cores per process.
        memory: bytes per node (the whole job's memory when nodes is 1).
        walltime: seconds, or None for the queue's default.
        disk: bytes of node-local scratch, or None.
        gpus: GPUs per node, or None.
        nodes: nodes (1 unless an MPI target asks for more).
        processes: processes per node (1 unless an MPI target asks for more).
        queue: the partition or queue, or None for the cluster's default.
        account: the account or project to charge, or None.
        parallel_environment: Grid Engine's parallel environment for jobs of
            more than one slot (``smp``, ``mpi``, ...).
        extra: directives passed through verbatim (without the prefix, e.g.
            ``"--constraint=avx2"`` for Slurm, ``"-l scratch=10G"`` for Grid Engine).
        disk_resource: the site's resource that ``disk`` is asked as (the
            cluster config's ``disk_resource``); without one, disk is not asked.
        vmem_allowance: Grid Engine only: bytes added to ``memory`` for its
            virtual-memory limit ``h_vmem``.
        warn_before: seconds before the wall time ends at which the job asks
            for SIGUSR1 (the cluster config's ``warn_before``; 0 for none).
    """

    cores: int = 1
    memory: int | None = None
    walltime: float | None = None
    disk: int | None = None
    gpus: int | None = None
    nodes: int = 1
    processes: int = 1
    queue: str | None = None
    account: str | None = None
    parallel_environment: str | None = None
    extra: tuple[str, ...] = ()
    disk_resource: str | None = None
    vmem_allowance: int = 0
    warn_before: float = 0.0

    def warning(self, asked: float | None = None) -> int | None:
        """Whole seconds before the end of the wall time (``asked``: the
        adapter's rounding of ``walltime``) at which the job asks for its
        warning signal: ``warn_before``, at most half the wall time; None for
        no warning (no wall time asked, or ``warn_before`` 0)."""
        total = asked if asked is not None else self.walltime
        if total is None or total <= 0 or self.warn_before <= 0:
            return None
        return max(1, int(min(self.warn_before, total / 2)))

    @property
    def slots(self) -> int:
        """Cores in all: nodes × processes × cores."""
        return self.nodes * self.processes * self.cores

    @property
    def mpi(self) -> bool:
        """Whether the job spans processes or nodes (an MPI job)."""
        return self.nodes > 1 or self.processes > 1


@dataclasses.dataclass(frozen=True)
class Submission:
    """One scheduler job to submit: a plain job, or an array of ``tasks`` tasks
    numbered 1 to ``tasks``, all with the same request.

    Attributes:
        name: the job name; every job of one tree has the same name, so one
            listing (or one cancel) by name finds them all.
        script: the path of the job script (already written; it holds the
            directives from :meth:`SchedulerDialect.directives`).
        log_stem: where the scheduler's own output of the job goes: the
            adapter appends its task-index pattern and ``.out``.
        tasks: number of array tasks; 1 means a plain job (not an array).
        request: the resources each task asks for.
        workdir: the folder the job starts in.
    """

    name: str
    script: str
    log_stem: str
    tasks: int
    request: Request
    workdir: str

    @property
    def is_array(self) -> bool:
        """Whether this is an array job."""
        return self.tasks > 1


def mebibytes(size: int) -> int:
    """Bytes as whole MiB, rounded up (schedulers take memory in MB)."""
    return max(1, math.ceil(size / 1024 ** 2))


def whole_minutes(seconds: float) -> int:
    """Seconds as whole minutes, rounded up, at least 1 (Slurm and LSF count
    wall time in minutes, and Slurm takes 0 for no limit at all)."""
    return max(1, math.ceil(seconds / 60))


def hms(seconds: float) -> str:
    """Seconds as ``HH:MM:SS`` (hours may exceed 24), rounded up to whole seconds."""
    whole = max(1, math.ceil(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}"


def parse_hms(text: str) -> float | None:
    """``[D-]HH:MM:SS``, ``MM:SS`` or seconds as seconds; None if not a duration."""
    text = text.strip()
    if not text:
        return None
    days = 0.0
    if "-" in text:
        day, text = text.split("-", 1)
        try:
            days = float(day)
        except ValueError:
            return None
    try:
        parts = [float(p) for p in text.split(":")]
    except ValueError:
        return None
    seconds = 0.0
    for part in parts:
        seconds = seconds * 60 + part
    return days * 86400 + seconds
