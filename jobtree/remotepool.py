"""A Pool whose folder is on another machine: ``Pool(jobTree="ssh://host/path")``.

Each call runs on the remote machine as a Pool of its own over the same
folder, in a process detached from the ssh session (see
:mod:`jobtree.cli.agent`): the function, its inputs and the pool's settings
go there pickled (with the ``.py`` files of the calling script's folder, for
functions imported from them), the call's output comes back as it runs, and
its results (or the exception it raised) come back pickled. A dropped
connection stops nothing there: the same call made again continues the
remote call's tree and returns its results.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
import pickle
import sys
import threading
from typing import Any, Callable, Iterable, Iterator, Sequence

import cloudpickle

from .errors import UnpicklableTargetError
from .pooltree import PoolError
from .remote import PYTHON_MARK, TREE_MARK, Remote, pack, pipeline_files
from .sshlink import RemoteError, parse


class RemoteTraceback(Exception):
    """The traceback, on the remote machine, of an exception a remote call
    raised (its ``__cause__``)."""

    def __str__(self) -> str:
        return f"\n\nOn the remote machine:\n{self.args[0]}"


class RemoteResult:
    """The result of an asynchronous call of a remote pool (``get``, ``wait``,
    ``ready``, ``successful``, as multiprocessing's AsyncResult)."""

    def __init__(self, future: concurrent.futures.Future[Any]) -> None:
        self._future = future

    def get(self, timeout: float | None = None) -> Any:
        try:
            return self._future.result(timeout)
        except concurrent.futures.TimeoutError:
            raise TimeoutError(f"the remote call did not finish within {timeout} s") from None

    def wait(self, timeout: float | None = None) -> None:
        concurrent.futures.wait([self._future], timeout)

    def ready(self) -> bool:
        return self._future.done()

    def successful(self) -> bool:
        if not self._future.done():
            raise ValueError("the call has not finished")
        return self._future.exception() is None


class RemotePool:
    """``jobtree.Pool`` with a remote folder (``jobTree="ssh://..."``): the same
    calls, each run on the remote machine. See :class:`jobtree.Pool` for the
    arguments; ``remotePython`` names the remote Python (default:
    $JOBTREE_REMOTE_PYTHON, else ``python3``)."""

    def __init__(self, processes: int | None = None,
                 initializer: Callable[..., Any] | None = None, initargs: Sequence[Any] = (),
                 maxtasksperchild: int | None = None, *, jobTree: str,
                 batchSystem: str | None = None, options: Any = None,
                 remotePython: str | None = None, **more: Any) -> None:
        if processes is not None and processes < 1:
            raise ValueError("Number of processes must be at least 1")
        given = {k: v for k, v in (vars(options) if options is not None else {}).items()
                 if v not in (None, False) and k not in ("jobTree", "remotePython", "detach")}
        self.location = jobTree
        self._remote = Remote(parse(jobTree), remotePython or given.pop("remotePython", None))
        self._settings: dict[str, Any] = {
            "processes": processes, "initializer": initializer, "initargs": tuple(initargs),
            "maxtasksperchild": maxtasksperchild,
            "batchSystem": batchSystem or given.pop("batchSystem", None), **given, **more}
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=processes or 4, thread_name_prefix="jobtree-remote-pool")
        self._state = "run"
        self._lock = threading.Lock()

    # ------------------------------------------------------------ calls
    def map(self, func: Callable[[Any], Any], iterable: Iterable[Any],
            chunksize: int | None = None, **resources: Any) -> list[Any]:
        """``[func(x) for x in iterable]``, run on the remote machine."""
        return list(self._call("map", func, list(iterable), chunksize, **resources))

    def starmap(self, func: Callable[..., Any], iterable: Iterable[Sequence[Any]],
                chunksize: int | None = None, **resources: Any) -> list[Any]:
        """``[func(*args) for args in iterable]``, run on the remote machine."""
        return list(self._call("starmap", func, list(iterable), chunksize, **resources))

    def apply(self, func: Callable[..., Any], args: Sequence[Any] = (),
              kwds: dict[str, Any] | None = None, **resources: Any) -> Any:
        """``func(*args, **kwds)``, run on the remote machine."""
        return self._call("apply", func, tuple(args), dict(kwds or {}), **resources)

    def imap(self, func: Callable[[Any], Any], iterable: Iterable[Any],
             chunksize: int | None = None, **resources: Any) -> Iterator[Any]:
        """:meth:`map`, as an iterator (results come back when the call ends)."""
        return iter(self.map(func, iterable, chunksize, **resources))

    imap_unordered = imap

    def map_async(self, func: Callable[[Any], Any], iterable: Iterable[Any],
                  chunksize: int | None = None, callback: Callable[[Any], Any] | None = None,
                  error_callback: Callable[[BaseException], Any] | None = None,
                  **resources: Any) -> RemoteResult:
        return self._async(callback, error_callback, self.map, func, list(iterable),
                           chunksize, **resources)

    def starmap_async(self, func: Callable[..., Any], iterable: Iterable[Sequence[Any]],
                      chunksize: int | None = None,
                      callback: Callable[[Any], Any] | None = None,
                      error_callback: Callable[[BaseException], Any] | None = None,
                      **resources: Any) -> RemoteResult:
        return self._async(callback, error_callback, self.starmap, func, list(iterable),
                           chunksize, **resources)

    def apply_async(self, func: Callable[..., Any], args: Sequence[Any] = (),
                    kwds: dict[str, Any] | None = None,
                    callback: Callable[[Any], Any] | None = None,
                    error_callback: Callable[[BaseException], Any] | None = None,
                    **resources: Any) -> RemoteResult:
        return self._async(callback, error_callback, self.apply, func, tuple(args),
                           dict(kwds or {}), **resources)

    # -------------------------------------------------------- lifecycle
    def close(self) -> None:
        self._state = "close" if self._state == "run" else self._state

    def terminate(self) -> None:
        """Stops waiting for calls; calls already on the remote machine go on
        there (the same call made again continues them)."""
        self._state = "terminate"
        self._executor.shutdown(wait=False, cancel_futures=True)

    def join(self) -> None:
        if self._state == "run":
            raise ValueError("Pool.join() needs Pool.close() (or terminate()) first")
        self._executor.shutdown(wait=True)

    def __enter__(self) -> RemotePool:
        if self._state != "run":
            raise ValueError("Pool not running")
        return self

    def __exit__(self, *exc: Any) -> None:
        self.terminate()

    def __repr__(self) -> str:
        return f"<jobtree.Pool on {self.location} ({self._state})>"

    # ---------------------------------------------------------- helpers
    def _async(self, callback: Callable[[Any], Any] | None,
               error_callback: Callable[[BaseException], Any] | None,
               method: Callable[..., Any], *args: Any, **kwargs: Any) -> RemoteResult:
        self._check_running()

        def run() -> Any:
            try:
                value = method(*args, **kwargs)
            except BaseException as err:
                if error_callback is not None:
                    error_callback(err)
                raise
            if callback is not None:
                callback(value)
            return value

        return RemoteResult(self._executor.submit(run))

    def _check_running(self) -> None:
        if self._state != "run":
            raise ValueError("Pool not running")

    def _call(self, method: str, func: Callable[..., Any], *args: Any,
              **resources: Any) -> Any:
        """Runs one call there; returns its value or raises its exception."""
        self._check_running()
        try:
            payload = cloudpickle.dumps({"settings": self._settings, "method": method,
                                         "func": func, "args": args, "kwargs": resources})
        except Exception as err:  # noqa: BLE001 - any pickling failure
            raise UnpicklableTargetError(
                f"The {method} call for {self.location} cannot be sent there: its function, "
                f"inputs or the pool's settings cannot be pickled ({type(err).__name__}: "
                f"{err}). Pass plain data (no open files, locks or connections).") from err
        name = hashlib.sha256(payload).hexdigest()[:24]
        files = _caller_files()
        archive = pack(files, extra={f"calls/{name}.pkl": payload})
        answer = self._remote.launch(
            [PYTHON_MARK, "-m", "jobtree.cli.agent", "poolcall", "--dir", TREE_MARK,
             "--call", name], stage=archive)
        status = self._remote.follow(int(answer["run"]))
        done = self._remote.link.run(self._remote.agent(
            "poolresult", "--dir", self._remote.tree.path, "--call", name), timeout=600)
        if done.returncode != 0 or not done.stdout:
            raise PoolError(
                f"The remote {method} on {self._remote.tree} ended (exit status {status}) "
                f"without a result: {done.stderr.decode(errors='replace').strip()[-500:]} "
                f"See its output above, and jobTreeStatus --jobTree {self._remote.tree}.")
        kind, value, *trace = pickle.loads(done.stdout)
        if kind == "error":
            if trace:  # pickling drops the cause: it comes back as text
                raise value from RemoteTraceback(trace[0])
            raise value
        return value


def _caller_files() -> dict[str, str]:
    """The .py files to copy: those of the running script's folder (a function
    imported from them is pickled by reference)."""
    main = sys.modules.get("__main__")
    script = getattr(main, "__file__", None)
    if isinstance(script, str) and os.path.isfile(script):
        return pipeline_files(os.path.realpath(script))
    return {}


__all__ = ["RemotePool", "RemoteResult", "RemoteError"]
