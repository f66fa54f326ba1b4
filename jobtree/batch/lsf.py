"""IBM Spectrum LSF: ``#BSUB`` directives, the ``bsub``/``bjobs``/``bkill``
command lines, and parsers of their output.

The job script goes to ``bsub`` on standard input (``bsub < script``), the
only way LSF reads the ``#BSUB`` lines in it, so :attr:`LSF.script_on_stdin`
is true. One ``bjobs -a`` call lists every job of a tree by its job name,
including jobs finished within ``CLEAN_PERIOD`` (an hour by default), which
is why no accounting command is used.

Assumptions about the cluster's configuration:

* ``LSF_UNIT_FOR_LIMITS=MB`` (LSF's default): memory and disk numbers are
  written in MB without a unit, which every LSF version reads.
* ``rusage[mem=...]`` and ``rusage[<disk_resource>=...]`` (``tmp``, LSF's
  built-in, or the site's own; disk is asked only when the cluster config
  names ``disk_resource``) are per slot (per task), LSF's default; the
  memory of one node (at least ``memory_floor``) is divided over the slots
  on that node.
  ``-M`` is given the memory of one node, the job's limit on a node when
  ``LSB_JOB_MEMLIMIT=Y`` (per process otherwise).
* A run-limit kill is reported as ``TERM_RUNLIMIT`` (exit code 140, after the
  SIGUSR2 LSF sends at the limit), a memory-limit kill as ``TERM_MEMLIMIT``,
  ``bkill`` as ``TERM_OWNER`` (or ``TERM_ADMIN``/``TERM_FORCE_*``).

A ``#BSUB`` value that is not a plain word is written in double quotes; one
that holds a double quote, a backslash or a control character could end the
quoted value (bsub would read the rest as further options) or the line, so it
is refused, as is a queue or project that is not a plain name
(:func:`jobtree.batch.adapter.checked_name`).
"""

from __future__ import annotations

import math
import re
import shlex
from typing import Sequence

from ..errors import ResourceError
from .adapter import SchedulerDialect, checked_line, checked_name
from .native import NativeJob, NativeState, Submission, mebibytes

#: the ``bjobs -o`` fields the status command asks for, in order; the name
#: comes last so that a delimiter inside it cannot shift the other fields
STATUS_FIELDS = ("jobid", "jobindex", "stat", "exit_code", "exit_reason", "run_time",
                 "job_name")
_DELIMITER = "|"
_STATUS_FORMAT = " ".join(STATUS_FIELDS) + f" delimiter='{_DELIMITER}'"

_STATES = {
    "PEND": NativeState.QUEUED, "PSUSP": NativeState.QUEUED, "WAIT": NativeState.QUEUED,
    "PROV": NativeState.RUNNING, "RUN": NativeState.RUNNING, "USUSP": NativeState.RUNNING,
    "SSUSP": NativeState.RUNNING,
    "DONE": NativeState.COMPLETED, "PDONE": NativeState.COMPLETED,
    "EXIT": NativeState.FAILED, "PERR": NativeState.FAILED,
    "UNKWN": NativeState.LOST, "ZOMBI": NativeState.LOST,
}
#: exit reasons (keyword of ``bjobs -o exit_reason``/``bjobs -l``) that refine EXIT
_EXIT_REASONS = (
    ("TERM_RUNLIMIT", NativeState.TIMEOUT), ("TERM_DEADLINE", NativeState.TIMEOUT),
    ("TERM_MEMLIMIT", NativeState.OUT_OF_MEMORY), ("TERM_SWAP", NativeState.OUT_OF_MEMORY),
    ("TERM_OWNER", NativeState.CANCELLED), ("TERM_ADMIN", NativeState.CANCELLED),
    ("TERM_FORCE_OWNER", NativeState.CANCELLED), ("TERM_FORCE_ADMIN", NativeState.CANCELLED),
    ("TERM_REMOVE_HUNG_JOB", NativeState.LOST), ("TERM_ZOMBIE", NativeState.LOST),
    ("TERM_CPULIMIT", NativeState.TIMEOUT), ("TERM_PREEMPT", NativeState.PREEMPTED),
    ("TERM_REQUEUE_OWNER", NativeState.PREEMPTED), ("TERM_REQUEUE_ADMIN", NativeState.PREEMPTED),
)
#: the job report LSF appends to the job's output (``TERM_MEMLIMIT: job killed
#: after reaching LSF memory usage limit.``): it names the exit reason too
_OUTPUT_SIGNS = tuple((re.compile(rf"^{term}\b"), state) for term, state in _EXIT_REASONS
                      if state is not NativeState.CANCELLED)
