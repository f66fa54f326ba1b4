"""The exceptions jobtree raises on purpose, each written from the user's side."""

from __future__ import annotations


class JobTreeError(Exception):
    """Base of every error jobtree raises on purpose.

    The command-line entry points (and a script's ``startJobTree``) print it
    as one paragraph, without a traceback.
    """


class BadOptionError(JobTreeError):
    """An option has a value jobtree cannot use; the message names the option."""


class ResourceError(JobTreeError):
    """A resource request (memory, cpu, time, disk) is malformed or larger than
    the batch system's maximum."""


class UnpicklableTargetError(JobTreeError):
    """A target cannot be pickled; the message names the attribute that holds
    the unpicklable value."""


class TargetDefinitionError(JobTreeError):
    """A target was used against the rules of the model (a second follow-on,
    a child that is not a Target, ...)."""


class TreeError(JobTreeError):
    """The ``--jobTree`` directory cannot be used: missing, not a tree, another
    user's, a different pipeline, or written by a newer jobtree."""


class TreeLockedError(TreeError):
    """Another master holds the tree; the message names its host and pid."""


class TempDirError(JobTreeError):
    """A local temp directory cannot be made private (another user's folder,
    a symbolic link, or a folder others may write is in its place); the
    message names the path."""


class BatchSystemError(JobTreeError):
    """A batch system could not be created or refused a request."""


class SchedulerCommandError(BatchSystemError):
    """A scheduler command failed.

    Attributes:
        argv: the command line that was run.
        returncode: its exit status (None if it timed out).
        stderr: what it printed on standard error.
        transient: whether trying again later may succeed.
    """

    def __init__(self, argv: list[str], returncode: int | None, stderr: str,
                 transient: bool) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr
        self.transient = transient
        status = "timed out" if returncode is None else f"exited {returncode}"
        super().__init__(
            f"The scheduler command `{' '.join(argv)}` {status}: "
            f"{stderr.strip() or '(no message)'}. "
            + ("This looks transient; jobtree will try again."
               if transient else
               "Check that the scheduler is up and the request is valid."))


class TreeStopped(JobTreeError):
    """The master was stopped (jobTreeKill, SIGTERM or Ctrl-C); the tree can be
    continued with jobTreeRun.

    Attributes:
        reason: what stopped it ("received SIGTERM", ...).
    """

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason
