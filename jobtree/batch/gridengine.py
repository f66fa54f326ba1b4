"""The Grid Engine adapter (Son of Grid Engine 8.1, Open Grid Scheduler, Univa/Altair
Grid Engine): directives, commands, parsers.

How one :class:`~jobtree.batch.native.Request` is said to Grid Engine:

==================  ===========================================================
request             Grid Engine
==================  ===========================================================
name                ``#$ -N <name>``
shell               ``#$ -S /bin/sh`` (queues in ``posix_compliant`` shell start
                    mode run a script under the queue's shell whatever its ``#!``)
log                 ``#$ -o <log_stem>.out`` and ``#$ -j y``; for an array
                    ``<log_stem>.$TASK_ID.out`` (Grid Engine substitutes ``$TASK_ID``)
workdir             ``#$ -wd <workdir>``
impossible request  ``#$ -w e``: rejected by qsub (``Unable to run job: error: no
                    suitable queues``) instead of pending forever
slots > 1           ``#$ -pe <pe> <nodes × processes × cores>``; the parallel
                    environment is ``request.parallel_environment``, else ``smp``
                    for one node; more than one node without one is a
                    :class:`~jobtree.errors.ResourceError`
memory              ``#$ -l h_vmem=<MiB>M``, *per slot*: the node's memory (at
                    least ``memory_floor``) plus ``vmem_allowance``, divided by
                    its slots (processes × cores), rounded up. ``h_vmem`` is a
                    virtual-memory limit (``ulimit -v``, which Grid Engine
                    multiplies by the job's slots on the host), and the execd
                    kills the job when the sum over its processes passes it
walltime            ``#$ -l h_rt=HH:MM:SS``
gpus                ``#$ -l gpu=<gpus>``: the common convention (a ``gpu`` complex,
                    per job); sites differ, and an extra ``-l`` given later wins
disk                only with ``disk_resource`` (the site's complex, e.g.
                    ``tmp_free``): ``#$ -l <complex>=<MiB>M``, for the job
queue, account      ``#$ -q <queue>``, ``#$ -A <account>``
array               ``#$ -t 1-<tasks>``; the task's
                    index is ``$SGE_TASK_ID``
extra               ``#$ <extra>`` verbatim, last (so a repeated ``-l`` overrides)
==================  ===========================================================

No ``-V``: the job script sets up its environment itself.

Status is ``qstat -xml -u <user>`` (qstat cannot select by name; the rows carry
the name and the base keeps the tree's). Pending array tasks come folded
(``<tasks>2-10:1</tasks>``, ``4,5``, ``2,5-7:1``) and are expanded to one row
per task; task ids are ``<job>.<task>``, which ``qdel`` accepts as well.
Finished jobs leave ``qstat`` at once; ``qacct -j`` has their record about a
second later. ``qacct`` takes one ``-j`` (a job number or a job-name pattern),
so several jobs are asked for by the tree's name in one call.
"""

from __future__ import annotations

import getpass
import math
import re
import shlex
import xml.etree.ElementTree as ElementTree
from typing import Sequence

from ..errors import ResourceError
from .adapter import SchedulerDialect, checked_line, checked_name
from .native import NativeJob, NativeState, Request, Submission, hms, mebibytes, parse_hms

#: the parallel environment of a multi-slot job on one node when the request names none
DEFAULT_PARALLEL_ENVIRONMENT = "smp"

#: qacct ``failed`` codes (sge_status(5)) that jobtree tells apart
FAILED_LIMIT = 37        # "qmaster enforced h_rt, h_cpu, or h_vmem limit"
FAILED_SIGNAL = 100      # "assumedly after job": the job died of a signal (qdel's SIGKILL)

_SUBMIT = re.compile(r"^\s*(\d+)(?:\.\d+-\d+:\d+)?\s*$")
_TASK_RANGE = re.compile(r"^(\d+)(?:-(\d+)(?::(\d+))?)?$")
_BAD_NAME = re.compile(r"[\s/:@\\*?\[\]]")
_TRANSIENT = re.compile(
    r"commlib error|unable to contact qmaster|unable to send message to qmaster"
    r"|failed receiving gdi request|can't connect|connection refused|timed out|timeout"
    r"|try again|temporarily|qmaster is (?:not|down)|jobs are allowed per", re.IGNORECASE)


