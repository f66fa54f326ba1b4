"""The records and files of a cluster batch system, and how their contents
become updates for the master (the pure half of :mod:`jobtree.batch.cluster`).

An :class:`Entry` is one issued target; a :class:`Submitted` is one scheduler
job (plain or array) holding entries. A target's outcome comes from the exit
file its runner wrote (:func:`update_from_exit`) or, when its task ended
without one, from what the scheduler's record and the task's own output say
(:func:`update_for_lost`); :meth:`JobFolder.settle` picks one.
A submission's files are its manifest (:func:`manifest`) and job script
(:func:`job_script`); :func:`read_submissions` reads back those a previous
master left.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import sys
from typing import Any, Container

from ..errors import ResourceError
from ..paths import write_atomic
from . import wire
from .adapter import SchedulerDialect
from .base import EXIT_MEMORY, BatchJobId, ExitReason, Update, over_time_limit
from .native import NativeJob, NativeState, Request, Submission
from .settings import ClusterSettings

# variables of the submitting session that must not reach a job
_SKIP_VARIABLES = ("PWD", "OLDPWD", "SHLVL", "_", "HOSTNAME", "TMPDIR", "PS1", "TERM",
                   "RESTARTED")  # Grid Engine's, of a master that runs in a job
#: how much of the end of a task's output is read for the scheduler's word on its end
OUTPUT_TAIL = 8192
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
        time_limit: its hard wall-time limit (``timeLimit``), which its runner
            enforces; None for none (``time`` is an estimate and never stops it).
        priority: the target's priority (waiting targets are submitted, and
            claimed from a pilots' queue, highest first).
    """

    batch_id: BatchJobId
    key: str
    argv: list[str]
    log: str
    time_limit: float | None
    request: Request | None
    worker: bool
    sub: Submitted | None = None
    started: float | None = None
    task: int | None = None
    killed: bool = False
    reported: bool = False
    ended_seen: float | None = None
    barren: int = 0
    priority: int = 0

    def manifest(self) -> dict[str, Any]:
        """The entry as the runner reads it from the manifest."""
        return {"key": self.key, "argv": self.argv, "log": self.log,
                "time_limit": self.time_limit, "worker": self.worker,
                "priority": self.priority,
                "walltime": self.request.walltime if self.request is not None else None,
                "memory": self.request.memory if self.request is not None else None}


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
    queue: str | None = None
    """A pilot's queue file (:mod:`jobtree.batch.pilots`): its entries are
    those it claimed from there, and it lives on after they end."""

    @property
    def pilot(self) -> bool:
        """Whether this is a pilot job."""
        return self.queue is not None

    def live_tasks(self) -> int:
        """Tasks that may still run a target (for the max_jobs budget)."""
        if self.pilot:
            return 0 if self.ended_tasks | self.cancelled else 1
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
    elif reason in ("timeout", "time_limit"):
        why = ExitReason.TIMEOUT
    elif reason in ("requeued", "pilot"):
        why = ExitReason.PREEMPTED
    elif reason == "memory":
        why = ExitReason.MEMLIMIT
    elif code is None:
        why = ExitReason.LOST
    elif code == EXIT_MEMORY and entry.worker:
        why = ExitReason.MEMLIMIT
    else:
        why = ExitReason.FAILED
    message = None
    if why is ExitReason.TIMEOUT and reason == "time_limit":
        message = over_time_limit(record.get("limit") or entry.time_limit)
    elif why is ExitReason.TIMEOUT:
        message = ("the scheduler stopped it at its job's wall time: raise the target's time "
                   "(an estimate), or walltime_floor/walltime_factor in the cluster config")
    elif reason == "memory" and record.get("asked"):
        message = (f"its pilot stopped it for using more memory than the "
                   f"{-(-int(record['asked']) // 1024 ** 2)} MiB it asked for")
    elif reason == "memory":
        message = ("the kernel's out-of-memory killer stopped it on its node (SIGKILL, as "
                   "on clusters that enforce memory with cgroups): give it more memory")
    elif reason == "pilot":
        message = (f"pilot job {native_id} was stopped (cancelled or preempted) while it ran "
                   f"the target on {record.get('host') or 'its node'}; it runs again")
    elif why is ExitReason.PREEMPTED:
        message = (f"the scheduler requeued job {native_id} while it ran the target (on "
                   f"{record.get('claimed_on') or 'a node'}); the job's next start gave it up")
    return Update(entry.batch_id, code, why, record.get("wall"), record.get("maxrss"),
                  native_id=native_id, message=message)


