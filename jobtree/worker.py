"""Runs one issued job on a node: ``python -m jobtree.worker TREE JOB ATTEMPT``.

The worker loads the target, runs it with fresh temp dirs, and writes one
result file (atomically) holding everything the run added to the tree. When
the target added no children, it runs the follow-on itself as well while the
``--jobTime`` budget lasts (chaining). It never touches the index.
"""

from __future__ import annotations

import _locale
import _signal
import dataclasses
import fcntl
import functools
import json
import logging
import os
import pickle
import resource
import shutil
import signal
import sys
import time
import traceback
from typing import Any

from . import promise, serialize
from .errors import JobTreeError, ResourceError, TargetDefinitionError, UnpicklableTargetError
from .paths import (LOCAL_ROOT_LEVELS, TreePaths, local_temp_root, make_private_dirs,
                    write_atomic)
from .promise import PromiseError
from .resources import Resources
from .target import Target, check_fits, class_name
from .workerjob import EXIT_FAILED, EXIT_MEMORY, EXIT_SETUP

logger = logging.getLogger(__name__)

_DEFINITION_ERRORS = (ResourceError, TargetDefinitionError, UnpicklableTargetError,
                      PromiseError)
# variables of the node and the scheduler that the stored environment must not override
_NODE_PREFIXES = ("SLURM_", "SGE_", "PBS_", "LSB_", "LSF_", "JOB_", "JOBTREE_")
_NODE_VARIABLES = ("TMPDIR", "HOSTNAME", "NSLOTS", "NHOSTS", "OMP_NUM_THREADS")


#: the worker's local temp root, locked while the worker lives (its descriptor)
_held: dict[str, int] = {}


def _hold(root: str) -> None:
    """Locks the worker's local temp root (``<job>.<attempt>``) until it exits,
    so that a job starting on this node does not take it for one a killed
    worker left (:func:`jobtree.batch.runner.clean_stale`). It is made, and
    locked, only when a target asks for a local temp dir: most tiny targets
    never do. Made just now, it is too young to be taken for stale before
    the lock holds."""
    if root in _held:
        return
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return
    _held[root] = fd


class RunContext:
    """What a running target can reach: temp dirs, messages, the limits."""

    def __init__(self, paths: TreePaths, chain: int, local_dir: str,
                 defaults: Resources, limits: Resources,
                 granted: Resources | None = None) -> None:
        self._paths = paths
        self._chain = chain
        self._local_dir = local_dir
        self.defaults = defaults
        self.limits = limits
        #: what the job was given (a try after one that ran out of memory or
        #: time is given more than the target asked), for its first target
        self.granted = granted
        self.messages: list[tuple[int, str]] = []
        self.local_made = False  # whether the run asked for its local temp dir

    def local_temp_dir(self) -> str:
        # $TMPDIR/jobtree-<uid>/<tree>/<job>.<attempt>/<n>: each level private
        make_private_dirs(self._local_dir, LOCAL_ROOT_LEVELS + 2)
        _hold(os.path.dirname(self._local_dir))
        self.local_made = True
        return self._local_dir

    def global_temp_dir(self) -> str:
        path = self._paths.chain_dir(self._chain)
        os.makedirs(path, mode=0o700, exist_ok=True)
        return path

    def check_fits(self, target: Target) -> None:
        check_fits(target, target.getResources().with_defaults(self.defaults), self.limits,
                   "the batch system (--maxCpus/--maxMemory)")


def _resources(data: dict[str, Any] | None) -> Resources:
    return Resources.from_dict(data)


@functools.lru_cache(maxsize=None)
def _libc() -> Any:
    """The C library (loaded once; a warm fork server's children share it)."""
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


@functools.lru_cache(maxsize=None)
def _hostname() -> str:
    return os.uname().nodename


