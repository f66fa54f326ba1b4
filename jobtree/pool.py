"""Pool: the map family of ``multiprocessing.Pool``, run as job trees.

Every call (``map``, ``imap``, ``apply_async``, ...) becomes one job tree in
the pool's folder: a root target that adds one child target per chunk of
inputs. So each call gets what any tree gets: any batch system, retries, a
log per attempt, ``jobTreeStatus``, and a restart that does not redo
finished work. A call's tree is named after the call (the function's name
and a hash of the function's name and the inputs), so making the same call
again, in this process or after a crash in a new one, continues its tree, or
returns its stored results if it has finished.

Without a folder given (``jobTree=``), every call is new: nothing is read
back from an earlier identical call, as in multiprocessing.

Threads of the pool run the trees' masters, several at once within the
pool's processes; calls made together (``apply_async`` in a loop) run in
one tree (:mod:`jobtree.poolserve`). What a call is, its key, and how its results
reach the caller are in :mod:`jobtree.poolcall`; the targets of a call's
tree, and the reading of its results and failures, in :mod:`jobtree.pooltree`.
"""

from __future__ import annotations

import atexit
import difflib
import json
import os
import shutil
import tempfile
import threading
import time
import warnings
import weakref
from typing import Any, Callable, Iterable, Iterator, Sequence

from . import serialize
from .errors import BadOptionError, TargetDefinitionError, TreeError
from .paths import POOL_MARKER, TreePaths, write_atomic
from .poolcall import AsyncResult, Call, Waves, default_chunksize, new_call, stream
from .poolserve import Server, wait_done
from .pooltree import PoolError, TaskFailure
from .resources import SizeLike
from .sshlink import is_remote

__all__ = ["AsyncResult", "Pool", "PoolError", "TaskFailure"]

#: inputs of an iterator that one call of imap reads at a time (no chunksize given)
WAVE = 256
#: chunks of an iterator that one call of imap reads at a time (a chunksize given)
WAVE_CHUNKS = 64
# the states, named as multiprocessing names them
RUN, CLOSE, TERMINATE = "RUN", "CLOSE", "TERMINATE"


def _asks(memory: SizeLike, cpu: SizeLike, time: SizeLike, disk: SizeLike,
          timeLimit: SizeLike, priority: int) -> dict[str, Any]:
    """What each target of a call asks for, as its Target takes it (None:
    the pool's default)."""
    return dict(memory=memory, cpu=cpu, time=time, disk=disk, timeLimit=timeLimit,
                priority=priority or None)


class PoolArgumentError(BadOptionError, ValueError):
    """An argument of a Pool has a bad value (a ValueError, as multiprocessing raises)."""