class GridEngine(SchedulerDialect):
    """Grid Engine (``qsub``, ``qstat -xml``, ``qdel``, ``qacct``)."""

    name = "gridEngine"
    directive_prefix = "#$"
    index_variable = "SGE_TASK_ID"

    # ------------------------------------------------------------ submit
    def directives(self, job: Submission) -> list[str]:
        request = job.request
        _check_name(job.name)
        for what, value in (("cores", request.cores), ("processes per node", request.processes),
                            ("nodes", request.nodes)):
            if value < 1:
                raise ResourceError(f"A Grid Engine job needs at least 1 of {what}, not {value}.")
        log = f"{job.log_stem}.$TASK_ID.out" if job.is_array else f"{job.log_stem}.out"
        lines = [f"-N {job.name}", "-S /bin/sh", f"-o {_path('log path', log, colon=True)}",
                 "-j y", f"-wd {_path('working directory', job.workdir)}", "-w e"]
        if request.slots > 1:
            pe = checked_name(_parallel_environment(request), "parallel environment",
                              "Grid Engine")
            lines.append(f"-pe {pe} {request.slots}")
        per_slot = h_vmem(request)
        if per_slot is not None:
            lines.append(f"-l h_vmem={mebibytes(per_slot)}M")
        if request.walltime is not None:
            lines.append(f"-l h_rt={hms(request.walltime)}")
            warning = request.warning()
            if warning is not None:  # SIGUSR1 at the soft limit
                lines.append(f"-l s_rt={hms(request.walltime - warning)}")
        if request.gpus:
            lines.append(f"-l gpu={request.gpus}")
        if request.disk is not None and request.disk_resource:
            lines.append(f"-l {request.disk_resource}={mebibytes(request.disk)}M")
        if request.queue:
            lines.append(f"-q {checked_name(request.queue, 'queue', 'Grid Engine')}")
        if request.account:
            lines.append(f"-A {checked_name(request.account, 'account', 'Grid Engine')}")
        if job.is_array:
            lines.append(f"-t 1-{job.tasks}")
        lines.extend(_extra(extra) for extra in request.extra)
        return [f"{self.directive_prefix} {line}" for line in lines]

    def submit_command(self, job: Submission) -> tuple[list[str], str | None]:
        return ["qsub", "-terse", job.script], None

    def parse_submit(self, stdout: str) -> str:
        """``123``, or ``123.1-10:1`` for an array, as ``123``."""
        for line in reversed(stdout.splitlines()):
            match = _SUBMIT.match(line)
            if match:
                return match.group(1)
        raise ValueError(f"qsub printed no job id: {stdout.strip()!r}")

    def task_id(self, job_id: str, index: int | None) -> str:
        return job_id if index is None else f"{job_id}.{index}"

    # ------------------------------------------------------------ status
    def status_command(self, name: str) -> list[str]:
        # qstat lists only the caller's jobs by default, but a site's sge_qstat may say -u '*'.
        return ["qstat", "-xml", "-u", getpass.getuser()]

    def parse_status(self, stdout: str) -> list[NativeJob]:
        """Every ``job_list`` of ``qstat -xml``, pending task ranges expanded."""
        if not stdout.strip():
            return []
        try:
            root = ElementTree.fromstring(stdout)
        except ElementTree.ParseError as err:
            raise ValueError(f"qstat -xml printed no XML: {err}") from err
        rows: list[NativeJob] = []
        for element in root.iter("job_list"):
            number = (element.findtext("JB_job_number") or "").strip()
            if not number:
                continue
            state = state_of(element.findtext("state") or "")
            name = (element.findtext("JB_name") or "").strip() or None
            tasks = (element.findtext("tasks") or "").strip()
            indices: list[int | None] = list(expand_tasks(tasks)) if tasks else [None]
            rows.extend(NativeJob(self.task_id(number, index), state, name=name)
                        for index in indices)
        return rows

    # ------------------------------------------------------------ cancel
    def cancel_command(self, ids: Sequence[str]) -> list[str]:
        """``qdel 123 124.3 ...``; qdel exits 1 if any id is gone, but deletes the rest."""
        return ["qdel", *ids]

    def cancel_by_name_command(self, name: str) -> list[str] | None:
        """``qdel <name>`` (exits 1 with ``The job <name> of user(s) U does not exist``
        when none is left)."""
        return ["qdel", name]

    # -------------------------------------------------------- accounting
    def accounting_command(self, ids: Sequence[str], name: str) -> list[str] | None:
        """``qacct -j <job number>`` when the ids are one job's (or one array's
        tasks); otherwise ``qacct -j <name>``, one call for every job of the
        tree (they all have its name).

        qacct takes a single ``-j`` (a second one replaces the first).
        """
        numbers = sorted({job_id.split(".", 1)[0] for job_id in ids})
        if not numbers:
            return None
        if len(numbers) == 1:
            return ["qacct", "-j", numbers[0]]
        return ["qacct", "-j", name]

    def parse_accounting(self, stdout: str) -> list[NativeJob]:
        """The records of ``qacct -j`` (``=====`` lines between them)."""
        rows = []
        for record in _records(stdout):
            number = record.get("jobnumber", "")
            if not number.isdigit():
                continue
            task = record.get("taskid", "undefined")
            index = int(task) if task.isdigit() else None
            state, code = finished(record)
            rows.append(NativeJob(self.task_id(number, index), state, exit_code=code,
                                  elapsed=_seconds(record.get("ru_wallclock", "")),
                                  name=record.get("jobname") or None,
                                  said=f"failed {record.get('failed', '?')}, exit_status "
                                       f"{record.get('exit_status', '?')}"))
        return rows

    def transient(self, returncode: int | None, stderr: str) -> bool:
        """Time-outs and an unreachable qmaster (``error: commlib error: got select
        error (Connection refused)``, ``unable to send message to qmaster``,
        ``unable to contact qmaster``, ``failed receiving gdi request``), and the
        per-user job limit (``job rejected: Only N jobs are allowed per user``)."""
        return returncode is None or _TRANSIENT.search(stderr) is not None