def die_with_parent(parent: int) -> None:
    """Asks Linux to SIGTERM this process when its parent ``parent`` dies
    (so workers do not outlive a killed master for long)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        _libc().prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl
        raise SystemExit(EXIT_SETUP)


def read_config(paths: TreePaths) -> dict[str, Any]:
    """The worker config the master wrote for the tree."""
    with open(paths.config, encoding="utf-8") as handle:
        return dict(json.load(handle))


def prepare_process(config: dict[str, Any]) -> None:
    """Gives this process the environment, ``sys.path``, folder and logging of
    the process that started the tree (what the scheduler set for this job on
    this node stays)."""
    wanted = dict(config["environ"])
    wanted.update((k, v) for k, v in os.environ.items() if k.startswith(_NODE_PREFIXES)
                  or k in _NODE_VARIABLES)
    for key in [k for k in os.environ if k not in wanted]:
        del os.environ[key]
    for key, value in wanted.items():
        if os.environ.get(key) != value:
            os.environ[key] = value
    for entry in reversed(config["sys_path"]):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    try:
        os.chdir(config["cwd"])
    except OSError:
        logger.warning("cannot enter %s; running in %s", config["cwd"], os.getcwd())
    logging.basicConfig(level=config["log_level"], stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


#: the signals whose handlers a chained target gets back (all that can be set)
_SIGNALS = tuple(int(s) for s in signal.valid_signals()
                 if s not in (signal.SIGKILL, signal.SIGSTOP))


@dataclasses.dataclass(frozen=True)
class ProcessState:
    """What a target may change in its process that the next target chained
    in the same worker must not inherit: the working directory, the
    environment (and the time zone and locale that follow from it), the
    umask, ``sys.path`` and ``sys.argv``, the signal handlers and mask, a
    pending ``alarm()``/``setitimer`` and ``tempfile.tempdir``. Taken before
    the first target, put back before each chained one, so that a chained
    follow-on starts as it would in a job of its own. (Modules, threads, open
    files and resource limits cannot be put back cheaply or safely: the guide
    says so.)
    """

    cwd: str | None
    environ: dict[str, str]
    umask: int
    sys_path: tuple[str, ...]
    argv: tuple[str, ...]
    handlers: dict[int, Any]
    blocked: frozenset[int]
    timer: tuple[float, float]
    tempdir: str | None
    locale: str | None

    @classmethod
    def capture(cls) -> ProcessState:
        """The state of this process now."""
        try:
            cwd: str | None = os.getcwd()
        except OSError:
            cwd = None
        umask = os.umask(0o077)
        os.umask(umask)
        handlers = {}
        for sig in _SIGNALS:  # _signal: signal's wrappers make enums, 30 times slower
            handler = _signal.getsignal(sig)
            if handler is not None:  # None: set outside Python, left alone
                handlers[sig] = handler
        tempfile_module = sys.modules.get("tempfile")
        return cls(cwd=cwd, environ=dict(os.environ), umask=umask, sys_path=tuple(sys.path),
                   argv=tuple(sys.argv), handlers=handlers,
                   blocked=frozenset(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, ())),
                   timer=signal.getitimer(signal.ITIMER_REAL),
                   tempdir=getattr(tempfile_module, "tempdir", None), locale=_locale_now())

    def restore(self) -> None:
        """Puts this process back in this state (what can be put back)."""
        if self.cwd is not None:
            try:
                os.chdir(self.cwd)
            except OSError as err:
                logger.warning("cannot go back to %s (%s) before the chained target",
                               self.cwd, err.strerror)
        zone = os.environ.get("TZ")
        for key in [k for k in os.environ if k not in self.environ]:
            del os.environ[key]
        for key, value in self.environ.items():
            if os.environ.get(key) != value:
                os.environ[key] = value
        if os.environ.get("TZ") != zone:
            time.tzset()  # the C library's idea of the local time follows TZ
        if self.locale is not None and _locale_now() != self.locale:
            try:
                _locale.setlocale(_locale.LC_ALL, self.locale)
            except _locale.Error:
                pass
        os.umask(self.umask)
        sys.path[:] = self.sys_path
        sys.argv[:] = self.argv
        for sig, handler in self.handlers.items():
            if _signal.getsignal(sig) != handler:
                try:
                    _signal.signal(sig, handler)
                except (OSError, ValueError, TypeError):
                    pass
        signal.pthread_sigmask(signal.SIG_SETMASK, self.blocked)
        if self.timer == (0.0, 0.0):
            signal.setitimer(signal.ITIMER_REAL, 0)  # cancel an alarm a target left
        tempfile_module = sys.modules.get("tempfile")
        if tempfile_module is not None:
            tempfile_module.tempdir = self.tempdir


def _locale_now() -> str | None:
    """The process's C locale (all categories), or None if it cannot be read."""
    try:
        return str(_locale.setlocale(_locale.LC_ALL, None))
    except _locale.Error:
        return None