class Pool:
    """A drop-in for ``multiprocessing.Pool``'s map family that runs on any
    batch system, keeps its work in job trees and continues after a crash.

    Args:
        processes: how many inputs run at once: ``--maxThreads`` on
            singleMachine (on a machine with fewer cores, each input asks
            for a share of one, so that as many run at once as with
            multiprocessing), ``--maxJobs`` on a cluster (default: the
            cores of this machine; the cluster's default).
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
        retryErrors: retry a chunk whose function raised, as any failed
            target (``retryCount`` times). By default, as in multiprocessing,
            a Python exception of the function fails the call at once; chunks
            killed, lost or out of memory are retried either way.

    Raises:
        BadOptionError: an option is unknown or has a bad value (also a
            ValueError for ``processes`` and ``maxtasksperchild``).
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        location = kwargs.get("jobTree") or getattr(kwargs.get("options"), "jobTree", None)
        if is_remote(location):  # a folder on another machine: each call runs there
            from .remotepool import RemotePool
            return RemotePool(*args, **kwargs)
        return super().__new__(cls)

    def __init__(self, processes: int | None = None,
                 initializer: Callable[..., Any] | None = None, initargs: Sequence[Any] = (),
                 maxtasksperchild: int | None = None, *, jobTree: str | None = None,
                 batchSystem: str | None = None, options: Any = None,
                 retryErrors: bool = False, **more: Any) -> None:
        from .options import OPTIONS, default_options, resolve

        _refuse_when_imported()
        self._state = RUN  # (so that a failed __init__ warns of nothing)
        if processes is not None and (not isinstance(processes, int) or processes < 1):
            raise PoolArgumentError(f"Pool(processes=...) must be at least 1, not "
                                    f"{processes!r}.")
        if maxtasksperchild is not None and (
                not isinstance(maxtasksperchild, int) or maxtasksperchild < 1):
            raise PoolArgumentError(f"maxtasksperchild must be a whole number of at least "
                                    f"1 (or None), not {maxtasksperchild!r}.")
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
            setattr(self._options, "maxThreads" if self._local else "maxJobs", processes)
        # on fewer cores than processes, each input asks for a share of a core,
        # so that as many run at once as with multiprocessing
        cores = os.cpu_count() or 1
        self._cpu = (cores / processes if self._local and processes and processes > cores
                     else None)
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
        self._echo = None
        if self._local and os.path.isdir("/proc/self/fd"):
            from .poolecho import Echo

            self._echo = Echo()
        self._settings = {"retry": bool(retryErrors),
                          "echo": self._echo.address if self._echo else None}
        self._lock = threading.Lock()
        self._waves: weakref.WeakSet[Waves] = weakref.WeakSet()  # imaps over iterators
        self._server = Server(_copy(self._options), self.folder, not self._temporary,
                              self._echo, self._slots,
                              "maxThreads" if self._local else "maxJobs")
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
            timeLimit: SizeLike = None, priority: int = 0) -> list[Any]:
        """``[func(x) for x in iterable]``, computed in parallel, in input order.

        Args:
            chunksize: inputs per target (default: about four targets per slot).
            memory, cpu, disk: what each target asks for.
            time: expected wall time of one input (an estimate); a target asks
                for it times its number of inputs.
            timeLimit: a hard wall-time limit of one input, scaled the same way:
                a target that runs past it is stopped (see docs/resources.md).
            priority: the targets' priority (a whole number, default 0): of
                the targets of the calls a pool runs together, the highest
                start first.

        Raises:
            Exception: what ``func`` raised on the first failing input, as
                itself; its ``__cause__`` names the input, its log and the tree.
            PoolError: a chunk was killed, ran out of memory or time, or was
                lost, on every try; the call's tree is kept.
        """
        asks = _asks(memory, cpu, time, disk, timeLimit, priority)
        return self._wait(self._submit("map", func, iterable, chunksize, asks, blocking=True))

    def starmap(self, func: Callable[..., Any], iterable: Iterable[Sequence[Any]],
                chunksize: int | None = None, *, memory: SizeLike = None,
                cpu: SizeLike = None, time: SizeLike = None,
                disk: SizeLike = None, timeLimit: SizeLike = None,
                priority: int = 0) -> list[Any]:
        """``[func(*args) for args in iterable]``, like :meth:`map`."""
        asks = _asks(memory, cpu, time, disk, timeLimit, priority)
        return self._wait(self._submit("starmap", func, iterable, chunksize, asks, blocking=True))

    def apply(self, func: Callable[..., Any], args: Sequence[Any] = (),
              kwds: dict[str, Any] | None = None) -> Any:
        """``func(*args, **kwds)``, run as one target."""
        call = self._submit("apply", func, [(tuple(args), dict(kwds or {}))], 1, {},
                            blocking=True)
        return self._wait(call)[0]

    def map_async(self, func: Callable[[Any], Any], iterable: Iterable[Any],
                  chunksize: int | None = None,
                  callback: Callable[[Any], Any] | None = None,
                  error_callback: Callable[[BaseException], Any] | None = None, *,
                  memory: SizeLike = None, cpu: SizeLike = None, time: SizeLike = None,
                  disk: SizeLike = None, timeLimit: SizeLike = None,
                  priority: int = 0) -> AsyncResult:
        """:meth:`map` without waiting: ``get()`` the list from the result."""
        asks = _asks(memory, cpu, time, disk, timeLimit, priority)
        call = self._submit("map", func, iterable, chunksize, asks, callback, error_callback)
        return AsyncResult(call, self)

    def starmap_async(self, func: Callable[..., Any], iterable: Iterable[Sequence[Any]],
                      chunksize: int | None = None,
                      callback: Callable[[Any], Any] | None = None,
                      error_callback: Callable[[BaseException], Any] | None = None, *,
                      memory: SizeLike = None, cpu: SizeLike = None, time: SizeLike = None,
                      disk: SizeLike = None, timeLimit: SizeLike = None,
                      priority: int = 0) -> AsyncResult:
        """:meth:`starmap` without waiting."""
        asks = _asks(memory, cpu, time, disk, timeLimit, priority)
        call = self._submit("starmap", func, iterable, chunksize, asks, callback, error_callback)
        return AsyncResult(call, self)

    def apply_async(self, func: Callable[..., Any], args: Sequence[Any] = (),
                    kwds: dict[str, Any] | None = None,
                    callback: Callable[[Any], Any] | None = None,
                    error_callback: Callable[[BaseException], Any] | None = None, *,
                    memory: SizeLike = None, cpu: SizeLike = None, time: SizeLike = None,
                    disk: SizeLike = None, timeLimit: SizeLike = None,
                    priority: int = 0) -> AsyncResult:
        """``func(*args, **kwds)`` as one target, without waiting. Calls made
        one after another run together, in one tree."""
        asks = _asks(memory, cpu, time, disk, timeLimit, priority)
        call = self._submit("apply", func, [(tuple(args), dict(kwds or {}))], 1, asks,
                            callback, error_callback, single=True)
        return AsyncResult(call, self)

    def imap(self, func: Callable[[Any], Any], iterable: Iterable[Any],
             chunksize: int | None = None, *, memory: SizeLike = None,
             cpu: SizeLike = None, time: SizeLike = None,
             disk: SizeLike = None, timeLimit: SizeLike = None,
             priority: int = 0) -> Iterator[Any]:
        """Like :meth:`map`, but yields each result, in input order, as soon as
        it and those before it are done. An iterator's inputs are read as they
        are needed (a few hundred at a time, each such run a call of its own)
        and an error it raises is raised by the matching ``next()``. Unlike
        multiprocessing, the default chunksize is that of :meth:`map`."""
        asks = _asks(memory, cpu, time, disk, timeLimit, priority)
        return self._stream(func, iterable, chunksize, asks, True)

    def imap_unordered(self, func: Callable[[Any], Any], iterable: Iterable[Any],
                       chunksize: int | None = None, *, memory: SizeLike = None,
                       cpu: SizeLike = None, time: SizeLike = None,
                       disk: SizeLike = None, timeLimit: SizeLike = None,
                       priority: int = 0) -> Iterator[Any]:
        """Like :meth:`imap`, but yields results in the order they finish."""
        asks = _asks(memory, cpu, time, disk, timeLimit, priority)
        return self._stream(func, iterable, chunksize, asks, False)

    # ---------------------------------------------------- the lifecycle
    def close(self) -> None:
        """Takes no more calls; those made still run (see :meth:`join`). The
        inputs an imap has not read yet are read now."""
        with self._lock:
            if self._state != RUN:
                return
            self._state = CLOSE
        for waves in list(self._waves):
            waves.read_all()
        self._server.calls.put(None)

    def terminate(self) -> None:
        """Stops at once: the running tree's master stops its targets (its tree
        is kept, so the same call continues it later) and calls not started
        fail with a PoolError."""
        with self._lock:
            if self._state == TERMINATE:
                return
            self._state = TERMINATE
        self._server.terminate()
        if not self._server.owns(threading.current_thread()):  # not from a callback
            self._server.thread.join()
            self._server.fail_queued()
            self._drop_folder()

    def join(self) -> None:
        """Waits until every call has finished; call :meth:`close` first.

        Raises:
            ValueError: the pool was not closed.
        """
        if self._state == RUN:
            raise ValueError("Pool.join() needs Pool.close() (or terminate()) first")
        if self._server.owns(threading.current_thread()):
            raise RuntimeError("Pool.join() cannot be called from a callback of the pool")
        self._server.thread.join()
        self._drop_folder()

    def __enter__(self) -> Pool:
        if self._state != RUN:
            raise ValueError("Pool not running: it was closed or terminated")
        return self

    def __exit__(self, *exc: Any) -> None:
        self.terminate()

    def __repr__(self) -> str:
        return (f"<jobtree.Pool {self._options.batchSystem} in {self.folder} "
                f"({self._state.lower()})>")

    def __del__(self) -> None:
        if getattr(self, "_state", None) == RUN and hasattr(self, "_server"):
            warnings.warn(f"unclosed running multiprocessing pool {self!r} (a jobtree.Pool: "
                          f"close() or terminate() it)", ResourceWarning, source=self)
            self._server.calls.put(None)

    def _drop_folder(self) -> None:
        if self._echo is not None:
            self._echo.close()
            self._echo = None
        if self._temporary:
            shutil.rmtree(self.folder, ignore_errors=True)

    # ------------------------------------------------------- submitting
    def _submit(self, mode: str, function: Callable[..., Any], iterable: Iterable[Any],
                chunksize: int | None, resources: dict[str, Any],
                callback: Callable[[Any], Any] | None = None,
                error_callback: Callable[[BaseException], Any] | None = None, *,
                blocking: bool = False, single: bool = False, running: bool = True) -> Call:
        if running:  # (a later part of an imap made while the pool ran need not be)
            self._check(function, chunksize)
        if resources.get("cpu") is None and self._cpu:
            resources = {**resources, "cpu": self._cpu}
        items = list(iterable)
        if mode == "starmap":
            items = [tuple(item) for item in items]
        call = new_call(mode, function, items,
                        chunksize or default_chunksize(len(items), self._slots), resources,
                        self.folder, initializer=self._initializer,
                        initargs=self._initargs, callback=callback,
                        error_callback=error_callback, size_given=chunksize is not None,
                        settings=self._settings, fresh=self._temporary)
        call.blocking, call.single = blocking, single
        if not items or self._state == TERMINATE:  # nothing to run: done at once
            call.results = [] if not items else None
            if items:
                call.error = PoolError("The pool was terminated before this call ran.",
                                       call.tree)
            call.placed.set()
            self._server.finish(call)
        else:
            self._server.calls.put(call)
        return call

    def _check(self, function: Callable[..., Any], chunksize: int | None) -> None:
        if self._state != RUN:
            raise ValueError("Pool not running: it was closed or terminated")
        if not callable(function):
            raise TargetDefinitionError(f"{function!r} is not a function; pass a callable.")
        if chunksize is not None and (not isinstance(chunksize, int) or chunksize < 1):
            raise BadOptionError(f"chunksize must be a whole number of at least 1, not "
                                 f"{chunksize!r}.")

    def _stream(self, function: Callable[[Any], Any], iterable: Iterable[Any],
                chunksize: int | None, resources: dict[str, Any],
                ordered: bool) -> Iterator[Any]:
        if isinstance(iterable, (list, tuple, range)):
            return stream(self._submit("map", function, iterable, chunksize, resources),
                          ordered)
        self._check(function, chunksize)
        waves = Waves(lambda items: self._submit("map", function, items, chunksize, resources,
                                                 running=False),
                      iter(iterable), chunksize or 1,
                      WAVE if chunksize is None else chunksize * WAVE_CHUNKS, ordered)
        self._waves.add(waves)
        return iter(waves)

    def _wait(self, call: Call) -> list[Any]:
        """Waits for a call made by a blocking method; Ctrl-C stops its tree
        (kept, to be continued by the same call) before it is raised."""
        wait_done(call, lambda: self._server.stop("interrupted (Ctrl-C)", call))
        if call.error is not None:
            raise call.error
        return call.results or []


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
