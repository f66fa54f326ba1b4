"""``--batchSystem drmaa``: the cluster base, speaking DRMAA 1.0 instead of commands.

DRMAA is a C library a site installs for its scheduler (``libdrmaa.so``),
found through ``DRMAA_LIBRARY_PATH`` and loaded by the ``drmaa`` package
(``pip install 'jobtree[drmaa]'``). It takes the place of the scheduler's
commands only: :class:`DrmaaBatchSystem` is a
:class:`~jobtree.batch.cluster.ClusterBatchSystem`, so packing, exit files,
lost launches, requeues and adoption after a master restart are the same as
on every cluster. What differs is in :class:`DrmaaScheduler`:

- **The library lives in an agent** (:mod:`jobtree.batch.drmaa_agent`), a
  process of its own that preloads what the library needs (Grid Engine's
  jemalloc) and whose crash is not the master's.
- **Submitting** is ``runJob``, and an array is a DRMAA bulk job
  (``runBulkJobs``) where the implementation says which variable holds a
  task's index; the resources go in the native specification, written by
  the adapter of the scheduler behind the library (``drmsInfo``:
  :data:`FLAVOURS`).
- **One status request per poll**: the agent answers it with the jobs of
  its session that ended (``wait`` without waiting, and their exit status,
  signal and usage, the accounting) and the state of each live task.
- **Cancelling** is ``control(TERMINATE)``, by task or whole bulk job.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import selectors
import subprocess
import sys
import re
import threading
from typing import Any, Callable, Sequence

from ..errors import BatchSystemError, SchedulerCommandError
from . import poll
from .adapter import SchedulerDialect
from .cluster import ClusterBatchSystem
from .native import NativeJob, NativeState, Submission
from .scheduler import Scheduler
from .settings import ClusterSettings

logger = logging.getLogger(__name__)

#: the scheduler behind a DRMAA library, from words of its ``drmsInfo``:
#: (words, module, adapter class, the options DRMAA's job template sets itself)
FLAVOURS: tuple[tuple[tuple[str, ...], str, str, frozenset[str]], ...] = (
    (("sge", "grid engine", "gridengine", "uge", "ogs", "oge", "age"), "gridengine",
     "GridEngine", frozenset({"-N", "-S", "-o", "-e", "-j", "-wd", "-cwd", "-t"})),
    (("slurm",), "slurm", "Slurm",
     frozenset({"--job-name", "--output", "--error", "--array", "--chdir", "--open-mode"})),
    (("pbs pro", "pbspro", "openpbs"), "pbspro", "PBSPro",
     frozenset({"-N", "-o", "-e", "-j", "-J", "-d", "-S"})),
    (("torque",), "torque", "Torque", frozenset({"-N", "-o", "-e", "-j", "-t", "-d", "-S"})),
    (("lsf",), "lsf", "LSF", frozenset({"-J", "-o", "-e", "-cwd"})),
)

#: DRMAA's job states (``drmaa.JobState``) as jobtree's
_STATES = {"undetermined": NativeState.UNKNOWN, "queued_active": NativeState.QUEUED,
           "system_on_hold": NativeState.QUEUED, "user_on_hold": NativeState.QUEUED,
           "user_system_on_hold": NativeState.QUEUED, "running": NativeState.RUNNING,
           "system_suspended": NativeState.RUNNING, "user_suspended": NativeState.RUNNING,
           "user_system_suspended": NativeState.RUNNING, "done": NativeState.COMPLETED,
           "failed": NativeState.FAILED}
#: ended jobs kept for the accounting of a lost target
_KEEP_ENDED = 20000


def flavour_of(drms: str) -> tuple[SchedulerDialect | None, frozenset[str]]:
    """The adapter of the scheduler a DRMAA library's ``drmsInfo`` names, and
    the options its native specification leaves to DRMAA (None: not known)."""
    words = drms.lower()
    tokens = set(re.split(r"[^a-z]+", words))
    for names, module, cls, drop in FLAVOURS:
        if any((name in words) if " " in name else (name in tokens) for name in names):
            dialect = getattr(importlib.import_module(f".{module}", __package__), cls)()
            return dialect, drop
    return None, frozenset()


class DrmaaDialect(SchedulerDialect):
    """What DRMAA needs of an adapter: task ids, the index variable, and the
    native specification (from the adapter of the scheduler behind it).

    Args:
        native: that adapter, or None for a scheduler jobtree has none for (then
            each submission is one plain job, and requests other than the
            cluster config's ``extra`` are not said).
        drop: the options of ``native``'s directives that DRMAA sets itself.
    """

    name = "drmaa"

    def __init__(self, native: SchedulerDialect | None = None,
                 drop: frozenset[str] = frozenset()) -> None:
        self.native = native
        self.drop = drop
        self.index_variable = native.index_variable if native else ""
        self.min_array = native.min_array if native else sys.maxsize
        if native is not None:
            self.output_signs = native.output_signs

    def native_specification(self, job: Submission) -> str:
        """The options of ``job``'s request, as the native specification.

        Raises:
            ResourceError: the request cannot be said (the adapter says why).
        """
        if self.native is None:
            return " ".join(job.request.extra)
        prefix = self.native.directive_prefix
        kept = []
        for line in self.native.directives(job):
            option = line.removeprefix(prefix).strip()
            if option and option.split(None, 1)[0].split("=", 1)[0] not in self.drop:
                kept.append(option)
        return " ".join(kept)

    def directives(self, job: Submission) -> list[str]:
        return [f"# DRMAA native specification: {self.native_specification(job)}"]

    def task_id(self, job_id: str, index: int | None) -> str:
        if index is None or self.native is None:
            return job_id
        return self.native.task_id(job_id, index)

    def job_of(self, ids: Sequence[str]) -> str:
        """The job id whose tasks 1..n are the ids a bulk submission returned.

        Raises:
            ValueError: they are not tasks of one job as :meth:`task_id` spells them.
        """
        first = ids[0]
        for cut in range(len(first), 0, -1):
            if all(self.task_id(first[:cut], i) == job for i, job in enumerate(ids, 1)):
                return first[:cut]
        raise ValueError(f"the bulk job's ids {list(ids[:3])} are not tasks of one job as "
                         f"jobtree spells them; set arrays = no in the [drmaa] section of "
                         f"the cluster config")

    # DRMAA has no commands: the scheduler (DrmaaScheduler) never calls these
    def submit_command(self, job: Submission) -> tuple[list[str], str | None]:
        raise NotImplementedError("DRMAA submits through its library")

    def parse_submit(self, stdout: str) -> str:
        raise NotImplementedError("DRMAA submits through its library")

    def status_command(self, name: str) -> list[str]:
        return []

    def parse_status(self, stdout: str) -> list[NativeJob]:
        return []

    def cancel_command(self, ids: Sequence[str]) -> list[str]:
        return []

    def cancel_by_name_command(self, name: str) -> list[str] | None:
        return None


def unavailable(kind: str, detail: str) -> BatchSystemError:
    """The one-paragraph error for a DRMAA session that cannot start."""
    if kind == "package":
        what = ("the drmaa Python package is not installed here: install it with "
                "pip install 'jobtree[drmaa]'")
    elif kind == "library":
        what = ("the DRMAA library cannot be loaded: set DRMAA_LIBRARY_PATH to the full path "
                "of the site's DRMAA 1.0 library (libdrmaa.so; on Grid Engine "
                "$SGE_ROOT/lib/<arch>/libdrmaa.so, or Debian's "
                "/usr/lib/gridengine-drmaa/lib/libdrmaa.so.1.0; ask the site which one)")
    else:
        what = ("the DRMAA library loaded but could not start a session: set what the "
                "scheduler's commands need (Grid Engine: SGE_ROOT and SGE_CELL; some sites "
                "need a `module load` first), and run on a machine that can submit jobs")
    return BatchSystemError(
        f"--batchSystem drmaa cannot be used: {what}. The library said: {detail.strip()} "
        f"Nothing was run; a tree that exists is left as it is.")


class Agent:
    """The agent process (:mod:`jobtree.batch.drmaa_agent`) and its pipe.

    Args:
        timeout: seconds an answer may take before the agent is stopped (the
            request then fails as transient: the next poll tries again).
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._process: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()
        #: what the agent's first line said
        self.hello: dict[str, Any] = {}

    def start(self) -> dict[str, Any]:
        """Starts the agent if it is not running; returns its first line.

        Raises:
            BatchSystemError: the session cannot start (what to set).
        """
        with self._lock:
            if self._process is not None and self._process.poll() is None:
                return self.hello
            self._process = subprocess.Popen(
                [sys.executable, "-m", "jobtree.batch.drmaa_agent"], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=None, text=True, bufsize=1,
                env={**os.environ, "PYTHONPATH": os.pathsep.join(
                    p for p in (_package_root(), os.environ.get("PYTHONPATH")) if p)})
            first = self._read()
            if first is None or "error" in first:
                self._stop()
                raise unavailable((first or {}).get("kind", "session"),
                                  (first or {}).get("error", "(the agent said nothing)"))
            self.hello = first
            return first

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        """One request, one answer.

        Raises:
            SchedulerCommandError: no answer in time (transient), or the library refused.
        """
        self.start()
        logger.debug("DRMAA request: %s", request)
        with self._lock:
            assert self._process is not None and self._process.stdin is not None
            try:
                self._process.stdin.write(json.dumps(request) + "\n")
                self._process.stdin.flush()
            except OSError:
                pass  # read below finds it gone
            answer = self._read()
            if answer is None:
                self._stop()
                raise SchedulerCommandError(["drmaa", request["op"]], None,
                                            f"the DRMAA agent gave no answer within "
                                            f"{self.timeout:g}s", transient=True)
        logger.debug("DRMAA answer: %s", answer)
        if "error" in answer:
            error = str(answer["error"])
            raise SchedulerCommandError(["drmaa", request["op"]], 1, error,
                                        transient=_transient(error))
        return answer

    def _read(self) -> dict[str, Any] | None:
        process = self._process
        assert process is not None and process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            if not selector.select(self.timeout):
                return None
        line = process.stdout.readline()
        try:
            answer = json.loads(line)
        except ValueError:
            return None
        return answer if isinstance(answer, dict) else None

    def _stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        try:
            if process.stdin is not None:
                process.stdin.close()
            process.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            process.kill()
            process.wait()

    def close(self) -> None:
        """Ends the agent (its session ends; the jobs go on)."""
        with self._lock:
            self._stop()


def _package_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _transient(error: str) -> bool:
    text = error.lower()
    return any(word in text for word in ("drmcommunication", "communication", "timeout",
                                         "try again", "tryLater".lower(), "connect"))


def _ended_row(job: str, info: dict[str, Any]) -> NativeJob:
    """A row of the accounting from what ``wait`` said of an ended job."""
    if info.get("aborted"):
        state, said = NativeState.FAILED, "aborted before it ran"
    elif info.get("signal"):
        state, said = NativeState.FAILED, f"killed by {info['signal']}"
    else:
        code = info.get("code")
        state = NativeState.COMPLETED if code == 0 else NativeState.FAILED
        said = f"exit status {code}"
    return NativeJob(job, state, exit_code=info.get("code"), elapsed=info.get("wall"),
                     said=f"DRMAA: {said}")


class DrmaaScheduler(Scheduler):
    """The scheduler's calls through a DRMAA session (see the module doc).

    Args:
        dialect: the DRMAA dialect.
        settings: the job name, the job folder and the time-out.
        live: the scheduler ids of every task that may still be alive (the
            batch system's submissions): what a poll asks the state of.
        agent: the agent (injectable for tests).
    """

    def __init__(self, dialect: DrmaaDialect, settings: ClusterSettings,
                 live: Callable[[], list[str]], agent: Agent | None = None) -> None:
        super().__init__(dialect, settings)
        self.drmaa = dialect
        self.agent = agent or Agent(settings.command_timeout)
        self._live = live
        self._workdir = settings.workdir
        self._ended: dict[str, NativeJob] = {}

    def check(self) -> None:
        self.agent.start()

    def list(self, attempts: int | None = None) -> dict[str, NativeJob]:
        answer = self.agent.ask({"op": "status", "ids": self._live()})
        for job, info in answer.get("ended", {}).items():
            self._ended[job] = _ended_row(job, info)
        while len(self._ended) > _KEEP_ENDED:
            del self._ended[next(iter(self._ended))]
        rows = {}
        for job, state in answer.get("states", {}).items():
            native = _STATES.get(state)
            # an ended job is gone from the listing; its record is the accounting
            if native is not None and (native.alive or (
                    native is NativeState.FAILED and job not in self._ended)):
                rows[job] = NativeJob(job, native, name=self.job_name)
        return rows

    def submit(self, job: Submission, script: str) -> str:
        output = (f"{job.log_stem}.$drmaa_incr_ph$.out" if job.is_array
                  else f"{job.log_stem}.out")
        answer = self.agent.ask({"op": "submit", "name": job.name, "command": "/bin/sh",
                                 "args": [job.script], "workdir": job.workdir,
                                 "output": output, "tasks": job.tasks,
                                 "native": self.drmaa.native_specification(job)})
        ids = [str(i) for i in answer["ids"]]
        if not job.is_array:
            return ids[0]
        try:
            return self.drmaa.job_of(ids)
        except ValueError:
            self.cancel(ids)
            raise

    def cancel(self, ids: Sequence[str]) -> None:
        if not ids:
            return
        try:
            self.agent.ask({"op": "terminate", "ids": list(ids)})
        except SchedulerCommandError as err:
            logger.warning("could not cancel %s jobs: %s", self.name, err)

    def cancel_tree(self) -> int:
        """Cancels the jobs of every submission in the job folder (this
        master's and those of one that is gone), whole bulk jobs at once;
        returns how many tasks were alive."""
        jobs: dict[str, list[str]] = {}  # job id -> its task ids
        subs = os.path.join(self._workdir, "subs") if self._workdir else None
        for name in sorted(os.listdir(subs)) if subs and os.path.isdir(subs) else ():
            if not name.endswith(".id"):
                continue
            try:
                with open(os.path.join(subs, name), encoding="utf-8") as handle:
                    job = handle.read().strip()
                with open(os.path.join(subs, name[:-3] + ".json"), encoding="utf-8") as handle:
                    tasks = int(json.load(handle).get("tasks") or 1)
            except (OSError, ValueError, AttributeError):
                continue
            if job:
                jobs[job] = [self.drmaa.task_id(job, i if tasks > 1 else None)
                             for i in range(1, tasks + 1)]
        for task in self._live():
            jobs.setdefault(task, [task])
        states = self.agent.ask({"op": "status", "ids": sorted(
            {t for tasks in jobs.values() for t in tasks})})["states"]
        alive = {t for t, state in states.items()
                 if (native := _STATES.get(state)) is not None and native.alive}
        doomed = sorted(job for job, tasks in jobs.items() if alive.intersection(tasks))
        if doomed:
            self.agent.ask({"op": "terminate", "ids": doomed})
        return len(alive)

    def accounting(self, ids: Sequence[str]) -> dict[str, NativeJob]:
        return {job: self._ended[job] for job in ids if job in self._ended}

    def close(self) -> None:
        """Ends the agent."""
        self.agent.close()


class DrmaaBatchSystem(ClusterBatchSystem):
    """The cluster base with a :class:`DrmaaScheduler` (see the module doc).

    Args:
        settings: the cluster settings (section ``[drmaa]`` of the config).
        agent: the agent (injectable for tests); started by
            :meth:`check_commands`, which learns the scheduler behind it.
    """

    def __init__(self, settings: ClusterSettings, agent: Agent | None = None,
                 **kwargs: Any) -> None:
        self._agent = agent or Agent(settings.command_timeout)
        super().__init__(DrmaaDialect(), settings, **kwargs)
        self._use(DrmaaDialect())

    def _use(self, dialect: DrmaaDialect) -> None:
        self.dialect = dialect
        self.scheduler = DrmaaScheduler(dialect, self.settings, self._live_ids, self._agent)

    def check_commands(self) -> None:
        """Starts the DRMAA session, and takes the adapter of the scheduler behind it.

        Raises:
            BatchSystemError: the library or the session cannot start (what to set).
        """
        hello = self._agent.start()
        native, drop = flavour_of(hello.get("drms", "") + " " + hello.get("implementation", ""))
        if native is None:
            logger.warning("jobtree has no adapter for the scheduler behind DRMAA (%s): each "
                           "submission is one job, and only the cluster config's extra "
                           "options are asked", hello.get("drms"))
        self._use(DrmaaDialect(native, drop))

    def _live_ids(self) -> list[str]:
        with self._lock:
            return [job for sub in self._subs.values() if sub.job_id
                    for job in poll.task_ids(sub, self.dialect.task_id,
                                             set(range(1, sub.tasks + 1)) - sub.ended_tasks)]

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._agent.close()


def create(settings: ClusterSettings) -> DrmaaBatchSystem:
    """The DRMAA batch system for ``settings``, its session started.

    Raises:
        BatchSystemError: the library or the session cannot start.
    """
    system = DrmaaBatchSystem(settings)
    system.check_commands()
    return system

