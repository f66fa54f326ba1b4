"""Slurm: ``--batchSystem slurm``.

=====================  ===========================================
jobtree request         ``#SBATCH`` directive
=====================  ===========================================
cores (per process)     ``--cpus-per-task=C``
nodes × processes       ``--nodes=N --ntasks-per-node=P`` (else ``--ntasks=1``)
memory (per node)       ``--mem=<MiB>M``, at least ``memory_floor``
walltime                ``--time=HH:MM:00`` (whole minutes, rounded up)
disk                    only with ``disk_resource``: ``tmp`` gives
                        ``--tmp=<MiB>M``, any other name ``--gres=<name>:<MiB>M``
gpus (per node)         ``--gres=gpu:G``
queue                   ``--partition=Q``
account                 ``--account=A``
array of N tasks        ``--array=1-N``
extras                  ``#SBATCH <extra>`` verbatim
=====================  ===========================================

Paths (the log, the working folder) are written in double quotes when they
hold anything beyond letters, digits and ``_ . , : / @ + = -``: sbatch reads
a quoted ``#SBATCH`` value whole, blanks, ``#`` and ``$`` included, and a
``%`` of the log path is doubled so that sbatch takes it literally. A path
with a double quote, a backslash or a control character cannot be carried and
is refused, as is a queue or account that is not a plain name
(:func:`jobtree.batch.adapter.checked_name`).

Status is one ``squeue`` for every job of the tree (they share a name, and
``-t all`` keeps finished jobs for ``MinJobAge``); accounting is ``sacct``.
"""

from __future__ import annotations

import getpass
import re
from typing import Sequence

from ..errors import ResourceError
from .adapter import SchedulerDialect, checked_line, checked_name
from .native import (NativeJob, NativeState, Submission, hms, mebibytes, parse_hms,
                     whole_minutes)

_STATES = {
    "PENDING": NativeState.QUEUED, "CONFIGURING": NativeState.QUEUED,
    "REQUEUED": NativeState.QUEUED, "REQUEUE_HOLD": NativeState.QUEUED,
    "REQUEUE_FED": NativeState.QUEUED, "RESV_DEL_HOLD": NativeState.QUEUED,
    "SPECIAL_EXIT": NativeState.QUEUED, "RESIZING": NativeState.RUNNING,
    "RUNNING": NativeState.RUNNING, "COMPLETING": NativeState.RUNNING,
    "SUSPENDED": NativeState.RUNNING, "STOPPED": NativeState.RUNNING,
    "SIGNALING": NativeState.RUNNING, "STAGE_OUT": NativeState.RUNNING,
    "COMPLETED": NativeState.COMPLETED, "FAILED": NativeState.FAILED,
    "BOOT_FAIL": NativeState.NODE_FAILURE, "NODE_FAIL": NativeState.NODE_FAILURE,
    "DEADLINE": NativeState.TIMEOUT, "TIMEOUT": NativeState.TIMEOUT,
    "CANCELLED": NativeState.CANCELLED, "REVOKED": NativeState.CANCELLED,
    "PREEMPTED": NativeState.PREEMPTED, "OUT_OF_MEMORY": NativeState.OUT_OF_MEMORY,
}
#: sacct's record of a run that ended and was queued again: in the accounting
#: (not the listing, where the job waits again) it is an ended, preempted run
_ACCOUNTING_STATES = {"REQUEUED": NativeState.PREEMPTED, "REQUEUE_HOLD": NativeState.PREEMPTED,
                      "REQUEUE_FED": NativeState.PREEMPTED}