class Terminated(BaseException):
    """The worker was asked to stop (SIGTERM: a kill, or the master died)."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated(signum)


class Worker:
    """One execution of one issued job.

    Args:
        tree: the tree's folder.
        job_id: the job.
        attempt: its attempt number.
        config: the tree's worker config, when the caller has read it already
            (a warm fork server); else it is read from the tree.
    """

    def __init__(self, tree: str, job_id: int, attempt: int,
                 config: dict[str, Any] | None = None) -> None:
        self.paths = TreePaths(tree)
        self.job_id = job_id
        self.attempt = attempt
        self.run_id = os.urandom(16).hex()
        self.chained: str | None = None  # the chained follow-on running now, if any
        self.config = config if config is not None else read_config(self.paths)
        self.defaults = _resources(self.config["defaults"])
        self.limits = _resources(self.config["limits"])
        self.local_root = os.path.join(local_temp_root(self.config["tree_id"]),
                                       f"{job_id}.{attempt}")

    def prepare(self) -> None:
        """Gives the process the environment of the process that started the tree."""
        prepare_process(self.config)

    def run(self, job: dict[str, Any] | None = None) -> int:
        """Runs the job (and chained follow-ons); returns the exit status.

        Args:
            job: the job's input, when the batch system handed it over; else
                it is read from the tree's job input file.
        """
        started = time.time()
        if job is None:
            with open(self.paths.job_input(self.job_id), "rb") as handle:
                job = pickle.load(handle)
        print(f"jobtree: job {self.job_id} attempt {self.attempt} on {_hostname()} "
              f"pid {os.getpid()}: {job['description']}", file=sys.stderr, flush=True)
        steps: list[dict[str, Any]] = []
        data, resources = job["pickle"], _resources(job["resources"])
        wait = started - job["issued_at"] if job.get("issued_at") else None
        values: dict[str, tuple[str, Any]] = dict(job.get("values") or {})
        state = ProcessState.capture()
        while True:
            step, followon = self._run_one(data, job["chain"], wait, len(steps), values,
                                           resources)
            steps.append(step)
            if step["token"] is not None:  # what a chained follow-on may need
                values[step["token"]] = self._handed(step["value"])  # stored: promised
            if followon is None or step["children"]:
                break
            if not self._may_chain(_resources(followon["resources"]), resources,
                                   time.time() - started):
                break
            if not set(followon["needs"]) <= set(values):
                break  # it needs values the master holds
            step["followon"] = None  # run here, as the next step
            data, wait = followon["pickle"], 0.0
            state.restore()  # as it would start in a job of its own
            logger.debug("chaining the follow-on %s", followon["description"])
        result = {"job": self.job_id, "attempt": self.attempt, "ok": True,
                  "run_id": self.run_id, "steps": steps}
        self.write_result(pickle.dumps(result, 5))
        return 0

    def write_result(self, data: bytes) -> None:
        """Writes the job's result: whole or absent, and synced first when it
        reaches the master through another machine's file system. A worker
        that a cluster node's runner forked (``defer_results``: a pilot's, or an
        array task's) leaves it unsynced under :meth:`TreePaths.pending_result`
        instead; the runner syncs the results
        of several targets at once and then renames them into place, before
        their exit files say they ended."""
        if self.config.get("defer_results"):
            fd = os.open(self.paths.pending_result(self.job_id, self.attempt),
                         os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            return
        write_atomic(self.paths.result(self.job_id, self.attempt), data,
                     sync=self.config.get("sync_results", True))

    def _may_chain(self, wanted: Resources, granted: Resources, elapsed: float) -> bool:
        """Whether a follow-on may run in this job: the --jobTime budget is not
        spent and it fits what this job was given (cores, memory, and the time
        estimate). Neither of them may have a hard timeLimit: the job's limit
        is not the follow-on's."""
        wanted = wanted.with_defaults(self.defaults)
        return (elapsed < float(self.config["job_time"])
                and wanted.time_limit is None and granted.time_limit is None
                and (wanted.cpu or 1) <= (granted.cpu or 1)
                and (wanted.memory or 0) <= (granted.memory or 0)
                and (granted.time is None or elapsed + (wanted.time or 0) <= granted.time))

    def _handed(self, stored: tuple[str, Any]) -> tuple[str, Any]:
        """A value this run stored, as the master would hand it to a job."""
        kind, data = stored
        return (kind, os.path.join(self.paths.values, data) if kind == "file" else data)

    def _run_one(self, data: bytes, chain: int, wait: float | None, index: int,
                 values: dict[str, tuple[str, Any]], granted: Resources
                 ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        with promise.resolving(values):
            target: Target = serialize.loads(data)
        description = target._jt_describe()
        if index > 0:
            self.chained = description
        local_dir = os.path.join(self.local_root, str(index))
        context = RunContext(self.paths, chain, local_dir, self.defaults, self.limits,
                             granted if index == 0 else None)
        target._jt_runtime = context
        stats_wanted = bool(self.config["stats"])
        usage_before = _cpu_seconds() if stats_wanted else 0.0
        began = time.time()
        try:
            value = target.run()
            children = [_new_job(c) for c in target._jt_children]
            followon = target._jt_followon
            follow = _new_job(followon) if followon is not None else None
            token = target.__dict__.get("_jt_token")
            _check_needs(description, token, children, follow)
            stored = self._store_value(value, token, description, index, context.messages)
        finally:
            target._jt_runtime = None
            if context.local_made:
                shutil.rmtree(local_dir, ignore_errors=True)
        stats = None
        if stats_wanted:
            stats = {"wall": time.time() - began, "cpu": _cpu_seconds() - usage_before,
                     "wait": wait, "memory": _peak_memory(), "started": began}
        step = {"cls": class_name(target), "description": description,
                "children": children, "followon": follow, "messages": context.messages,
                "stats": stats, "value": stored, "token": token,
                "priority": target.getPriority()}
        return step, follow

    def _store_value(self, value: Any, token: str | None, description: str, index: int,
                     messages: list[tuple[int, str]]) -> tuple[str, Any] | None:
        """Pickles what run() returned: ("inline", bytes) for the result file,
        ("file", name) for a large value written to the tree's values folder,
        or None when there is nothing to keep.

        A value that cannot be pickled and is not promised is kept as a
        :class:`promise.Unstored` note (reading it raises ReturnValueError),
        and a warning goes to ``messages``: to the master's log and the status.
        """
        if value is None and token is None:
            return None
        try:
            data = serialize.dumps(value)
        except Exception as err:  # noqa: BLE001 - any pickling failure is reported
            kind, why = promise.type_name(value), f"{type(err).__name__}: {err}"
            if token is not None:
                raise UnpicklableTargetError(
                    f"{description}.run() returned a {type(value).__name__}, which cannot be "
                    f"pickled ({why}). Its value is promised with rv(), so it must be stored: "
                    f"return picklable data (numbers, strings, lists, dicts, file names) "
                    f"instead.") from err
            logger.warning("%s.run() returned a %s, which cannot be pickled (%s); it is "
                           "not stored", description, kind, why)
            messages.append((logging.WARNING, (
                f"run() returned a {kind}, which cannot be pickled ({why}); the value is not "
                f"stored, and getReturnValue for this target raises ReturnValueError. "
                f"Return picklable data (numbers, strings, lists, dicts, file names), or "
                f"None.")))
            data = serialize.dumps(promise.Unstored(description, kind, why))
        if len(data) <= promise.INLINE_LIMIT:
            return ("inline", data)
        os.makedirs(self.paths.values, exist_ok=True)
        path = promise.value_file(self.paths.values, self.job_id, self.attempt, index)
        # (a pilot's sync of the file system covers it, before the result that
        # names it is published)
        write_atomic(path, data, sync=self.config.get("sync_results", True)
                     and not self.config.get("defer_results"))
        return ("file", os.path.basename(path))



def _new_job(target: Target) -> dict[str, Any]:
    """A target the run added, as the result file carries it: with the tokens
    of the promises it holds (its needs) and its own promise token, if any."""
    data, needs, token = promise.dump_with_needs(target)
    return {"cls": class_name(target), "description": target._jt_describe(),
            "resources": target.getResources().to_dict(), "pickle": data,
            "needs": needs, "token": token, "priority": target.getPriority()}


def _check_needs(description: str, token: str | None, children: list[dict[str, Any]],
                 followon: dict[str, Any] | None) -> None:
    """Refuses a promise passed to a target that may run before the promised one.

    A child may use the promise of the target that adds it; the follow-on may
    use that one and those of the children it waits for.

    Raises:
        PromiseError: naming the promise and the target it went to.
    """
    own = {token} if token else set()
    siblings = {c["token"]: c["description"] for c in children if c["token"]}
    for job, allowed in [(c, own) for c in children] + (
            [(followon, own | set(siblings))] if followon else []):
        for needed, promised in job["needs"].items():
            if needed in allowed:
                continue
            if needed in siblings:
                why = (f"both are children of {description}, so they run in parallel. "
                       f"Make {job['description']} the follow-on of {description} (it runs "
                       f"after every child), or a child of {promised}")
            elif needed == (followon or {}).get("token"):
                why = (f"{promised} is the follow-on of {description}, and runs after "
                       f"{job['description']}")
            else:
                why = (f"{promised} is not added to the tree in this run, so it may not "
                       f"have run when {job['description']} starts (or it never runs)")
            raise PromiseError(
                f"{description} passes {promised}.rv() to {job['description']}, which may "
                f"run before {promised}: {why}. A promise can go to the children of the "
                f"promised target and to the follow-on of the target that added it.")


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _peak_memory() -> int:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, kids) * 1024