_REASONS = {NativeState.TIMEOUT: ExitReason.TIMEOUT,
            NativeState.OUT_OF_MEMORY: ExitReason.MEMLIMIT,
            NativeState.PREEMPTED: ExitReason.PREEMPTED,
            NativeState.NODE_FAILURE: ExitReason.NODE_FAILURE,
            NativeState.CANCELLED: ExitReason.KILLED,
            NativeState.FAILED: ExitReason.FAILED}
#: what the scheduler's record says precisely enough that the job's output
#: cannot change it; any other state (FAILED 0:9, a SIGTERM, no record) gives
#: way to what the output says
#: the ends of a pilot's target that it caused itself
_REASONS_OF_ITS_OWN = frozenset({ExitReason.TIMEOUT, ExitReason.MEMLIMIT})
_DEFINITE = frozenset({NativeState.TIMEOUT, NativeState.OUT_OF_MEMORY, NativeState.PREEMPTED,
                       NativeState.NODE_FAILURE})


def update_for_lost(scheduler: str, entry: Entry, row: NativeJob | None, task: str | None,
                    output: tuple[NativeState, str] | None = None) -> Update:
    """The update for an entry whose task ended without an exit file.

    Args:
        scheduler: the scheduler's name, for the message.
        entry: the target.
        row: the scheduler's record of the task (accounting, else listing), if any.
        task: the task's scheduler id.
        output: what the task's own output says of its end (the state and the
            line that says it; :meth:`SchedulerDialect.output_state`), if anything:
            it decides when the record is not one of the definite ends (out of
            memory, over time, preempted, node failure).
    """
    state = row.state if row is not None else None
    said = [row.said] if row is not None and row.said else []
    if output is not None and state not in _DEFINITE:
        state = output[0]
        said.append(f"its output: {output[1]!r}")
    reason = _REASONS.get(state, ExitReason.LOST) if state is not None else ExitReason.LOST
    if entry.killed:
        reason = ExitReason.KILLED
    elif entry.sub is not None and entry.sub.pilot and reason not in _REASONS_OF_ITS_OWN:
        # the pilot was lost (cancelled, killed, its node gone): not the target's doing
        return Update(entry.batch_id, None, ExitReason.PREEMPTED, native_id=task,
                      message=f"pilot job {task} ended while it ran the target "
                              f"(state {state.value if state else 'unknown'}); it runs again")
    asked = "it"
    if entry.request is not None and entry.request.memory:
        asked = f"the {-(-entry.request.memory // 1024 ** 2)} MiB it"
    message = {
        ExitReason.TIMEOUT: f"{scheduler} stopped job {task} at its wall time",
        ExitReason.MEMLIMIT: f"{scheduler} stopped job {task} for using more memory than "
                             f"{asked} asked for",
        ExitReason.PREEMPTED: f"{scheduler} preempted job {task} (stopped or requeued it to "
                              f"run another job first)",
        ExitReason.NODE_FAILURE: f"the node running {scheduler} job {task} failed",
        ExitReason.KILLED: f"{scheduler} job {task} was cancelled",
    }.get(reason, f"{scheduler} job {task} ended without a word from jobtree's runner "
                  f"(node failure, or killed with SIGKILL); state "
                  f"{row.state.value if row else 'unknown'}")
    if said:
        message += f" ({'; '.join(said)})"
    return Update(entry.batch_id, row.exit_code if row else None, reason,
                  row.elapsed if row else None, native_id=task, message=message)


def output_index(entry: Entry) -> int | None:
    """The array index of the task that ran (or runs) ``entry``, or None for
    a plain job (or a packing task not known)."""
    sub = entry.sub
    if sub is None or sub.tasks == 1:
        return None
    if entry.task is not None:
        return entry.task
    return None if sub.pack else sub.entries.index(entry) + 1


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


def manifest(sub: Submitted, settings: ClusterSettings, exit_dir: str, index_variable: str,
             walltime: float | None) -> dict[str, Any]:
    """What the runners of a submission read (``subs/SUB.json``); a pilot's
    also says where its queue is, how many targets it runs at once and how
    long it waits for one."""
    data = {"entries": [e.manifest() for e in sub.entries], "exit_dir": exit_dir,
            "index_variable": index_variable if sub.tasks > 1 else "",
            "tasks": sub.tasks, "pack": sub.pack, "pack_time": settings.pack_time,
            "task_walltime": walltime, "tree_id": settings.tree_id,
            "local_scratch": settings.local_scratch}
    if sub.queue is not None:
        data["pilot"] = {"sub_id": sub.sub_id, "queue": sub.queue,
                         "slots": settings.pilot_cores, "idle": settings.pilot_idle}
    return data