#: the words some LSF versions print instead of the keyword
_REASON_WORDS = (
    ("run time limit", NativeState.TIMEOUT), ("memory usage limit", NativeState.OUT_OF_MEMORY),
    ("killed by owner", NativeState.CANCELLED), ("killed by root", NativeState.CANCELLED),
    ("cpu usage limit", NativeState.TIMEOUT), ("after preemption", NativeState.PREEMPTED),
    ("requeued", NativeState.PREEMPTED),
)
_SUBMITTED = re.compile(r"Job <(\d+)> is submitted to (?:default )?queue")
_SECONDS = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*second")
_ARRAY_NAME = re.compile(r"[A-Za-z0-9._-]+")
#: what bjobs and bkill print (exit status 255) when there is nothing to show or kill
_NOTHING = ("is not found", "No job found", "No unfinished job found", "No matching job found",
            "Job has already finished")
#: what LSF prints when its daemons are down, busy or unreachable
_TRANSIENT = ("lsf is down", "please wait", "lim is down", "try later", "still trying",
              "not responding", "cannot connect", "failed in an lsf library call")


class LSF(SchedulerDialect):
    """IBM Spectrum LSF (and OpenLava's compatible commands)."""

    name = "lsf"
    directive_prefix = "#BSUB"
    index_variable = "LSB_JOBINDEX"
    output_signs = _OUTPUT_SIGNS
    #: LSF reads ``#BSUB`` lines only from a script that comes on standard
    #: input, so the base feeds the script file to ``bsub`` there
    script_on_stdin = True

    def directives(self, job: Submission) -> list[str]:
        """``#BSUB`` lines for the job: name (array spec), log, slots, span,
        memory, run limit, queue, project, GPUs, working folder, extras.

        Raises:
            ResourceError: the request has no LSF form.
        """
        request = job.request
        if min(request.cores, request.nodes, request.processes) < 1:
            raise ResourceError(
                f"LSF needs at least one node, process and core; job {job.name!r} asks for "
                f"{request.nodes} node(s) x {request.processes} process(es) x "
                f"{request.cores} core(s).")
        per_host = request.processes * request.cores
        lines = [self._line("-J", self._job_name(job)),
                 self._line("-o", job.log_stem + (".%I.out" if job.is_array else ".out"),
                            "log path"),
                 self._line("-n", str(request.slots))]
        requirement = ["span[hosts=1]" if request.nodes == 1 else f"span[ptile={per_host}]"]
        usage = []
        if request.memory is not None:
            usage.append(f"mem={math.ceil(mebibytes(request.memory) / per_host)}")
        if request.disk is not None and request.disk_resource:
            usage.append(f"{request.disk_resource}="
                         f"{math.ceil(mebibytes(request.disk) / per_host)}")
        if usage:
            requirement.append(f"rusage[{','.join(usage)}]")
        lines.append(self._line("-R", " ".join(requirement)))
        if request.memory is not None:
            lines.append(self._line("-M", str(mebibytes(request.memory))))
        if request.walltime is not None:
            if request.walltime <= 0:
                raise ResourceError(f"Job {job.name!r} asks for a wall time of "
                                    f"{request.walltime} s; LSF needs at least one minute.")
            minutes = max(1, math.ceil(request.walltime / 60))
            lines.append(self._line("-W", str(minutes)))
            warning = request.warning(minutes * 60)
            if warning is not None and warning >= 60:  # -wt is in whole minutes
                lines += [self._line("-wa", "USR1"), self._line("-wt", str(warning // 60))]
        if request.queue:
            lines.append(self._line("-q", checked_name(request.queue, "queue", "LSF")))
        if request.account:
            lines.append(self._line("-P", checked_name(request.account, "account", "LSF")))
        if request.gpus:
            lines.append(self._line("-gpu", f"num={request.gpus}"))
        lines.append(self._line("-cwd", job.workdir, "working folder"))
        lines.extend(f"{self.directive_prefix} {checked_line(extra, 'extra directive', 'LSF')}"
                     for extra in request.extra)
        return lines

    def _line(self, option: str, value: str, key: str | None = None) -> str:
        """``#BSUB option value``, the value in double quotes unless it is a
        plain word.

        Raises:
            ResourceError: the value holds a double quote, a backslash or a
                control character (named as ``key``, else as the option).
        """
        what = key or f"{option} value"
        checked_line(value, what, "LSF")
        if '"' in value or "\\" in value:
            raise ResourceError(
                f"The {what} {value!r} holds a double quote or a backslash, which a #BSUB "
                f"line cannot carry (it would end the quoted value, and bsub would read "
                f"the rest as options of its own); use a --jobTree path or a value "
                f"without them.")
        plain = shlex.quote(value) == value and not re.search(r"[\[\]%*?=]", value)
        shown = value if plain else '"' + value + '"'
        return f"{self.directive_prefix} {option} {shown}"

    @staticmethod
    def _job_name(job: Submission) -> str:
        if not job.is_array:
            return job.name
        if not _ARRAY_NAME.fullmatch(job.name):
            raise ResourceError(
                f"LSF job array names may hold only letters, digits, '.', '-' and '_'; "
                f"{job.name!r} does not.")
        return f"{job.name}[1-{job.tasks}]"

    def submit_command(self, job: Submission) -> tuple[list[str], str | None]:
        """``bsub`` alone: the base gives it the script on standard input
        (:attr:`script_on_stdin`), and the options are the script's ``#BSUB`` lines."""
        return ["bsub"], None

    def parse_submit(self, stdout: str) -> str:
        """The id in ``Job <123> is submitted to [default ]queue <normal>.``

        Raises:
            ValueError: no such line (bsub may print other lines before it).
        """
        match = _SUBMITTED.search(stdout)
        if match is None:
            raise ValueError(f"bsub printed no job id: {stdout.strip()!r}")
        return match.group(1)

    def task_id(self, job_id: str, index: int | None) -> str:
        """``123`` for a plain job, ``123[4]`` for element 4 of array 123."""
        return job_id if index is None else f"{job_id}[{index}]"

    def status_command(self, name: str) -> list[str]:
        """``bjobs -a -noheader -o "<fields> delimiter='|'" -J name``: every job
        and array element named ``name`` (an array's elements match its name)."""
        return ["bjobs", "-a", "-noheader", "-o", _STATUS_FORMAT, "-J", name]

    def parse_status(self, stdout: str) -> list[NativeJob]:
        """The rows of the status command (one per job or array element)."""
        rows = []
        for line in stdout.splitlines():
            fields = line.split(_DELIMITER, len(STATUS_FIELDS) - 1)
            if len(fields) != len(STATUS_FIELDS) or not fields[0].strip().isdigit():
                continue
            job_id, index, stat, code, reason, run_time, job_name = (f.strip() for f in fields)
            state = _STATES.get(stat, NativeState.UNKNOWN)
            exit_code = int(code) if code.lstrip("-").isdigit() else None
            if state is NativeState.COMPLETED:
                exit_code = 0
            elif state is NativeState.FAILED:
                state = self._exit_state(reason)
            seconds = _SECONDS.match(run_time)
            rows.append(NativeJob(
                id=self.task_id(job_id, int(index) if index.isdigit() and index != "0" else None),
                state=state, exit_code=exit_code,
                elapsed=float(seconds.group(1)) if seconds else None,
                name=re.sub(r"\[\d+\]$", "", job_name) or None,
                said=reason if stat == "EXIT" and reason not in ("", "-") else None))
        return rows

    @staticmethod
    def _exit_state(reason: str) -> NativeState:
        keyword = reason.split(":")[0].strip().upper()
        for term, state in _EXIT_REASONS:
            if keyword == term:
                return state
        text = reason.lower()
        for words, state in _REASON_WORDS:
            if words in text:
                return state
        return NativeState.FAILED

    def no_jobs(self, returncode: int | None, stderr: str) -> bool:
        """Whether a failed ``bjobs`` or ``bkill`` only said there was nothing to
        list or kill (``Job <x> is not found``, ``No matching job found``,
        ``Job has already finished``, exit status 255): treat it as success
        with no rows."""
        return returncode is not None and returncode != 0 and any(
            text in stderr for text in _NOTHING) and not self.transient(returncode, stderr)

    def cancel_command(self, ids: Sequence[str]) -> list[str]:
        """``bkill`` the jobs or elements (``123``, ``123[4]``)."""
        return ["bkill", *ids]

    def cancel_by_name_command(self, name: str) -> list[str] | None:
        """``bkill -J name 0``: every job of this user named ``name``."""
        return ["bkill", "-J", name, "0"]

    def transient(self, returncode: int | None, stderr: str) -> bool:
        """Time-outs, and LSF's messages for daemons that are down or busy
        (``LSF is down. Please wait ...``, ``Cannot connect to LSF. Please
        wait ...``, ``LIM is down; try later``, ``... not responding ... still
        trying``); never a refused submission (``... Job not submitted.``)."""
        text = stderr.lower()
        if returncode is None or any(words in text for words in _TRANSIENT):
            return True
        if "not submitted" in text or any(t.lower() in text for t in _NOTHING):
            return False                # refused ("Too many processors requested. ...")
        return super().transient(returncode, stderr)
