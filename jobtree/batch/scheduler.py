"""One tree's commands to a cluster scheduler: list, submit, cancel, account.

:class:`Scheduler` puts an adapter's pure command lines and parsers
(:class:`~jobtree.batch.adapter.SchedulerDialect`) together with the command
runner (:class:`~jobtree.batch.commands.CommandRunner`), for the jobs of one
tree (they all have its job name). It also notes when the scheduler cannot be
reached, and says so in the log once, and again when it answers.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from typing import Callable, Sequence

from ..errors import BatchSystemError, ResourceError, SchedulerCommandError
from .adapter import SchedulerDialect
from .commands import CommandRunner
from .native import NativeJob, Request, Submission
from .settings import ClusterSettings

logger = logging.getLogger(__name__)

#: most ids given to one cancel command
_CANCEL_BATCH = 500


class Scheduler:
    """The scheduler's commands for the jobs of one tree.

    Args:
        dialect: the scheduler's adapter.
        settings: the tree's job name and the command time-out.
        runner_: runs the commands (injectable for tests).
        monotonic: the clock for how long the scheduler was unreachable.
    """

    def __init__(self, dialect: SchedulerDialect, settings: ClusterSettings,
                 runner_: CommandRunner | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.dialect = dialect
        self.name = dialect.name
        self.job_name = settings.job_name
        self.workdir = settings.workdir
        self.commands = runner_ or CommandRunner(dialect.transient,
                                                 timeout=settings.command_timeout)
        self._monotonic = monotonic
        #: when the scheduler stopped answering, while it does not
        self.unreachable_since: float | None = None

    def check(self) -> None:
        """Checks that the scheduler's commands can be run here, and that the
        tree's paths can go into its job scripts' directives (a Grid Engine
        or PBS directive cannot carry a blank, for one), before a tree is made.

        Raises:
            BatchSystemError: the commands are not on PATH (say where to run
                instead), or the tree's path cannot be used (say why).
        """
        if self.workdir is not None:
            probe = Submission(self.job_name, os.path.join(self.workdir, "subs", "probe.sh"),
                               os.path.join(self.workdir, "out", "probe"), 1, Request(),
                               self.workdir)
            try:
                self.dialect.directives(probe)
            except ResourceError as err:
                raise BatchSystemError(
                    f"--batchSystem {self.name} cannot run this tree: {err} Nothing was "
                    f"run.") from None
        command = self.dialect.status_command(self.job_name)[0]
        if shutil.which(command) is None:
            raise BatchSystemError(
                f"--batchSystem {self.name} needs the scheduler's commands, but {command} is "
                f"not on PATH. Run jobtree on a machine that can submit to the cluster (a "
                f"login node; some sites need a `module load` first), or choose another "
                f"--batchSystem. Nothing was run; a tree that exists is left as it is.")

    def list(self, attempts: int | None = None) -> dict[str, NativeJob]:
        """Every job of the tree the scheduler lists, by id.

        Raises:
            SchedulerCommandError: the status command failed.
        """
        argv = self.dialect.status_command(self.job_name)
        out = self.commands.run(argv, ok=self.dialect.no_jobs, attempts=attempts)
        return {row.id: row for row in self.dialect.parse_status(out)
                if row.name is None or row.name == self.job_name}

    def submit(self, job: Submission, script: str) -> str:
        """Submits ``job`` (its script, whose text is ``script``, is written),
        once; returns the scheduler's id of it.

        Raises:
            SchedulerCommandError: the submit command failed.
            ValueError: its output holds no job id.
        """
        argv, stdin = self.dialect.submit_command(job)
        out = self.commands.run(argv, stdin=script if self.dialect.script_on_stdin else stdin,
                                attempts=1)
        return self.dialect.parse_submit(out)

    def cancel(self, ids: Sequence[str]) -> None:
        """Cancels jobs or array tasks; a failure is logged."""
        for start in range(0, len(ids), _CANCEL_BATCH):
            try:
                self.commands.run(self.dialect.cancel_command(ids[start:start + _CANCEL_BATCH]),
                                  ok=lambda code, err: True)
            except SchedulerCommandError as err:
                logger.warning("could not cancel %s jobs: %s", self.name, err)

    def cancel_tree(self) -> int:
        """Cancels every job of the tree still alive; returns how many.

        Raises:
            SchedulerCommandError: the scheduler could not be asked.
        """
        alive = [r.id for r in self.list().values() if r.state.alive]
        if not alive:
            return 0
        command = self.dialect.cancel_by_name_command(self.job_name)
        if command is not None:
            # jobs that ended since the listing make some schedulers exit non-zero
            self.commands.run(command, ok=lambda code, stderr: True)
        else:
            self.cancel(alive)
        return len(alive)

    def accounting(self, ids: Sequence[str]) -> dict[str, NativeJob]:
        """What the accounting command says of finished jobs (empty if there
        is none, or it failed)."""
        command = self.dialect.accounting_command(ids, self.job_name) if ids else None
        if command is None:
            return {}
        try:
            return {r.id: r for r in self.dialect.parse_accounting(self.commands.run(command))}
        except SchedulerCommandError as err:
            logger.debug("accounting unavailable: %s", err)
            return {}

    def unreachable(self, err: SchedulerCommandError) -> None:
        """Notes that a command failed for the scheduler being unreachable."""
        if self.unreachable_since is None:
            self.unreachable_since = self._monotonic()
            logger.warning("cannot reach %s (%s); jobtree keeps its targets and tries again",
                           self.name, err)

    def reachable(self) -> None:
        """Notes that a command succeeded."""
        if self.unreachable_since is not None:
            logger.warning("%s answers again after %.0fs", self.name,
                           self._monotonic() - self.unreachable_since)
            self.unreachable_since = None