def _write_failure(worker: Worker, error: str, permanent: bool = False) -> None:
    if worker.chained:
        error = f"in the chained follow-on {worker.chained}: {error}"
    result = {"job": worker.job_id, "attempt": worker.attempt, "ok": False,
              "run_id": worker.run_id, "error": error, "permanent": permanent}
    try:
        worker.write_result(pickle.dumps(result, 5))
    except OSError as err:
        print(f"jobtree: cannot write the failure result: {err}", file=sys.stderr)


def main(argv: list[str] | None = None, config: dict[str, Any] | None = None,
         job: dict[str, Any] | None = None) -> int:
    """The worker's entry point.

    Args:
        argv: TREE JOB ATTEMPT (default: the command line).
        config: the tree's worker config, already applied to this process by
            a warm fork server (see :func:`prepare_process`); else it is read
            and applied here.
        job: the job's input, if the batch system handed it over.
    """
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3:
        print("usage: python -m jobtree.worker TREE JOB ATTEMPT", file=sys.stderr)
        return EXIT_SETUP
    signal.signal(signal.SIGTERM, _on_sigterm)
    if os.environ.get("JOBTREE_MASTER_PID"):
        die_with_parent(int(os.environ["JOBTREE_MASTER_PID"]))
    try:
        worker = Worker(args[0], int(args[1]), int(args[2]), config)
        if config is None:
            worker.prepare()
    except (OSError, ValueError, KeyError) as err:
        print(f"jobtree: the worker cannot start: {err}", file=sys.stderr)
        return EXIT_SETUP
    try:
        return worker.run(job)
    except Terminated:
        print("jobtree: the worker was stopped (SIGTERM); no result written", file=sys.stderr)
        return 128 + int(signal.SIGTERM)
    except MemoryError as err:
        traceback.print_exc()
        detail = f" ({err})" if str(err) else ""
        _write_failure(worker, f"MemoryError: the target ran out of memory{detail}; give it "
                               f"more memory (its memory= request) if it needs more")
        return EXIT_MEMORY
    except JobTreeError as err:
        traceback.print_exc()
        print(f"jobtree: {err}", file=sys.stderr)
        # a target that breaks the rules will break them again: no retries
        _write_failure(worker, f"{type(err).__name__}: {err}",
                       permanent=isinstance(err, _DEFINITION_ERRORS))
        return EXIT_FAILED
    except BaseException as err:  # noqa: BLE001 - a target may raise anything
        if isinstance(err, SystemExit) and err.code in (None, 0):
            err = RuntimeError("the target called sys.exit(0) inside run()")
        traceback.print_exc()
        _write_failure(worker, "".join(traceback.format_exception_only(type(err), err)).strip())
        return EXIT_FAILED
    finally:
        shutil.rmtree(worker.local_root, ignore_errors=True)
        if (fd := _held.pop(worker.local_root, None)) is not None:
            os.close(fd)


if __name__ == "__main__":
    sys.exit(main())
