"""What Torque and PBS Pro share: job ids, array task ids, exit statuses and errors.

Both descend from OpenPBS, so they agree on the shape of a job id
(``<sequence>.<server>``, arrays ``<sequence>[].<server>`` and their tasks
``<sequence>[<index>].<server>``), on ``qsub``/``qdel`` taking a script and ids,
and on the convention for a job's exit status:

=====================  ===================================================
exit status            meaning
=====================  ===================================================
0                      the job script exited 0
1 .. 255               the job script's own exit status
256 + N                the job script was killed by signal N (271: SIGTERM,
                       what ``qdel`` sends first)
negative               the server or MOM ended the job (``JOB_EXEC_*``); which
                       codes mean "wall time" and "memory" differs per
                       flavour (Torque -11/-10, PBS Pro -29/-27/-26)
=====================  ===================================================

The messages of an unreachable server (``cannot connect to server``, a bare
``Connection refused`` printed by ``cnt2server``, ``Communication failure``,
``pbs_iff: cannot connect to host``) and the client's exit status for the
``PBSE_*`` errors that mean "try again" are recognised by
:func:`transient`.
"""

from __future__ import annotations

import re
import shlex
from typing import Sequence

from ..errors import ResourceError
from .adapter import SchedulerDialect, checked_line, checked_name
from .native import NativeState, Request, Submission, hms, mebibytes

#: ``PBSE_*`` errors (pbs_error.h, shared by Torque and PBS Pro) worth a retry,
#: as the client's exit status shows them (the code modulo 256).
_TRANSIENT_PBSE = {
    15010 % 256,  # PBSE_SYSTEM: a system call failed (connect, in practice)
    15033 % 256,  # PBSE_NOCONNECTS: no free connections
    15034 % 256,  # PBSE_NOSERVER: no server to connect to
    15031 % 256,  # PBSE_PROTOCOL: batch protocol error
    15060 % 256,  # PBSE_SVRDOWN: server shutting down
    15070 % 256,  # PBSE_NORELYMOM: could not contact MOM
    111,          # ECONNREFUSED (Torque prints the errno it got from connect)
}

_TRANSIENT_TEXT = re.compile(
    r"cannot connect to (server|host)|connection refused|communication failure"
    r"|couldn't connect to cluster|no route to host|timed out|server shutting down"
    r"|too many open connections|pbs_iff|try again|temporarily", re.IGNORECASE)

_ID = re.compile(r"^\s*(\d+(?:\[\d*\])?(?:\.\S+)?)\s*$")
_ARRAY_ID = re.compile(r"^(\d+)\[\](.*)$")
_TASK_ID = re.compile(r"^\d+\[(\d+)\]")
_UNSAFE = re.compile(r"[\s:'\"\\]")

#: ``SIGTERM`` as PBS reports a job killed by it (256 + 15): qdel's first signal.
KILLED_BY_SIGTERM = 256 + 15

#: what the MOM writes into the job's output (standard error) when it kills the
#: job over a limit: Torque ``PBS: job killed: walltime 65 exceeded limit 60``,
#: PBS Pro ``=>> PBS: job killed: mem 314572kb exceeded limit 153600kb``
#: (``mem``, ``vmem``, ``pmem``, ``pvmem``). It tells a wall-time kill from a
#: ``qdel`` where the exit status cannot (older sites report both as 271).
OUTPUT_SIGNS = (
    (re.compile(r"PBS: job killed: walltime"), NativeState.TIMEOUT),
    (re.compile(r"PBS: job killed: p?v?mem"), NativeState.OUT_OF_MEMORY),
)


def parse_submit(stdout: str) -> str:
    """The job id ``qsub`` printed (its last non-blank line), as ``qstat`` spells it.

    Raises:
        ValueError: the output holds no job id.
    """
    lines = [line for line in stdout.splitlines() if line.strip()]
    match = _ID.match(lines[-1]) if lines else None
    if match is None:
        raise ValueError(f"qsub printed no job id: {stdout.strip()!r}")
    return match.group(1)


def task_id(job_id: str, index: int | None) -> str:
    """``123[].server`` and 4 as ``123[4].server``; a plain id, or no index, as is."""
    if index is None:
        return job_id
    match = _ARRAY_ID.match(job_id)
    if match is None:
        raise ValueError(f"{job_id!r} is not the id of a PBS array job")
    return f"{match.group(1)}[{index}]{match.group(2)}"


def array_index(job_id: str) -> int | None:
    """The task index of an array task id (``123[4].server`` is 4), else None."""
    match = _TASK_ID.match(job_id)
    return int(match.group(1)) if match else None


