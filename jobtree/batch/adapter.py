"""The pure half of a cluster batch system: what each scheduler adapter defines.

An adapter subclasses :class:`SchedulerDialect` and fills in its methods;
one :class:`jobtree.batch.cluster.ClusterBatchSystem` holds the adapter and
does all the I/O with it. None of the methods runs a command or touches a
file: they build argv lists and job-script directives from records, and parse
the scheduler's output into :class:`NativeJob` rows, so each is tested against
recorded outputs in ``tests/data/<scheduler>/``. An adapter holds no state and
no settings; it is created without arguments (``Slurm()``).
"""

from __future__ import annotations

import abc
import re
from typing import Sequence

from ..errors import ResourceError
from ..options import NAME_CHARACTERS, name_problem
from ..paths import control_character
from .native import NativeJob, NativeState, Submission

#: what any job's output says of running out of memory: Python's own error
#: (Grid Engine's ``h_vmem`` is a ``ulimit -v``, so the runner itself may fail
#: so), and the C library's words for ``ENOMEM``
MEMORY_SIGNS: tuple[tuple[re.Pattern[str], NativeState], ...] = (
    (re.compile(r"\bMemoryError\b|Cannot allocate memory|std::bad_alloc"),
     NativeState.OUT_OF_MEMORY),
)


def checked_name(value: str, key: str, scheduler: str) -> str:
    """``value`` (a queue, account, project or parallel environment) if it may
    go into a directive line of a ``scheduler`` job script.

    Raises:
        ResourceError: naming the value and the key (see :func:`jobtree.options.name_problem`).
    """
    problem = name_problem(value)
    if problem is not None:
        raise ResourceError(
            f"The {key} {value!r} cannot go into a {scheduler} job script: it {problem}. "
            f"Give a {key} of {NAME_CHARACTERS} (the target's {key}=, --{key}, or the "
            f"cluster config's {key}).")
    return value


def checked_line(value: str, key: str, scheduler: str) -> str:
    """``value`` (a path or an extra directive) if it holds no control
    character: a line break would end the directive line and start a shell one.

    Raises:
        ResourceError: naming the value, the key and the character.
    """
    bad = control_character(value)
    if bad is not None:
        raise ResourceError(
            f"The {key} {value!r} cannot go into a {scheduler} job script: it holds a "
            f"control character ({bad}), and a line break would start a shell command. "
            f"Give it as one line of printable characters.")
    return value


class SchedulerDialect(abc.ABC):
    """How to talk to one scheduler."""

    #: the --batchSystem name
    name: str = ""
    #: the prefix of a directive line in a job script (``#SBATCH``, ``#$``, ``#PBS``, ``#BSUB``)
    directive_prefix: str = ""
    #: the environment variable that holds a task's array index (1-based) inside a job
    index_variable: str = ""
    #: the fewest tasks an array may have (PBS Pro refuses arrays of one subjob)
    min_array: int = 2
    #: whether the submit command reads the job script on standard input
    #: (LSF's ``bsub < script``); the base then feeds it the script's text
    script_on_stdin: bool = False
    #: what the scheduler writes into a job's own output when it ends the job
    #: (a pattern and the state it means; the first that matches wins), on
    #: top of :data:`MEMORY_SIGNS`: see :meth:`output_state`
    output_signs: tuple[tuple[re.Pattern[str], NativeState], ...] = ()

    @abc.abstractmethod
    def directives(self, job: Submission) -> list[str]:
        """The directive lines for the top of the job script (prefix included).

        Raises:
            ResourceError: the request cannot be expressed on this scheduler
                (say what to change).
        """

    @abc.abstractmethod
    def submit_command(self, job: Submission) -> tuple[list[str], str | None]:
        """The argv that submits ``job.script``, and the text to give it on
        standard input (None for none)."""

    @abc.abstractmethod
    def parse_submit(self, stdout: str) -> str:
        """The scheduler's id of the job just submitted (for an array: the
        array's id), from the submit command's standard output.

        Raises:
            ValueError: the output holds no job id.
        """

    @abc.abstractmethod
    def task_id(self, job_id: str, index: int | None) -> str:
        """The id of array task ``index`` (1-based) of job ``job_id`` as the
        listing spells it, or of the plain job itself when ``index`` is None."""

    @abc.abstractmethod
    def status_command(self, name: str) -> list[str]:
        """The one command that lists every job of this user named ``name``,
        with array tasks one per row, including finished jobs the scheduler
        still remembers."""

    @abc.abstractmethod
    def parse_status(self, stdout: str) -> list[NativeJob]:
        """The rows of the status command's output (pending array ranges expanded)."""

    @abc.abstractmethod
    def cancel_command(self, ids: Sequence[str]) -> list[str]:
        """The command that cancels the given jobs or array tasks."""

    @abc.abstractmethod
    def cancel_by_name_command(self, name: str) -> list[str] | None:
        """A command that cancels every job of this user named ``name``, or
        None if the scheduler has none (the base then lists and cancels by id)."""

    def no_jobs(self, returncode: int | None, stderr: str) -> bool:
        """Whether a failed status command only means "no such jobs" (LSF's
        bjobs exits non-zero with "No job found"); the listing is then empty."""
        return False

    def accounting_command(self, ids: Sequence[str], name: str) -> list[str] | None:
        """A command that gives the final state of finished jobs or tasks
        (``sacct``, ``qacct``, ...), or None if the scheduler has none that
        jobtree uses. Called only for jobs whose exit file is missing.

        Args:
            ids: the jobs or array tasks, as :meth:`task_id` spells them.
            name: the name every job of the tree has (for a scheduler that
                can select by name only).
        """
        return None

    def parse_accounting(self, stdout: str) -> list[NativeJob]:
        """The rows of the accounting command's output."""
        return []

    def output_name(self, stem: str, index: int | None) -> str:
        """The name of the file the scheduler writes a task's output to, for
        the ``log_stem`` whose file name is ``stem`` (as :meth:`directives`
        asks for it): ``stem.out``, or ``stem.INDEX.out`` for array task ``index``."""
        return f"{stem}.out" if index is None else f"{stem}.{index}.out"

    def output_state(self, text: str) -> tuple[NativeState, str] | None:
        """What the end of a job's own output says of why the job ended: the
        state and the line that says so, or None if it says nothing.

        The scheduler's records sometimes cannot tell (Slurm's
        ``jobacct_gather`` memory kill is ``FAILED 0:9`` like any SIGKILL;
        older PBS sites report a wall-time kill as 271, like ``qdel``), but
        the scheduler writes why into the job's output.
        """
        for pattern, state in (*self.output_signs, *MEMORY_SIGNS):
            for line in reversed(text.splitlines()):
                if pattern.search(line):
                    return state, line.strip()
        return None

    def transient(self, returncode: int | None, stderr: str) -> bool:
        """Whether a failed command is worth trying again (the scheduler is
        down, busy or unreachable) rather than a refused request. The default
        says yes to time-outs and to messages about connections and time-outs."""
        if returncode is None:
            return True
        text = stderr.lower()
        return any(word in text for word in (
            "connect", "connection", "timed out", "timeout", "temporarily", "try again",
            "unreachable", "not responding", "socket", "communication", "unable to contact",
            "busy", "too many"))