# ---------------------------------------------------------------- helpers
def h_vmem(request: Request) -> int | None:
    """Bytes of ``h_vmem`` for one slot: the node's memory plus the virtual-memory
    allowance, divided by the node's slots (Grid Engine multiplies a per-slot
    limit by the slots a job has on a host), rounded up; None without memory."""
    if request.memory is None:
        return None
    return math.ceil((request.memory + request.vmem_allowance)
                     / (request.processes * request.cores))


def state_of(code: str) -> NativeState:
    """A qstat state (``qw``, ``hqw``, ``hRwq``, ``t``, ``r``, ``Rr``, ``s``, ``S``,
    ``T``, ``Eqw``, ``dr``, ...) as a :class:`NativeState`, letter by letter:
    ``d`` (being deleted) is CANCELLED, ``E`` (error: it will never run, unless an
    administrator clears it) is FAILED, ``r``/``t`` (running, being transferred
    to its host) and ``s``/``S``/``T`` (suspended) are RUNNING, ``q``/``w`` QUEUED."""
    code = code.strip()
    if "d" in code:
        return NativeState.CANCELLED
    if "E" in code:
        return NativeState.FAILED
    if "r" in code or "t" in code:
        return NativeState.RUNNING
    if "q" in code or "w" in code:
        return NativeState.QUEUED
    if any(letter in code for letter in "sST"):
        return NativeState.RUNNING
    return NativeState.UNKNOWN


def expand_tasks(text: str) -> list[int]:
    """qstat's task list (``3``, ``2-10:1``, ``4,5``, ``2,5-7:1``) as task indices.

    Raises:
        ValueError: the text is not a task list.
    """
    indices: list[int] = []
    for part in text.split(","):
        match = _TASK_RANGE.match(part.strip())
        if match is None:
            raise ValueError(f"qstat printed a task list Grid Engine never prints: {text!r}")
        first = int(match.group(1))
        last = int(match.group(2) or first)
        step = int(match.group(3) or 1)
        indices.extend(range(first, last + 1, max(1, step)))
    return indices