def is_array_parent(job_id: str) -> bool:
    """Whether the id is an array's own (``123[].server``), not a task's or a job's."""
    return _ARRAY_ID.match(job_id) is not None


def finished_state(exit_code: int | None, *, timeout: frozenset[int],
                   memory: frozenset[int]) -> NativeState:
    """The state of a finished job from its exit status.

    Args:
        exit_code: the exit status the server recorded, or None if it has none
            (a job deleted before it started).
        timeout: the flavour's ``JOB_EXEC_*`` codes for "over its wall time".
        memory: the flavour's codes for "over its memory".
    """
    if exit_code is None:
        return NativeState.CANCELLED
    if exit_code == 0:
        return NativeState.COMPLETED
    if exit_code in timeout:
        return NativeState.TIMEOUT
    if exit_code in memory:
        return NativeState.OUT_OF_MEMORY
    if exit_code == KILLED_BY_SIGTERM:
        return NativeState.CANCELLED
    return NativeState.FAILED


def transient(returncode: int | None, stderr: str) -> bool:
    """Whether a failed PBS client command is worth trying again."""
    if returncode is None:
        return True
    if _TRANSIENT_TEXT.search(stderr):
        return True
    return returncode in _TRANSIENT_PBSE and not stderr.strip()


def disk_size(request: Request) -> str | None:
    """``<MiB>mb`` for the request's disk, or None when it asks none or the
    site names no resource for it (``disk_resource``)."""
    if request.disk is None or not request.disk_resource:
        return None
    return f"{mebibytes(request.disk)}mb"


def check_path(what: str, path: str) -> str:
    """A path for a ``#PBS`` directive, which qsub splits at blanks and reads
    ``host:path`` from a colon.

    Raises:
        ResourceError: the path holds a blank, a colon, a quote or a backslash.
    """
    checked_line(path, what, "PBS")
    if _UNSAFE.search(path):
        raise ResourceError(
            f"The {what} {path!r} holds a blank, colon, quote or backslash, which a "
            f"#PBS directive cannot carry; use a --jobTree path without them.")
    return path


def check_counts(cores: int, processes: int, nodes: int) -> None:
    """Raises ResourceError unless cores, processes and nodes are all at least 1."""
    for what, value in (("cores", cores), ("processes per node", processes), ("nodes", nodes)):
        if value < 1:
            raise ResourceError(f"A PBS job needs at least 1 of {what}, not {value}.")


def extra_directive(prefix: str, extra: str) -> str:
    """One verbatim directive from the cluster config (``-l pmem=2gb``)."""
    checked_line(extra, "extra directive", "PBS")
    extra = extra.strip()
    if not extra:
        raise ResourceError(f"The extra directive {extra!r} must be one non-empty line.")
    try:
        shlex.split(extra)  # a quoting error shows here, not at qsub
    except ValueError as err:
        raise ResourceError(f"The extra directive {extra!r} is badly quoted: {err}.") from err
    return f"{prefix} {extra}"


class PBSDialect(SchedulerDialect):
    """What the Torque and PBS Pro adapters share: ``#PBS`` directives,
    ``qsub SCRIPT``, ``qdel IDS``, their ids and errors."""

    directive_prefix = "#PBS"
    min_array = 2
    output_signs = OUTPUT_SIGNS

    def common_directives(self, request: Request) -> list[str]:
        """The directives both flavours write alike: wall time, queue, account."""
        pbs = self.directive_prefix
        lines = []
        if request.walltime is not None:
            lines.append(f"{pbs} -l walltime={hms(request.walltime)}")
        if request.queue:
            lines.append(f"{pbs} -q {checked_name(request.queue, 'queue', 'PBS')}")
        if request.account:
            lines.append(f"{pbs} -A {checked_name(request.account, 'account', 'PBS')}")
        return lines

    def submit_command(self, job: Submission) -> tuple[list[str], str | None]:
        return ["qsub", job.script], None

    def parse_submit(self, stdout: str) -> str:
        return parse_submit(stdout)

    def task_id(self, job_id: str, index: int | None) -> str:
        return task_id(job_id, index)

    def cancel_command(self, ids: Sequence[str]) -> list[str]:
        return ["qdel", *ids]

    def cancel_by_name_command(self, name: str) -> list[str] | None:
        return None  # qdel takes ids only: the base lists the tree's jobs and cancels those

    def transient(self, returncode: int | None, stderr: str) -> bool:
        return transient(returncode, stderr)