#: what slurmstepd writes into the job's output when it ends the job
#: (``slurmstepd: error: *** JOB 123 ON node CANCELLED AT ... DUE TO TIME LIMIT ***``),
#: and the memory kills: jobacct_gather's ``OverMemoryKill`` (``Exceeded job
#: memory limit``, ``Step 12.batch exceeded memory limit (...), being killed``)
#: and the cgroup OOM killer (``Detected 1 oom-kill event(s) in StepId=...``)
_OUTPUT_SIGNS = (
    (re.compile(r"exceeded (?:job |step )?memory limit|oom[-_]kill event", re.IGNORECASE),
     NativeState.OUT_OF_MEMORY),
    (re.compile(r"DUE TO TIME LIMIT"), NativeState.TIMEOUT),
    (re.compile(r"DUE TO (?:PREEMPTION|JOB REQUEUE)"), NativeState.PREEMPTED),
    (re.compile(r"DUE TO NODE FAILURE"), NativeState.NODE_FAILURE),
)
#: what a path in an ``#SBATCH`` line may hold without quotes
_PLAIN = re.compile(r"[A-Za-z0-9_.,:/@+=-]+")
#: squeue's fields: id (123 or 123_4), job name, long state, time used, array job id, task
_SQUEUE_FORMAT = "%i|%j|%T|%M"


def slurm_state(text: str) -> NativeState:
    """A Slurm state (``CANCELLED by 0``, ``FAILED``, ``OUT_OF_MEMORY``) as a NativeState."""
    word = text.strip().split(" ")[0].rstrip("+")
    return _STATES.get(word, NativeState.UNKNOWN)


