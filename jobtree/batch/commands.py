"""Running scheduler commands: the one place that calls subprocess for them.

Every command runs as an argv list with a timeout. A failure the scheduler's
dialect calls transient (the controller is down, busy or unreachable) is
tried again with exponential backoff; anything else raises at once.
"""

from __future__ import annotations

import collections
import logging
import os
import subprocess
import time
from typing import Callable, Sequence

from ..errors import SchedulerCommandError

logger = logging.getLogger(__name__)


class CommandRunner:
    """Runs scheduler commands with a timeout and bounded retries.

    Args:
        transient: tells a failure worth retrying from a refusal
            (returncode None means the command timed out).
        timeout: seconds one run may take.
        attempts: runs of one command before giving up on a transient failure.
        backoff: seconds before the first retry; doubled each time, at most 30.
        sleep: the sleep function (injectable for tests).
    """

    def __init__(self, transient: Callable[[int | None, str], bool], timeout: float = 60.0,
                 attempts: int = 4, backoff: float = 1.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.transient = transient
        self.timeout = timeout
        self.attempts = attempts
        self.backoff = backoff
        self.sleep = sleep
        self.calls = 0  # commands run, retries included (for the benchmarks)
        #: the commands run, retries included, by program name
        self.counts: collections.Counter[str] = collections.Counter()

    def summary(self) -> str:
        """How many commands ran, by program: ``8 scheduler commands in all:
        2 sbatch, 1 scancel, 5 squeue``."""
        each = ", ".join(f"{n} {name}" for name, n in sorted(self.counts.items()))
        noun = "command" if self.calls == 1 else "commands"
        return f"{self.calls} scheduler {noun} in all" + (f": {each}" if each else "")

    def run(self, argv: Sequence[str], stdin: str | None = None,
            ok: Callable[[int, str], bool] | None = None,
            attempts: int | None = None) -> str:
        """Runs ``argv`` and returns its standard output.

        Args:
            argv: the command.
            stdin: text for its standard input.
            ok: says whether a non-zero exit (code, stderr) is still a usable answer.
            attempts: overrides the number of runs for this call.

        Raises:
            SchedulerCommandError: it failed (``transient`` says whether the
                scheduler may answer later).
        """
        delay = self.backoff
        tries = attempts or self.attempts
        for attempt in range(1, tries + 1):
            error = self._once(list(argv), stdin, ok)
            if isinstance(error, str):
                return error
            if not error.transient or attempt == tries:
                raise error
            logger.debug("%s failed (%s); trying again in %.0fs", argv[0], error, delay)
            self.sleep(delay)
            delay = min(delay * 2, 30.0)
        raise AssertionError("unreachable")

    def _once(self, argv: list[str], stdin: str | None,
              ok: Callable[[int, str], bool] | None) -> str | SchedulerCommandError:
        self.calls += 1
        self.counts[os.path.basename(argv[0])] += 1
        logger.debug("running %s", " ".join(argv))
        try:
            done = subprocess.run(argv, input=stdin, capture_output=True, text=True,
                                  timeout=self.timeout, errors="replace",
                                  stdin=None if stdin is not None else subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return SchedulerCommandError(argv, None, f"no answer within {self.timeout:g}s",
                                         transient=True)
        except OSError as err:  # not installed, not executable
            return SchedulerCommandError(
                argv, 127, f"{err.strerror}: is {argv[0]} installed and on PATH?",
                transient=False)
        logger.debug("%s exited %d: %s%s", argv[0], done.returncode, done.stdout[-2000:],
                     done.stderr[-2000:])
        if done.returncode == 0 or (ok is not None and ok(done.returncode, done.stderr)):
            return done.stdout
        return SchedulerCommandError(argv, done.returncode, done.stderr,
                                     transient=self.transient(done.returncode, done.stderr))
