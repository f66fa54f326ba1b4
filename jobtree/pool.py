"""Pool: the map family of ``multiprocessing.Pool``, run as job trees.

Every call (``map``, ``imap``, ``apply_async``, ...) becomes one job tree in
the pool's folder: a root target that adds one child target per chunk of
inputs. So each call gets what any tree gets: any batch system, retries, a
log per attempt, ``jobTreeStatus``, and a restart that does not redo
finished work. A call's tree is named after the call (the function's name
and a hash of the function's name and the inputs), so making the same call
again, in this process or after a crash in a new one, continues its tree, or
returns its stored results if it has finished.

Calls run one after another, in the order they were made, by one thread of
the pool that runs each tree's master; the caller waits on the results. What
a call is, its key, and how its results reach the caller are in
:mod:`jobtree.poolcall`; the targets of a call's tree, and the reading of its
results and failures, in :mod:`jobtree.pooltree`.
"""

from __future__ import annotations

import atexit
import difflib
import json
import logging
import os
import queue
import shutil
import sys
import tempfile
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

from . import serialize
from .errors import BadOptionError, JobTreeError, TargetDefinitionError, TreeError, TreeStopped
from .paths import POOL_MARKER, TreePaths, write_atomic
from .poolcall import AsyncResult, Call, default_chunksize, new_call, stream
from .pooltree import (
    ROOT_CLASS,
    MapRoot,
    PoolError,
    TaskFailure,
    collect,
    failure,
    make_chunks,
    write_function,
)
from .resources import SizeLike

if TYPE_CHECKING:
    from .master import Master

__all__ = ["AsyncResult", "Pool", "PoolError", "TaskFailure"]

logger = logging.getLogger(__name__)