def finished(record: dict[str, str]) -> tuple[NativeState, int | None]:
    """The state and exit status of one qacct record.

    ``failed 0``: COMPLETED on exit 0, else FAILED. ``failed 37`` (a limit the
    qmaster enforced): TIMEOUT when the job ran for its ``h_rt`` (read from the
    record's ``category``, e.g. ``-l h_rt=3,h_vmem=1G``), else OUT_OF_MEMORY when
    it asked for ``h_vmem``, else TIMEOUT (``h_cpu``). ``failed 100`` (died of a
    signal; qdel's SIGKILL looks the same as any other SIGKILL): CANCELLED. Any
    other code is a failure to start or finish the job: FAILED.
    """
    failed = _first_int(record.get("failed", "")) or 0
    code = _first_int(record.get("exit_status", ""))
    if failed == 0:
        return (NativeState.COMPLETED if code == 0 else NativeState.FAILED), code
    if failed == FAILED_LIMIT:
        limits = _category_limits(record.get("category", ""))
        h_rt = parse_hms(limits["h_rt"]) if "h_rt" in limits else None
        wallclock = _seconds(record.get("ru_wallclock", ""))
        if h_rt is not None and wallclock is not None and wallclock >= h_rt - 1:
            return NativeState.TIMEOUT, code
        if "h_vmem" in limits:
            return NativeState.OUT_OF_MEMORY, code
        return NativeState.TIMEOUT, code
    if failed == FAILED_SIGNAL:
        return NativeState.CANCELLED, code
    return NativeState.FAILED, (code or None)


def _records(stdout: str) -> list[dict[str, str]]:
    records: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in stdout.splitlines():
        if line.startswith("====="):
            if current:
                records.append(current)
            current = {}
            continue
        key, _, value = line.strip().partition(" ")
        if key and not key.startswith("error:"):
            current[key] = value.strip()
    if current:
        records.append(current)
    return records


def _category_limits(category: str) -> dict[str, str]:
    """``-l h_rt=3,h_vmem=100M -pe smp 2`` as ``{"h_rt": "3", "h_vmem": "100M"}``."""
    limits: dict[str, str] = {}
    words = category.split()
    for flag, value in zip(words, words[1:]):
        if flag == "-l":
            for item in value.split(","):
                key, _, val = item.partition("=")
                limits[key] = val
    return limits


def _first_int(text: str) -> int | None:
    match = re.match(r"\s*(-?\d+)", text)
    return int(match.group(1)) if match else None


def _seconds(text: str) -> float | None:
    """qacct's ``20s`` (8.1) or ``20`` / ``0:00:20`` (older releases) as seconds."""
    text = text.strip()
    return parse_hms(text[:-1] if text.endswith("s") else text)


def _parallel_environment(request: Request) -> str:
    if request.parallel_environment:
        return request.parallel_environment
    if request.nodes == 1:
        return DEFAULT_PARALLEL_ENVIRONMENT
    raise ResourceError(
        f"A Grid Engine job on {request.nodes} nodes needs a parallel environment that "
        f"spans hosts; set parallel_environment (e.g. 'mpi' or 'orte': see `qconf -spl`) "
        f"in the cluster config.")


def _path(what: str, path: str, colon: bool = False) -> str:
    checked_line(path, what, "Grid Engine")
    if re.search(r"[\s'\"\\]", path) or (colon and ":" in path):
        raise ResourceError(
            f"The {what} {path!r} holds a blank, a quote{', a colon' if colon else ''} "
            f"or a backslash, which a Grid Engine directive cannot carry "
            f"(qsub splits its lines at blanks and reads -o host:path); use a --jobTree "
            f"path without them.")
    return path


def _check_name(name: str) -> None:
    if not name or _BAD_NAME.search(name) or name[0].isdigit():
        raise ResourceError(
            f"{name!r} cannot be a Grid Engine job name: it must not start with a digit "
            f"(qdel would read it as a job id) nor hold blanks or any of / : @ \\ * ? [ ] "
            f"(qdel and qacct read those as patterns); change the tree's job name.")


def _extra(extra: str) -> str:
    checked_line(extra, "extra directive", "Grid Engine")
    extra = extra.strip()
    if not extra:
        raise ResourceError(f"The extra directive {extra!r} must be one non-empty line.")
    try:
        shlex.split(extra)
    except ValueError as err:
        raise ResourceError(f"The extra directive {extra!r} is badly quoted: {err}.") from err
    return extra