class Slurm(SchedulerDialect):
    """Submits to Slurm with sbatch; see the module doc for the mapping."""

    name = "slurm"
    directive_prefix = "#SBATCH"
    index_variable = "SLURM_ARRAY_TASK_ID"
    output_signs = _OUTPUT_SIGNS

    def directives(self, job: Submission) -> list[str]:
        r = job.request
        log = job.log_stem.replace("%", "%%") + (".%a.out" if job.is_array else ".out")
        lines = [f"--job-name={job.name}", "--output=" + _path(log, "log path"),
                 "--chdir=" + _path(job.workdir, "working folder"), "--export=ALL"]
        if r.mpi:
            lines += [f"--nodes={r.nodes}", f"--ntasks-per-node={r.processes}"]
        else:
            lines += ["--nodes=1", "--ntasks=1"]
        lines.append(f"--cpus-per-task={r.cores}")
        if r.memory is not None:
            lines.append(f"--mem={mebibytes(r.memory)}M")
        if r.walltime is not None:
            lines.append(f"--time={hms(whole_minutes(r.walltime) * 60)}")
            warning = r.warning(whole_minutes(r.walltime) * 60)
            if warning is not None:  # B: to the job script, which execs the runner
                lines.append(f"--signal=B:USR1@{warning}")
        if r.disk is not None and r.disk_resource:
            lines.append(f"--tmp={mebibytes(r.disk)}M" if r.disk_resource == "tmp"
                         else f"--gres={r.disk_resource}:{mebibytes(r.disk)}M")
        if r.gpus:
            lines.append(f"--gres=gpu:{r.gpus}")
        if r.queue:
            lines.append(f"--partition={checked_name(r.queue, 'queue', 'Slurm')}")
        if r.account:
            lines.append(f"--account={checked_name(r.account, 'account', 'Slurm')}")
        if job.is_array:
            lines.append(f"--array=1-{job.tasks}")
        for extra in r.extra:
            checked_line(extra, "extra directive", "Slurm")
            if not extra.startswith("-"):
                raise ResourceError(
                    f"the Slurm directive {extra!r} does not start with '-'; give it as "
                    f"sbatch takes it, e.g. --constraint=avx2.")
            lines.append(extra)
        return [f"{self.directive_prefix} {line}" for line in lines]

    def submit_command(self, job: Submission) -> tuple[list[str], str | None]:
        return ["sbatch", "--parsable", job.script], None

    def parse_submit(self, stdout: str) -> str:
        for line in stdout.splitlines():
            head = line.strip().split(";")[0]
            if head.isdigit():
                return head
        raise ValueError(f"no job id in {stdout!r}")

    def task_id(self, job_id: str, index: int | None) -> str:
        return job_id if index is None else f"{job_id}_{index}"

    def status_command(self, name: str) -> list[str]:
        return ["squeue", "--noheader", "--array", "--states=all", f"--name={name}",
                f"--user={getpass.getuser()}", f"--format={_SQUEUE_FORMAT}"]

    def parse_status(self, stdout: str) -> list[NativeJob]:
        rows: list[NativeJob] = []
        for line in stdout.splitlines():
            parts = line.strip().split("|")
            if len(parts) < 4:
                continue
            job_id, name, state, used = parts[0], parts[1], parts[2], parts[3]
            rows.extend(NativeJob(i, slurm_state(state), elapsed=parse_hms(used), name=name)
                        for i in _expand(job_id))
        return rows

    def cancel_command(self, ids: Sequence[str]) -> list[str]:
        return ["scancel", *ids]

    def cancel_by_name_command(self, name: str) -> list[str] | None:
        return ["scancel", f"--name={name}", f"--user={getpass.getuser()}"]

    def accounting_command(self, ids: Sequence[str], name: str) -> list[str] | None:
        return ["sacct", "--parsable2", "--allocations", "--noheader",
                "--format=JobID,State,ExitCode,ElapsedRaw", f"--jobs={','.join(ids)}"]

    def parse_accounting(self, stdout: str) -> list[NativeJob]:
        rows: list[NativeJob] = []
        for line in stdout.splitlines():
            parts = line.strip().split("|")
            if len(parts) < 4 or not parts[0]:
                continue
            code, _, signal = parts[2].partition(":")
            exit_code = int(code) if code.isdigit() else None
            if signal.isdigit() and int(signal):
                exit_code = -int(signal)
            elapsed = float(parts[3]) if parts[3].isdigit() else None
            word = parts[1].strip().split(" ")[0].rstrip("+")
            state = _ACCOUNTING_STATES.get(word) or slurm_state(parts[1])
            rows.append(NativeJob(parts[0], state, exit_code, elapsed,
                                  said=f"{parts[1].strip()} {parts[2].strip()}".strip()))
        return rows

    def transient(self, returncode: int | None, stderr: str) -> bool:
        text = stderr.lower()
        if "batch job submission failed" in text or "invalid" in text:
            # a refused request (node configuration, account, partition, memory),
            # unless the controller could not be reached at all
            return "unable to contact slurm controller" in text
        return super().transient(returncode, stderr) or "slurm_load_jobs" in text or (
            "unable to contact slurm controller" in text)

    def no_jobs(self, returncode: int | None, stderr: str) -> bool:
        return "invalid job id" in stderr.lower()


def _path(path: str, key: str) -> str:
    """A path as an ``#SBATCH`` value: as it is, or in double quotes.

    Raises:
        ResourceError: the path holds a control character, a double quote or
            a backslash, which sbatch cannot read back.
    """
    checked_line(path, key, "Slurm")
    if '"' in path or "\\" in path:
        raise ResourceError(
            f"The {key} {path!r} holds a double quote or a backslash, which an #SBATCH "
            f"line cannot carry (sbatch reads the value in double quotes and has no "
            f"escape); use a --jobTree path without them.")
    return path if _PLAIN.fullmatch(path) else f'"{path}"'


def _expand(job_id: str) -> list[str]:
    """``123``, ``123_4`` and pending ranges ``123_[5-7,9%2]`` as single ids."""
    if "_[" not in job_id:
        return [job_id]
    head, _, body = job_id.partition("_[")
    body = body.rstrip("]").split("%")[0]
    ids: list[str] = []
    for part in body.split(","):
        low, _, high = part.partition("-")
        if low.isdigit() and (not high or high.isdigit()):
            ids.extend(f"{head}_{i}" for i in range(int(low), int(high or low) + 1))
    return ids
