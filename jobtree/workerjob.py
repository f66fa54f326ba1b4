"""What a worker job is: its command line and its exit codes.

The master builds a worker job's command here, the batch systems (and the
fork server and the cluster node runner) read it back here, and the worker
exits with these codes. It sits below both ``jobtree.batch`` and
``jobtree.worker`` and imports nothing of jobtree, so that the processes
started for every job pay nothing for it.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Sequence

#: the module a worker runs as (``python -m jobtree.worker TREE JOB ATTEMPT``)
MODULE = "jobtree.worker"

#: exit status of a worker whose target failed (raised, or broke the rules)
EXIT_FAILED = 1
#: exit status of a worker that could not start (bad command line, unreadable tree)
EXIT_SETUP = 2
#: exit status of a worker whose target ran out of memory
EXIT_MEMORY = 3


@dataclasses.dataclass(frozen=True)
class WorkerJob:
    """One attempt of a job, run by a worker.

    Attributes:
        tree: the tree's folder (absolute).
        job: jobtree's id of the job.
        attempt: the attempt number (1 for the first try).
    """

    tree: str
    job: int
    attempt: int

    def args(self) -> list[str]:
        """The worker's arguments: TREE JOB ATTEMPT."""
        return [self.tree, str(self.job), str(self.attempt)]

    def argv(self, python: str | None = None) -> list[str]:
        """The command that runs the worker: ``python -m jobtree.worker TREE JOB ATTEMPT``."""
        return [python or sys.executable, "-m", MODULE, *self.args()]


def worker_args(argv: Sequence[str]) -> list[str]:
    """TREE JOB ATTEMPT of a worker job's command (as :meth:`WorkerJob.argv`
    made it), for a batch system that starts the worker without Python's
    command line (by forking a warm process)."""
    return list(argv[-3:])
