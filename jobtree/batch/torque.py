"""The Torque (PBS/Torque, OpenPBS descendant) adapter: directives, commands, parsers.

How one :class:`~jobtree.batch.native.Request` is said to Torque:

==================  ===========================================================
request             Torque
==================  ===========================================================
name                ``#PBS -N <name>``
log                 ``#PBS -o <log_stem>.out`` and ``#PBS -j oe``; for an array
                    Torque itself appends ``-<index>`` to the file name
nodes × processes   ``#PBS -l nodes=<nodes>:ppn=<processes × cores>``
× cores, gpus       ``[:gpus=<gpus>]`` (gpus per node)
memory              ``#PBS -l mem=<memory × nodes in MiB>mb`` (``mem`` is the
                    whole job's; the request's is per node, at least
                    ``memory_floor``)
walltime            ``#PBS -l walltime=HH:MM:SS``
disk                only with ``disk_resource``: ``#PBS -l <resource>=<MiB>mb``
                    (never ``file``, which caps the size of any one file)
queue, account      ``#PBS -q <queue>``, ``#PBS -A <account>``
workdir             ``#PBS -d <workdir>`` (the folder the job starts in)
array               ``#PBS -t 1-<tasks>``; the task's index is
                    ``$PBS_ARRAYID``
parallel_env        ignored (Grid Engine only)
extra               ``#PBS <extra>`` verbatim
==================  ===========================================================

Paths with blanks or colons raise :class:`~jobtree.errors.ResourceError`
(``-o host:path``). Status comes from ``qstat -x -t``: Torque's XML of every job
the server still keeps (``keep_completed``), array tasks one per element; Torque
cannot select by name, so every row is returned with its name and the base
keeps those of the tree. Array tasks are named ``<name>-<index>`` by Torque;
the suffix is taken off. Exit statuses (``JOB_EXEC_*``, Torque 6.1): -11 wall
time, -10 memory, 256 + N killed by signal N (271 is ``qdel``'s SIGTERM).
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree

from . import _pbs
from .native import NativeJob, NativeState, Submission, mebibytes, parse_hms

#: JOB_EXEC_KILL_WALLTIME in Torque's job.h
WALLTIME_EXCEEDED = -11
#: JOB_EXEC_KILL_MEM (Torque ≥ 6.1)
MEMORY_EXCEEDED = -10

_STATES = {
    "Q": NativeState.QUEUED, "H": NativeState.QUEUED, "W": NativeState.QUEUED,
    "T": NativeState.QUEUED, "R": NativeState.RUNNING, "E": NativeState.RUNNING,
    "S": NativeState.RUNNING,
}


class Torque(_pbs.PBSDialect):
    """PBS/Torque (``qsub``, ``qstat -x``, ``qdel``)."""

    name = "torque"
    index_variable = "PBS_ARRAYID"

    def directives(self, job: Submission) -> list[str]:
        request = job.request
        _pbs.check_counts(request.cores, request.processes, request.nodes)
        pbs = self.directive_prefix
        nodes = f"nodes={request.nodes}:ppn={request.processes * request.cores}"
        if request.gpus:
            nodes += f":gpus={request.gpus}"
        lines = [f"{pbs} -N {job.name}",
                 f"{pbs} -o {_pbs.check_path('log path', job.log_stem + '.out')}",
                 f"{pbs} -j oe",
                 f"{pbs} -l {nodes}"]
        if request.memory is not None:
            lines.append(f"{pbs} -l mem={mebibytes(request.memory) * request.nodes}mb")
        disk = _pbs.disk_size(request)
        if disk is not None:
            lines.append(f"{pbs} -l {request.disk_resource}={disk}")
        lines.extend(self.common_directives(request))
        lines.append(f"{pbs} -d {_pbs.check_path('working folder', job.workdir)}")
        if job.is_array:
            lines.append(f"{pbs} -t 1-{job.tasks}")
        lines.extend(_pbs.extra_directive(pbs, extra) for extra in request.extra)
        return lines

    def output_name(self, stem: str, index: int | None) -> str:
        """``stem.out``; Torque appends ``-<index>`` for an array task."""
        return f"{stem}.out" if index is None else f"{stem}.out-{index}"

    def status_command(self, name: str) -> list[str]:
        return ["qstat", "-x", "-t"]

    def parse_status(self, stdout: str) -> list[NativeJob]:
        """The rows of ``qstat -x -t`` (one ``<Job>`` element each).

        Raises:
            ValueError: the output is not Torque's XML.
        """
        text = stdout.strip()
        if text.startswith("<?xml"):
            text = text.split("?>", 1)[1].strip()
        if not text:
            return []  # Torque before 6 prints nothing when it has no jobs
        try:
            root = ElementTree.fromstring(text)
        except ElementTree.ParseError as err:
            raise ValueError(f"qstat -x printed no XML: {err}") from err
        return [self._row(element) for element in root.iter("Job")]

    def _row(self, element: ElementTree.Element) -> NativeJob:
        job_id = element.findtext("Job_Id", "").strip()
        code = element.findtext("job_state", "").strip()
        status = element.findtext("exit_status")
        exit_code = int(status) if status is not None and status.strip() else None
        if code == "C":
            state = _pbs.finished_state(exit_code, timeout=frozenset({WALLTIME_EXCEEDED}),
                                        memory=frozenset({MEMORY_EXCEEDED}))
        else:
            state = _STATES.get(code, NativeState.UNKNOWN)
        walltime = element.findtext("resources_used/walltime")
        name = element.findtext("Job_Name")
        index = _pbs.array_index(job_id)
        if name is not None and index is not None and name.endswith(f"-{index}"):
            name = name[: -len(f"-{index}")]
        return NativeJob(id=job_id, state=state, exit_code=exit_code,
                         elapsed=parse_hms(walltime) if walltime else None, name=name,
                         said=f"exit_status {exit_code}" if exit_code is not None else None)