def job_script(directives: list[str], sub_id: str, tasks: int, index_variable: str,
               settings: ClusterSettings, exit_dir: str, env_script: str, manifest_path: str,
               cwd: str, python: str, module: str = "jobtree.batch.runner") -> str:
    """The text of a submission's job script: the directives, the launch
    marker (first, before the prologue: see
    :func:`jobtree.batch.poll.lost_launches`), the master's environment, the
    prologue, and the runner."""
    task = f"${{{index_variable}}}" if tasks > 1 else "1"
    lines = ["#!/bin/sh", *directives,
             f"# jobtree job {sub_id} of tree {settings.tree_id or '-'}",
             f": > {shlex.quote(exit_dir)}/\"{sub_id}-{task}.up\" 2>/dev/null",
             f". {shlex.quote(env_script)}",
             *settings.prologue,
             f"cd {shlex.quote(cwd)} 2>/dev/null || cd /",
             f"exec {shlex.quote(python)} -m {module} "
             f"{shlex.quote(manifest_path)}", ""]
    return "\n".join(lines)


def read_queue(path: str) -> list[dict[str, Any]]:
    """The entries of a pilots' queue file (one JSON object a line; a last
    line not yet complete is left out)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError:
        return []
    return wire.queue_entries(data)[0]


def read_submissions(folder: str, exit_dir: str, known: Container[str]) -> list[Submitted]:
    """The submissions a previous master left in ``folder`` (``subs/``), with
    what their start markers say, skipping those in ``known``."""
    subs: list[Submitted] = []
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".id"):
            continue
        sub_id = name[:-3]
        data = read_json(os.path.join(folder, sub_id + ".json"))
        try:
            with open(os.path.join(folder, name), encoding="utf-8") as handle:
                job_id = handle.read().strip()
            submitted = os.path.getmtime(os.path.join(folder, name))
        except OSError:
            continue
        if data is None or not job_id or sub_id in known:
            continue
        pilot = data.get("pilot")
        items = data["entries"]
        if isinstance(pilot, dict):  # its entries: those it claimed from its queue
            items = [item for item in read_queue(str(pilot.get("queue")))
                     if (wire.read_marker(os.path.join(exit_dir, f"{item['key']}.run")) or {}
                         ).get("pilot") == sub_id]
        entries = []
        for item in items:
            entry = Entry(BatchJobId(os.path.basename(item["key"])), item["key"], item["argv"],
                          item["log"], item.get("time_limit"), None, bool(item.get("worker")))
            record = wire.read_marker(os.path.join(exit_dir, f"{entry.key}.run"))
            if record and "started" in record:
                entry.started, entry.task = float(record["started"]), int(record["task"])
            entries.append(entry)
        sub = Submitted(sub_id, entries, tasks_of(data, entries), bool(data.get("pack")),
                        submitted, job_id,
                        queue=str(pilot["queue"]) if isinstance(pilot, dict) else None)
        for entry in entries:
            entry.sub = sub
        subs.append(sub)
    return subs


class JobFolder:
    """The files of one cluster batch system (``TREE/batch/ROLE-NAME``):
    ``subs/`` (job scripts, manifests, scheduler ids), ``out/`` (the
    scheduler's own output) and ``exit/`` (the runners' start markers, exit
    files and kill requests, and the job scripts' launch markers).

    Args:
        workdir: the folder, or None for a batch system that issues nothing.
    """

    def __init__(self, workdir: str | None) -> None:
        self.workdir = workdir

    def path(self, *parts: str) -> str:
        """A path in the folder.

        Raises:
            ResourceError: there is no folder (no tree).
        """
        if not self.workdir:
            raise ResourceError("this batch system has no working folder (no tree)")
        return os.path.join(self.workdir, *parts)

    @property
    def exit_dir(self) -> str:
        """Where runners leave start markers and exit files."""
        return self.path("exit")

    def create(self, environ: dict[str, str]) -> None:
        """Makes the folders and the environment script the jobs source."""
        for folder in ("exit", "subs", "out"):
            os.makedirs(self.path(folder), mode=0o700, exist_ok=True)
        write_atomic(self.path("env.sh"), environment_script(environ).encode(), sync=False)

    def exit_files(self) -> frozenset[str]:
        """The names of the files in the exit folder now, with those in its
        pilots' claims folders as ``FOLDER/NAME`` (none if it is missing)."""
        try:
            names = os.listdir(self.exit_dir)
        except OSError:
            return frozenset()
        found = set(names)
        for folder in names:
            if wire.is_claims_folder(folder):
                try:
                    found.update(f"{folder}/{name}"
                                 for name in os.listdir(os.path.join(self.exit_dir, folder)))
                except OSError:
                    continue  # removed meanwhile: every entry in it was settled
        return frozenset(found)

    def write_submission(self, sub: Submitted, request: Request, settings: ClusterSettings,
                         dialect: SchedulerDialect) -> tuple[Submission, str]:
        """Writes a submission's manifest and its (executable) job script.

        Returns:
            the job to submit, and the text of its script.

        Raises:
            ResourceError: the adapter cannot express the request (nothing is written).
        """
        script = self.path("subs", f"{sub.sub_id}.sh")
        job = Submission(settings.job_name, script, self.path("out", sub.sub_id), sub.tasks,
                         request, self.path())
        data = manifest(sub, settings, self.exit_dir, dialect.index_variable, request.walltime)
        manifest_path = self.path("subs", f"{sub.sub_id}.json")
        text = job_script(dialect.directives(job), sub.sub_id, sub.tasks,
                          dialect.index_variable, settings, self.exit_dir, self.path("env.sh"),
                          manifest_path, os.getcwd(), sys.executable,
                          "jobtree.batch.pilot_runner" if sub.pilot else "jobtree.batch.runner")
        write_atomic(manifest_path, json.dumps(data).encode(), sync=False)
        write_atomic(script, text.encode(), sync=False)
        os.chmod(script, 0o700)
        return job, text

    def output_says(self, dialect: SchedulerDialect,
                    entry: Entry) -> tuple[NativeState, str] | None:
        """What the end of the scheduler's output of the task that ran
        ``entry`` says of how it ended (:meth:`SchedulerDialect.output_state`)."""
        if entry.sub is None:
            return None
        index = output_index(entry)
        if index is None and entry.sub.tasks > 1:
            return None
        name = dialect.output_name(entry.sub.sub_id, index)
        try:
            with open(self.path("out", name), "rb") as handle:
                handle.seek(0, os.SEEK_END)
                handle.seek(max(0, handle.tell() - OUTPUT_TAIL))
                text = handle.read().decode(errors="replace")
        except OSError:
            return None
        return dialect.output_state(text)

    def exit_update(self, dialect: SchedulerDialect, entry: Entry, record: dict[str, Any],
                    native_id: str | None) -> Update:
        """:func:`update_from_exit`, and when the runner was stopped by a signal
        jobtree did not send, what the task's output says of who sent it:
        slurmstepd writes ``... DUE TO PREEMPTION ***`` (``TIME LIMIT``, ``NODE
        FAILURE``) into it before it signals the job."""
        update = update_from_exit(entry, record, native_id)
        if update.reason is not ExitReason.KILLED or entry.killed:
            return update
        # the runner's copy of the output's end: a requeued task's output is
        # rewritten when it starts again
        said = (dialect.output_state(record["said"]) if record.get("said")
                else self.output_says(dialect, entry))
        if said is None or said[0] not in _DEFINITE:
            return update
        return dataclasses.replace(update, reason=_REASONS[said[0]],
                                   message=f"{dialect.name} stopped job {native_id}: {said[1]!r}")

    def settle(self, dialect: SchedulerDialect, entry: Entry, row: NativeJob | None,
               native_id: str | None) -> Update:
        """The update of an entry whose task ended: from its exit file if the
        runner wrote one, else from the scheduler's ``row`` and the task's output
        (:func:`update_for_lost`)."""
        record = self.read(f"{entry.key}.exit")
        if record is not None:
            return self.exit_update(dialect, entry, record, native_id)
        return update_for_lost(dialect.name, entry, row, native_id,
                               self.output_says(dialect, entry))

    def read(self, name: str) -> dict[str, Any] | None:
        """A marker or exit file of the exit folder (None if absent or partial)."""
        return wire.read_marker(os.path.join(self.exit_dir, name))

    def claim_killed(self, key: str) -> bool:
        """Claims an entry for no one, so that no runner starts it; False if
        a runner claimed it first."""
        return wire.claim(self.exit_dir, key, {"killed": True})

    def ask_kill(self, key: str) -> None:
        """Asks the runner that claimed an entry to stop it."""
        write_atomic(wire.marker(self.exit_dir, key, "kill"), b"kill", sync=False)

    def write_job_id(self, sub_id: str, job_id: str) -> None:
        """Records the scheduler's id of a submission (what a restart adopts)."""
        write_atomic(self.path("subs", f"{sub_id}.id"), job_id.encode(), sync=False)

    def remove_submission(self, sub: Submitted) -> None:
        """Removes a submission's files and its entries' markers (a pilot's
        stay while its queue is read: another pilot would claim them again)."""
        for entry in sub.entries if not sub.pilot else ():
            for kind in ("run", "exit", "kill"):
                remove(os.path.join(self.exit_dir, f"{entry.key}.{kind}"))
        for index in range(1, sub.tasks + 1):
            remove(os.path.join(self.exit_dir, f"{sub.sub_id}-{index}.up"))
        for suffix in (".sh", ".json", ".id"):
            remove(self.path("subs", sub.sub_id + suffix))