class Pool:
    """A drop-in for ``multiprocessing.Pool``'s map family that runs on any
    batch system, keeps its work in job trees and continues after a crash.

    Args:
        processes: how many inputs run at once: ``--maxThreads`` on
            singleMachine, ``--maxJobs`` on a cluster (default: the cores of
            this machine; the cluster's default).
        initializer: called with ``initargs`` at the start of every chunk's
            process (each chunk is a fresh process, so ``maxtasksperchild``
            is accepted and has nothing to do).
        jobTree: the pool's folder, holding one job tree per call. Give it to
            continue calls after a crash and keep their results; without it
            a temporary folder is used and removed when the pool closes.
        batchSystem: where inputs run (``singleMachine``, ``slurm``, ...).
        options: parsed command-line options of a script that called
            ``Stack.addJobTreeOptions(parser)``: the values given there
            (``--jobTree`` names the pool's folder). Keywords override them.
        **more: any other jobtree option by its name (``retryCount=1``,
            ``maxMemory="8G"``, ``clusterConfig=...``, ``logLevel="INFO"``).
            The pool logs warnings and errors only unless ``logLevel`` is given.

    Raises:
        BadOptionError: an option is unknown or has a bad value.
    """

    def __init__(self, processes: int | None = None,
                 initializer: Callable[..., Any] | None = None, initargs: Sequence[Any] = (),
                 maxtasksperchild: int | None = None, *, jobTree: str | None = None,
                 batchSystem: str | None = None, options: Any = None,
                 **more: Any) -> None:
        from .options import OPTIONS, default_options, resolve

        _refuse_when_imported()
        names = {o.name for o in OPTIONS}
        options_given = {n: getattr(options, n) for n in names
                         if getattr(options, n, None) not in (None, False)}
        jobTree = jobTree or options_given.pop("jobTree", None)
        batchSystem = batchSystem or options_given.pop("batchSystem", None) or "singleMachine"
        options_given.pop("jobTree", None)
        options_given.pop("batchSystem", None)
        options = {**options_given, **more}
        for name in options:
            if name not in names or name == "jobTree":
                close = difflib.get_close_matches(name, sorted(names), n=1)
                hint = f" Did you mean {close[0]}?" if close else ""
                raise BadOptionError(
                    f"Pool() got the option {name!r}, which jobtree does not have.{hint} "
                    f"Options are given by their names on the command line, such as "
                    f"retryCount=1 or maxMemory='8G'.")
        self._options = default_options()
        for name, value in options.items():
            setattr(self._options, name, value)
        self._options.batchSystem = batchSystem
        if getattr(self._options, "logLevel", None) is None and not any(
                options.get(flag) for flag in ("logInfo", "logDebug", "logOff")):
            self._options.logLevel = "WARNING"
        from .batch import canonical_name

        self._local = canonical_name(batchSystem) == "singleMachine"
        if processes is not None:
            if not isinstance(processes, int) or processes < 1:
                raise BadOptionError(f"Pool(processes=...) must be at least 1, not "
                                     f"{processes!r}.")
            setattr(self._options, "maxThreads" if self._local else "maxJobs", processes)
        self._options.jobTree = os.devnull  # checked per call
        config, _ = resolve(self._options)  # checks every option now
        self._slots = (config.maxThreads or os.cpu_count() or 1) if self._local else (
            config.maxJobs or 100)
        if initializer is not None and not callable(initializer):
            raise TargetDefinitionError(f"initializer {initializer!r} is not a function.")
        self._initializer, self._initargs = initializer, tuple(initargs)
        del maxtasksperchild  # every chunk runs in a process of its own
        self._temporary = jobTree is None
        self.folder = self._make_folder(jobTree)
        self._calls: queue.Queue[Call | None] = queue.Queue()
        self._state = "run"
        self._master: Master | None = None
        self._current: Call | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, name="jobtree-pool", daemon=True)
        self._thread.start()
        _live_pools.add(self)

    # -------------------------------------------------------- the folder
    def _make_folder(self, given: str | None) -> str:
        if given is None:
            # cluster nodes must see the folder: keep it under the working directory
            base = None if self._local else os.getcwd()
            return tempfile.mkdtemp(prefix="jobtree-pool-", dir=base)
        folder = os.path.abspath(os.path.expanduser(given))
        if os.path.isfile(TreePaths(folder).db):
            raise TreeError(
                f"{folder} is a job tree, not a Pool's folder. A Pool keeps one job tree "
                f"per call inside its folder; give Pool(jobTree=...) a new folder (or the "
                f"folder of an earlier Pool).")
        try:
            os.makedirs(folder, exist_ok=True)
            marker = os.path.join(folder, POOL_MARKER)
            if not os.path.exists(marker):
                if os.listdir(folder):
                    raise TreeError(
                        f"{folder} is neither empty nor a Pool's folder. Give "
                        f"Pool(jobTree=...) a new folder, or the folder of an earlier Pool.")
                write_atomic(marker, json.dumps({"kind": "jobtree pool",
                                                 "created": time.time()}).encode())
        except OSError as err:
            raise TreeError(f"Cannot use {folder} as a Pool's folder: {err}. Give a folder "
                            f"you can write.") from None
        return folder

    # ------------------------------------------------------- the calls
    def map(self, func: Callable[[Any], Any], iterable: Iterable[Any],
            chunksize: int | None = None, *, memory: SizeLike = None, cpu: SizeLike = None,
            time: SizeLike = None, disk: SizeLike = None,
            timeLimit: SizeLike = None) -> list[Any]:
        """``[func(x) for x in iterable]``, computed in parallel, in input order.

        Args:
            chunksize: inputs per target (default: about four targets per slot).
            memory, cpu, disk: what each target asks for.
            time: expected wall time of one input (an estimate); a target asks
                for it times its number of inputs.
            timeLimit: a hard wall-time limit of one input, scaled the same way:
                a target that runs past it is stopped (see docs/resources.md).

        Raises:
            PoolError: an input failed on every try; the call's tree is kept.
        """
        call = self._submit("map", func, iterable, chunksize, dict(
            memory=memory, cpu=cpu, time=time, disk=disk, timeLimit=timeLimit))
        return list(self._wait(call))

    def starmap(self, func: Callable[..., Any], iterable: Iterable[Sequence[Any]],
                chunksize: int | None = None, *, memory: SizeLike = None,
                cpu: SizeLike = None, time: SizeLike = None,
                disk: SizeLike = None, timeLimit: SizeLike = None) -> list[Any]:
        """``[func(*args) for args in iterable]``, like :meth:`map`."""
        call = self._submit("starmap", func, iterable, chunksize, dict(
            memory=memory, cpu=cpu, time=time, disk=disk, timeLimit=timeLimit))
        return list(self._wait(call))

    def apply(self, func: Callable[..., Any], args: Sequence[Any] = (),
              kwds: dict[str, Any] | None = None) -> Any:
        """``func(*args, **kwds)``, run as one target."""
        return self.apply_async(func, args, kwds).get()

    def map_async(self, func: Callable[[Any], Any], iterable: Iterable[Any],
                  chunksize: int | None = None,
                  callback: Callable[[Any], Any] | None = None,
                  error_callback: Callable[[BaseException], Any] | None = None, *,
                  memory: SizeLike = None, cpu: SizeLike = None, time: SizeLike = None,
                  disk: SizeLike = None, timeLimit: SizeLike = None) -> AsyncResult:
        """:meth:`map` without waiting: ``get()`` the list from the result."""
        call = self._submit("map", func, iterable, chunksize, dict(
            memory=memory, cpu=cpu, time=time, disk=disk, timeLimit=timeLimit),
            callback, error_callback)
        return AsyncResult(call, self)

    def starmap_async(self, func: Callable[..., Any], iterable: Iterable[Sequence[Any]],
                      chunksize: int | None = None,
                      callback: Callable[[Any], Any] | None = None,
                      error_callback: Callable[[BaseException], Any] | None = None, *,
                      memory: SizeLike = None, cpu: SizeLike = None, time: SizeLike = None,
                      disk: SizeLike = None, timeLimit: SizeLike = None) -> AsyncResult:
        """:meth:`starmap` without waiting."""
        call = self._submit("starmap", func, iterable, chunksize, dict(
            memory=memory, cpu=cpu, time=time, disk=disk, timeLimit=timeLimit),
            callback, error_callback)
        return AsyncResult(call, self)

    def apply_async(self, func: Callable[..., Any], args: Sequence[Any] = (),
                    kwds: dict[str, Any] | None = None,
                    callback: Callable[[Any], Any] | None = None,
                    error_callback: Callable[[BaseException], Any] | None = None, *,
                    memory: SizeLike = None, cpu: SizeLike = None, time: SizeLike = None,
                    disk: SizeLike = None, timeLimit: SizeLike = None) -> AsyncResult:
        """``func(*args, **kwds)`` as one target, without waiting."""
        call = self._submit("apply", func, [(tuple(args), dict(kwds or {}))], 1, dict(
            memory=memory, cpu=cpu, time=time, disk=disk, timeLimit=timeLimit),
            callback, error_callback)
        call.single = True
        return AsyncResult(call, self)

    def imap(self, func: Callable[[Any], Any], iterable: Iterable[Any],
             chunksize: int | None = None, *, memory: SizeLike = None,
             cpu: SizeLike = None, time: SizeLike = None,
             disk: SizeLike = None, timeLimit: SizeLike = None) -> Iterator[Any]:
        """Like :meth:`map`, but yields each result, in input order, as soon as
        it and those before it are done. Unlike multiprocessing, the default
        chunksize is that of :meth:`map`."""
        call = self._submit("map", func, iterable, chunksize, dict(
            memory=memory, cpu=cpu, time=time, disk=disk, timeLimit=timeLimit))
        return stream(call, ordered=True)

    def imap_unordered(self, func: Callable[[Any], Any], iterable: Iterable[Any],
                       chunksize: int | None = None, *, memory: SizeLike = None,
                       cpu: SizeLike = None, time: SizeLike = None,
                       disk: SizeLike = None, timeLimit: SizeLike = None) -> Iterator[Any]:
        """Like :meth:`imap`, but yields results in the order they finish."""
        call = self._submit("map", func, iterable, chunksize, dict(
            memory=memory, cpu=cpu, time=time, disk=disk, timeLimit=timeLimit))
        return stream(call, ordered=False)

    # ---------------------------------------------------- the lifecycle
    def close(self) -> None:
        """Takes no more calls; those made still run (see :meth:`join`)."""
        with self._lock:
            if self._state == "run":
                self._state = "close"
                self._calls.put(None)

    def terminate(self) -> None:
        """Stops at once: the running call's master stops its targets (its tree
        is kept, so the same call continues it later) and calls not started
        fail with a PoolError."""
        with self._lock:
            if self._state == "terminate":
                return
            self._state = "terminate"
            master = self._master
            self._calls.put(None)
        if master is not None:
            master.request_stop("the pool was terminated")
        if threading.current_thread() is not self._thread:  # not from a callback
            self._thread.join()
            self._drop_folder()

    def join(self) -> None:
        """Waits until every call has finished; call :meth:`close` first.

        Raises:
            ValueError: the pool was not closed.
        """
        if self._state == "run":
            raise ValueError("Pool.join() needs Pool.close() (or terminate()) first")
        if threading.current_thread() is self._thread:
            raise RuntimeError("Pool.join() cannot be called from a callback of the pool")
        self._thread.join()
        self._drop_folder()

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.terminate()

    def __repr__(self) -> str:
        return (f"<jobtree.Pool {self._options.batchSystem} in {self.folder} "
                f"({self._state})>")

    def _drop_folder(self) -> None:
        if self._temporary:
            shutil.rmtree(self.folder, ignore_errors=True)

    # ------------------------------------------------------- submitting
    def _submit(self, mode: str, function: Callable[..., Any], iterable: Iterable[Any],
                chunksize: int | None, resources: dict[str, Any],
                callback: Callable[[Any], Any] | None = None,
                error_callback: Callable[[BaseException], Any] | None = None) -> Call:
        if self._state != "run":
            raise ValueError("Pool not running: it was closed or terminated")
        if not callable(function):
            raise TargetDefinitionError(f"{function!r} is not a function; pass a callable.")
        if chunksize is not None and (not isinstance(chunksize, int) or chunksize < 1):
            raise BadOptionError(f"chunksize must be a whole number of at least 1, not "
                                 f"{chunksize!r}.")
        items = list(iterable)
        if mode == "starmap":
            items = [tuple(item) for item in items]
        call = new_call(mode, function, items,
                        chunksize or default_chunksize(len(items), self._slots), resources,
                        self.folder, initializer=self._initializer,
                        initargs=self._initargs, callback=callback,
                        error_callback=error_callback, size_given=chunksize is not None)
        self._calls.put(call)
        return call

    def _wait(self, call: Call) -> list[Any]:
        """Waits for a call made by a blocking method; Ctrl-C stops its tree
        (kept, to be continued by the same call) before it is raised."""
        try:
            while not call.done.wait(0.5):
                pass
        except KeyboardInterrupt:
            self._stop_call(call)
            raise
        if call.error is not None:
            raise call.error
        return call.results or []

    def _stop_call(self, call: Call) -> None:
        with self._lock:
            master = self._master if self._current is call else None
        if master is not None:
            master.request_stop("interrupted (Ctrl-C)")
        call.done.wait(60)

    # ---------------------------------------------------------- serving
    def _serve(self) -> None:
        while True:
            call = self._calls.get()
            if call is None:
                if self._state == "terminate":
                    self._fail_queued()
                    self._drop_folder()  # (terminate() may have come from a callback)
                    return
                if self._calls.empty():
                    return
                continue
            if self._state == "terminate":
                call.error = PoolError("The pool was terminated before this call ran.",
                                       call.tree)
                call.done.set()
                continue
            with self._lock:
                self._current = call
            try:
                call.results = self._run(call)
            except BaseException as err:  # noqa: BLE001 - handed to the caller
                if not isinstance(err, JobTreeError):
                    logger.debug("the call of %s failed", call.name, exc_info=True)
                call.error = err
            finally:
                with self._lock:
                    self._current = None
            self._finish(call)

    def _fail_queued(self) -> None:
        while True:
            try:
                call = self._calls.get_nowait()
            except queue.Empty:
                return
            if call is not None:
                call.error = PoolError("The pool was terminated before this call ran.",
                                       call.tree)
                call.done.set()

    def _finish(self, call: Call) -> None:
        call.done.set()
        try:
            if call.error is None and call.callback is not None:
                value = call.results
                call.callback(value[0] if call.single and value else value)
            elif call.error is not None and call.error_callback is not None:
                call.error_callback(call.error)
        except Exception:  # noqa: BLE001 - as multiprocessing, a callback must not kill the pool
            logger.exception("a callback of %s raised", call.name)

    def _on_master(self, master: Master | None) -> None:
        if master is not None:
            master.report_failures = False  # the call raises a PoolError instead
        with self._lock:
            self._master = master
            stop = master is not None and self._state == "terminate"
        if stop and master is not None:
            master.request_stop("the pool was terminated")

    def _run_tree(self, call: Call) -> list[Any]:
        from . import tree
        from .start import Pipeline, pipeline_script, start_tree

        paths = TreePaths(call.tree)
        function_file = os.path.join(paths.root, "pool", "function")
        pipeline = None
        if tree.is_tree(paths):
            if self._finished(paths, call):
                return collect(paths, call.name, call.chunk_count)
        else:
            module = getattr(call.function, "__module__", None)
            pipeline = Pipeline(MapRoot(make_chunks(function_file, call.name, call.mode,
                                                    call.items, call.chunksize,
                                                    call.resources),
                                        call.name, len(call.items)), {
                "script": pipeline_script(), "root_class": ROOT_CLASS, "pool": {
                    "key": call.key, "function": call.name, "mode": call.mode,
                    "inputs": len(call.items), "chunksize": call.chunksize,
                    # what the fork server imports for the chunks (a script's own
                    # functions come with the script)
                    "module": module if isinstance(module, str) and module != "__main__"
                    and module in sys.modules else None}})
        failed = start_tree(
            paths, _copy(self._options, jobTree=paths.root), pipeline,
            # the version given now runs
            before_run=lambda: write_function(function_file, call.pickled),
            on_master=self._on_master)
        if failed:
            raise failure(paths, call.name)
        return collect(paths, call.name, call.chunk_count)

    @staticmethod
    def _finished(paths: TreePaths, call: Call) -> bool:
        """Whether the call's tree that exists has finished; refuses the tree
        of another call, and one that another process runs."""
        from . import tree
        from .jobstore import JobStore

        tree.check_owner(paths)
        store = JobStore.open(paths, readonly=True)
        try:
            meta = store.meta()
            counts = store.counts()
        finally:
            store.close()
        stored = meta.get("pool") or {}
        if stored.get("key") != call.key:
            raise TreeError(
                f"{paths.root} holds another call than this one of {call.name}. Remove "
                f"it with jobTreeClean --jobTree {paths.root}, or give the Pool another "
                f"folder.")
        # a default chunk size of another pool's size: the tree's chunks hold
        call.chunksize = int(stored.get("chunksize") or call.chunksize)
        if counts and all(n == 0 for state, n in counts.items() if state.name != "DONE"):
            return True
        if tree.is_locked(paths):
            raise TreeError(
                f"Another process runs the tree of this call of {call.name} "
                f"({paths.root}, {tree.describe_holder(paths)}). Wait for it to finish, "
                f"then make the call again to read its results.")
        return False

    def _run(self, call: Call) -> list[Any]:
        """Runs (or continues, or reads) the call's tree; returns its results."""
        try:
            return self._run_tree(call)
        except TreeStopped as err:
            raise PoolError(
                f"{call.name} was stopped ({err.reason}) before it finished. Its tree "
                f"{call.tree} is kept: the same call continues it, without running "
                f"finished inputs again.", call.tree) from None


def _copy(options: Any, **changes: Any) -> Any:
    copied = type(options)()
    copied.__dict__.update(vars(options))
    copied.__dict__.update(changes)
    return copied


def _refuse_when_imported() -> None:
    script = os.environ.get(serialize.IMPORTING_SCRIPT)
    if script:
        raise TargetDefinitionError(
            f"The script {script} made a Pool while a worker imported it to load a "
            f"function. Workers import the script as a module, so put the code that "
            f"makes the Pool and calls it under `if __name__ == \"__main__\":`.")


# Pools still open when the interpreter exits are terminated: their masters
# stop their targets, and their trees stay whole
_live_pools: weakref.WeakSet[Pool] = weakref.WeakSet()


@atexit.register
def _terminate_live_pools() -> None:
    for pool in list(_live_pools):
        try:
            pool.terminate()
        except Exception:  # noqa: BLE001 - exiting anyway
            pass
