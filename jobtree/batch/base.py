"""The contract between the master and every batch system."""

from __future__ import annotations

import abc
import dataclasses
import enum
from typing import Any, NewType, Sequence

from ..resources import Resources, format_duration
from ..workerjob import EXIT_MEMORY, WorkerJob

__all__ = ["EXIT_MEMORY", "BatchJobId", "BatchSystem", "ExitReason", "JobSpec", "Update",
           "WorkerJob", "over_time_limit"]

BatchJobId = NewType("BatchJobId", str)


class ExitReason(enum.Enum):
    """Why an issued job ended."""

    FINISHED = "finished"
    """The job's process exited 0."""
    FAILED = "failed"
    """The job exited non-zero (the target raised, or the worker could not start)."""
    KILLED = "killed"
    """The job was killed on purpose (by jobtree, a user or the scheduler)."""
    LOST = "lost"
    """The batch system no longer knows the job and it left no result."""
    MEMLIMIT = "out of memory"
    """The job ran out of memory or over its memory limit."""
    TIMEOUT = "timeout"
    """The job ran over its timeLimit, --maxJobDuration, or the wall time its
    scheduler job asked for."""
    PREEMPTED = "preempted"
    """The scheduler stopped the job to make room for another (preemption), or
    requeued it: the job itself did nothing wrong."""
    NODE_FAILURE = "node failure"
    """The node the job ran on failed (or failed to boot) under it."""


def over_time_limit(limit: float | None) -> str:
    """What a failure report says of a job stopped at its ``timeLimit``."""
    shown = format_duration(limit) if limit is not None else "?"
    return (f"it ran over its time limit (timeLimit={shown}) and was stopped; raise "
            f"timeLimit, or leave it out to let the target run on")


@dataclasses.dataclass(frozen=True)
class JobSpec:
    """One job to issue.

    Attributes:
        job_id: jobtree's id of the job.
        attempt: the attempt number (1 for the first try).
        argv: the worker command.
        resources: what the job needs, defaults applied.
        name: a short name for the scheduler's listing.
        log_path: where the job's standard output and error go.
        kind: the target's class (jobs of one kind tend to take alike).
        job: the job's input (its pickled target, chain, resources), given
            to batch systems that hand it to the worker themselves
            (``takes_input``); the others' workers read the job input file.
        worker: the worker job ``argv`` runs, if it runs one (then it may be
            started from a warm process, and exit status EXIT_MEMORY means
            out of memory); None for a plain command.
        priority: the target's priority. The master issues ready jobs highest
            first; a batch system that holds issued jobs back (a cluster's
            waiting targets, a pilots' queue) starts them highest first too.
    """

    job_id: int
    attempt: int
    argv: Sequence[str]
    resources: Resources
    name: str
    log_path: str
    kind: str = ""
    job: dict[str, Any] | None = None
    worker: WorkerJob | None = None
    priority: int = 0


@dataclasses.dataclass(frozen=True)
class Update:
    """A job that ended.

    Attributes:
        batch_id: the batch system's id of the job.
        exit_code: its exit status (None if unknown).
        reason: why it ended.
        wall: seconds it ran, if known.
        memory: its peak memory in bytes, if known.
        native_id: the scheduler's id of the job that ran it, if it has one.
        message: why it ended, for the failure report, when the batch system knows.
        permanent: trying again cannot help (the scheduler refused the request).
    """

    batch_id: BatchJobId
    exit_code: int | None
    reason: ExitReason
    wall: float | None = None
    memory: int | None = None
    native_id: str | None = None
    message: str | None = None
    permanent: bool = False


class BatchSystem(abc.ABC):
    """What the master needs from a batch system.

    One object owns all the state of its jobs; the master calls it from one
    thread.
    """

    #: the name given to --batchSystem
    name: str = ""
    #: whether jobs run on this machine (so the master can clean their local temp dirs)
    local: bool = False
    #: whether it hands JobSpec.job to the worker (then no job input file is written)
    takes_input: bool = False

    @abc.abstractmethod
    def limits(self) -> Resources:
        """The largest cpu and memory one job may ask for (None = no limit known)."""

    def granted(self, resources: Resources) -> Resources:
        """What a job that asks ``resources`` is given: what the scheduler is
        asked for it (a cluster raises a tiny memory request to its
        ``memory_floor``). A try that runs out of memory asks for more than this."""
        return resources

    @abc.abstractmethod
    def capacity(self) -> int:
        """How many jobs the master should keep issued at once."""

    @abc.abstractmethod
    def issue(self, spec: JobSpec) -> BatchJobId:
        """Hands a job to the batch system and returns its id."""

    @abc.abstractmethod
    def kill(self, ids: Sequence[BatchJobId]) -> None:
        """Stops the given jobs; each still produces an Update (KILLED)."""

    @abc.abstractmethod
    def issued(self) -> set[BatchJobId]:
        """Ids of the jobs issued and not yet reported by next_update."""

    @abc.abstractmethod
    def running(self) -> dict[BatchJobId, float]:
        """Seconds each running job has been running."""

    @abc.abstractmethod
    def next_update(self, timeout: float) -> Update | None:
        """Waits up to ``timeout`` seconds for a job to end."""

    def adopt(self, jobs: Sequence[tuple[int, int]]) -> dict[tuple[int, int], BatchJobId]:
        """Takes over jobs a previous master issued, after a master restart.

        Args:
            jobs: (job id, attempt) of every job the tree has as issued to
                this batch system.

        Returns:
            the id of each one that is still queued or running (or ended and
            not yet reported): they stay issued and later produce updates like
            any other job. The rest are issued again. Batch systems whose jobs
            die with the master adopt nothing.
        """
        return {}

    def scheduler_ids(self) -> dict[BatchJobId, str]:
        """The scheduler's ids of issued jobs learnt since the last call
        (for jobTreeStatus and failure reports); empty where ids are the same."""
        return {}

    def kill_tree(self) -> int:
        """Cancels every job of this tree the scheduler still has, even those of
        a master that is gone (jobTreeKill). Returns how many it cancelled.

        Raises:
            SchedulerCommandError: the scheduler could not be asked.
        """
        return 0

    def close(self) -> None:
        """Stops every job this object issued and releases its resources."""
