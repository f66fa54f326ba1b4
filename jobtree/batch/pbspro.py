"""The PBS Professional (and OpenPBS) adapter: directives, commands, parsers.

How one :class:`~jobtree.batch.native.Request` is said to PBS Pro:

==================  ===========================================================
request             PBS Pro
==================  ===========================================================
name                ``#PBS -N <name>``
log                 ``#PBS -o <log_stem>.out``, for an array
                    ``<log_stem>.^array_index^.out``; and ``#PBS -j oe``
nodes × processes   one chunk per node: ``#PBS -l select=<nodes>:ncpus=<processes
× cores, memory,    × cores>:mpiprocs=<processes>:ompthreads=<cores>
gpus, disk          [:mem=<MiB>mb][:ngpus=<gpus>][:<disk_resource>=<MiB>mb]``
                    (chunk memory, at least ``memory_floor``, and disk are per
                    node), and ``#PBS -l place=scatter`` for more than one node
walltime            ``#PBS -l walltime=HH:MM:SS``
disk                only with ``disk_resource`` (a host-level resource of the
                    site, in the chunk); never ``file``, which caps the size of
                    any one file
queue, account      ``#PBS -q <queue>``, ``#PBS -A <account>``
workdir             not expressible: PBS Pro starts jobs in ``$HOME``; the job
                    script changes folder itself
array               ``#PBS -J 1-<tasks>`` (at least 2 subjobs); the index is
                    ``$PBS_ARRAY_INDEX``
parallel_env        ignored (Grid Engine only)
extra               ``#PBS <extra>`` verbatim
==================  ===========================================================

Status comes from ``qstat -f -F json -x -t``: every job including finished
ones (``job_history_enable``), subjobs one per entry; the array's own entry
(``123[].server``, state B) is skipped. Exit statuses (``JOB_EXEC_*`` in
OpenPBS's job.h): -29 wall time, -27 memory, -26 virtual memory; 256 + N killed
by signal N (271 is ``qdel``'s SIGTERM).
"""

from __future__ import annotations

import json
from typing import Any

from . import _pbs
from .native import NativeJob, NativeState, Submission, mebibytes, parse_hms

#: JOB_EXEC_KILL_WALLTIME in OpenPBS's job.h
WALLTIME_EXCEEDED = -29
#: JOB_EXEC_KILL_MEM and JOB_EXEC_KILL_VMEM
MEMORY_EXCEEDED = frozenset({-27, -26})

_STATES = {
    "Q": NativeState.QUEUED, "H": NativeState.QUEUED, "W": NativeState.QUEUED,
    "T": NativeState.QUEUED, "R": NativeState.RUNNING, "E": NativeState.RUNNING,
    "S": NativeState.RUNNING, "U": NativeState.RUNNING,
}
_FINISHED = {"F", "X"}


class PBSPro(_pbs.PBSDialect):
    """PBS Professional / OpenPBS (``qsub``, ``qstat -F json``, ``qdel``)."""

    name = "pbspro"
    index_variable = "PBS_ARRAY_INDEX"

    def directives(self, job: Submission) -> list[str]:
        request = job.request
        _pbs.check_counts(request.cores, request.processes, request.nodes)
        pbs = self.directive_prefix
        chunk = (f"select={request.nodes}:ncpus={request.processes * request.cores}"
                 f":mpiprocs={request.processes}:ompthreads={request.cores}")
        if request.memory is not None:
            chunk += f":mem={mebibytes(request.memory)}mb"
        if request.gpus:
            chunk += f":ngpus={request.gpus}"
        disk = _pbs.disk_size(request)
        if disk is not None:
            chunk += f":{request.disk_resource}={disk}"
        log = job.log_stem + (".^array_index^.out" if job.is_array else ".out")
        lines = [f"{pbs} -N {job.name}",
                 f"{pbs} -o {_pbs.check_path('log path', log)}",
                 f"{pbs} -j oe",
                 f"{pbs} -l {chunk}"]
        if request.nodes > 1:
            lines.append(f"{pbs} -l place=scatter")
        lines.extend(self.common_directives(request))
        if job.is_array:
            lines.append(f"{pbs} -J 1-{job.tasks}")
        lines.extend(_pbs.extra_directive(pbs, extra) for extra in request.extra)
        return lines

    def status_command(self, name: str) -> list[str]:
        return ["qstat", "-f", "-F", "json", "-x", "-t"]

    def parse_status(self, stdout: str) -> list[NativeJob]:
        """The rows of ``qstat -f -F json -x -t``, array parents left out.

        Raises:
            ValueError: the output is not PBS Pro's JSON.
        """
        if not stdout.strip():
            return []
        try:
            # strict=False: some versions leave control characters in Variable_List
            report = json.loads(stdout, strict=False)
        except json.JSONDecodeError as err:
            raise ValueError(f"qstat -F json printed no JSON: {err}") from err
        jobs: dict[str, dict[str, Any]] = report.get("Jobs") or {}
        return [self._row(job_id, attrs) for job_id, attrs in jobs.items()
                if not _pbs.is_array_parent(job_id) and attrs.get("array") != "True"]

    @staticmethod
    def _row(job_id: str, attrs: dict[str, Any]) -> NativeJob:
        code = str(attrs.get("job_state", ""))
        status = attrs.get("Exit_status")
        exit_code = int(status) if status is not None else None
        if code in _FINISHED:
            state = _pbs.finished_state(exit_code, timeout=frozenset({WALLTIME_EXCEEDED}),
                                        memory=MEMORY_EXCEEDED)
        else:
            state = _STATES.get(code, NativeState.UNKNOWN)
        walltime = (attrs.get("resources_used") or {}).get("walltime")
        return NativeJob(id=job_id, state=state, exit_code=exit_code,
                         elapsed=parse_hms(str(walltime)) if walltime else None,
                         name=attrs.get("Job_Name"),
                         said=f"Exit_status {exit_code}" if exit_code is not None else None)
