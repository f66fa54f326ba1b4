"""The records and files of a cluster batch system, and how their contents
become updates for the master (the pure half of :mod:`jobtree.batch.cluster`).

An :class:`Entry` is one issued target; a :class:`Submitted` is one scheduler
job (plain or array) holding entries. A target's outcome comes from the exit
file its runner wrote (:func:`update_from_exit`) or, when its task ended
without one, from what the scheduler says of the task (:func:`update_for_lost`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
from typing import Any

from .base import EXIT_MEMORY, BatchJobId, ExitReason, Update
from .native import NativeJob, NativeState, Request

# variables of the submitting session that must not reach a job
_SKIP_VARIABLES = ("PWD", "OLDPWD", "SHLVL", "_", "HOSTNAME", "TMPDIR", "PS1", "TERM")
_SKIP_PREFIXES = ("SLURM_", "SGE_TASK", "PBS_", "LSB_", "JOBTREE_MASTER", "BASH_FUNC")


@dataclasses.dataclass(eq=False)
class Entry:
    """One issued target.

    Attributes:
        batch_id: jobtree's id of it (``JOB.ATTEMPT``, also its key in file names).
        sub: the submission that holds it, once submitted.
        started: when its runner claimed it (from the start marker).
        task: the array task that claimed it.
        killed: a kill was asked for.
        reported: its update was handed to the master.
        ended_seen: when its task was first seen ended without an exit file.
        barren: submissions of it whose tasks all ended without running anything.
    """

    batch_id: BatchJobId
    key: str
    argv: list[str]
    log: str
    walltime: float | None
    request: Request | None
    worker: bool
    sub: Submitted | None = None
    started: float | None = None
    task: int | None = None
    killed: bool = False
    reported: bool = False
    ended_seen: float | None = None
    barren: int = 0

    def manifest(self) -> dict[str, Any]:
        """The entry as the runner reads it from the manifest."""
        return {"key": self.key, "argv": self.argv, "log": self.log,
                "walltime": self.walltime, "worker": self.worker}


@dataclasses.dataclass(eq=False)
class Submitted:
    """One submitted scheduler job (plain or array) and its entries."""

    sub_id: str
    entries: list[Entry]
    tasks: int
    pack: bool
    submitted: float
    job_id: str | None = None
    ended_tasks: set[int] = dataclasses.field(default_factory=set)
    cancelled: set[int] = dataclasses.field(default_factory=set)
    running_since: dict[int, float] = dataclasses.field(default_factory=dict)
    """When each task was first listed as running."""
    launched: set[int] = dataclasses.field(default_factory=set)
    """Tasks whose job script was seen to start the runner."""

    def live_tasks(self) -> int:
        """Tasks that may still run a target (for the max_jobs budget)."""
        if all(e.reported for e in self.entries):
            return 0
        if not self.pack:
            return sum(1 for i, e in enumerate(self.entries, 1)
                       if not e.reported and i not in self.ended_tasks)
        return self.tasks - len(self.ended_tasks | self.cancelled)


def update_from_exit(entry: Entry, record: dict[str, Any], native_id: str | None) -> Update:
    """The update for an entry whose runner wrote the exit ``record``."""
    code = record.get("code")
    reason = record.get("reason")
    if code == 0:
        why = ExitReason.FINISHED
    elif reason == "killed" or entry.killed:
        why = ExitReason.KILLED
    elif reason == "timeout":
        why = ExitReason.TIMEOUT
    elif code is None:
        why = ExitReason.LOST
    elif code == EXIT_MEMORY and entry.worker:
        why = ExitReason.MEMLIMIT
    else:
        why = ExitReason.FAILED
    message = None
    if why is ExitReason.TIMEOUT:
        message = f"it ran over its wall time ({entry.walltime or 'the queue limit'}s)"
    return Update(entry.batch_id, code, why, record.get("wall"), record.get("maxrss"),
                  native_id=native_id, message=message)


_REASONS = {NativeState.TIMEOUT: ExitReason.TIMEOUT,
            NativeState.OUT_OF_MEMORY: ExitReason.MEMLIMIT,
            NativeState.CANCELLED: ExitReason.KILLED,
            NativeState.FAILED: ExitReason.FAILED}


def update_for_lost(scheduler: str, entry: Entry, row: NativeJob | None,
                    task: str | None) -> Update:
    """The update for an entry whose task ended without an exit file, from
    the scheduler's ``row`` for the task (accounting or listing), if any."""
    reason = _REASONS.get(row.state, ExitReason.LOST) if row is not None else ExitReason.LOST
    if entry.killed:
        reason = ExitReason.KILLED
    message = {
        ExitReason.TIMEOUT: f"{scheduler} stopped job {task} at its wall time",
        ExitReason.MEMLIMIT: f"{scheduler} stopped job {task} for using more memory "
                             f"than it asked for",
        ExitReason.KILLED: f"{scheduler} job {task} was cancelled",
    }.get(reason, f"{scheduler} job {task} ended without a word from jobtree's runner "
                  f"(node failure, or killed with SIGKILL); state "
                  f"{row.state.value if row else 'unknown'}")
    return Update(entry.batch_id, row.exit_code if row else None, reason,
                  row.elapsed if row else None, native_id=task, message=message)


def tasks_of(manifest: dict[str, Any], entries: list[Entry]) -> int:
    """The number of tasks a manifest's submission has."""
    return int(manifest.get("tasks") or (len(entries) if manifest.get("index_variable") else 1))


def environment_script(environ: dict[str, str]) -> str:
    """A POSIX shell script that exports ``environ`` (what a job gets of the
    master's environment; node and scheduler variables are left out)."""
    lines = ["# the environment of the master that submitted the job"]
    for key in sorted(environ):
        if (not key.isidentifier() or key in _SKIP_VARIABLES
                or key.startswith(_SKIP_PREFIXES)):
            continue
        lines.append(f"export {key}={shlex.quote(environ[key])}")
    return "\n".join(lines) + "\n"


def read_json(path: str) -> dict[str, Any] | None:
    """A JSON object from a file, or None if it is absent, partial or not an object."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def remove(path: str) -> None:
    """Removes a file that may be gone already."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def append(path: str, text: str) -> None:
    """Appends to a log, if it can."""
    try:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(text)
    except OSError:
        pass


def tail(folder: str, stem: str, size: int = 600) -> str:
    """The end of the scheduler's output of a submission's first task."""
    try:
        names = sorted(n for n in os.listdir(folder) if n.startswith(stem))
        with open(os.path.join(folder, names[0]), "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - size))
            return handle.read().decode(errors="replace").strip() or "(empty)"
    except (OSError, IndexError):
        return "(none)"
