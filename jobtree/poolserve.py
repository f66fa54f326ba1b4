"""The threads of a Pool that run its calls' trees: one takes the calls as
they are made and puts those made together in one tree (many small
``apply_async`` calls pay for one tree, not one each); each tree's master
runs in a thread of its own, so calls made while others run start at once.
The trees share the pool's processes: each gets as many as it has chunks,
of those free, and waits while none is. Each call gets its results or its
error after its callback has run (one callback at a time).

A call that has a tree in the pool's folder already (made before, by this
pool or an earlier one on the same folder) continues that tree, or reads its
stored results when it has finished; the calls it shares the tree with are
found by their keys in the trees' records.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import sys
import threading
from typing import TYPE_CHECKING, Any, Callable

from .errors import JobTreeError, TreeError, TreeStopped
from .paths import TreePaths, pool_trees
from .poolcall import Call
from .pooltree import (
    ROOT_CLASS,
    MapRoot,
    PoolError,
    as_raised,
    collect,
    failure,
    make_chunks,
    write_function,
)

if TYPE_CHECKING:
    from .master import Master
    from .poolecho import Echo

logger = logging.getLogger(__name__)


def _not_a_function_error(record: logging.LogRecord) -> bool:
    """Keeps the master's line on a chunk whose function raised out of the
    log: the caller gets the exception itself, as with multiprocessing (the
    failure stays in the tree, for jobTreeStatus)."""
    args = record.args if isinstance(record.args, tuple) else ()
    return not any(isinstance(arg, str) and arg.startswith("FunctionError: ") for arg in args)


logging.getLogger("jobtree.master").addFilter(_not_a_function_error)

#: seconds the thread waits for more calls after one made without waiting
#: for its result (apply_async in a loop), to run them in one tree
GATHER_SECONDS = 0.02
#: most calls run in one tree
MOST_CALLS = 10_000


class Server:
    """Runs a Pool's calls, in trees of its folder, one tree at a time.

    Args:
        options: the pool's jobtree options (``jobTree`` is set per tree).
        folder: the pool's folder.
        resumable: whether calls continue the trees of earlier identical
            calls (a folder given by the user); else every call is new.
        echo: where the chunks' output is also copied, if anywhere.
        slots: the pool's processes, shared by the trees that run at once.
        limit: the option that gives a tree its share (``maxThreads``, or
            ``maxJobs`` on a cluster).
    """

    def __init__(self, options: Any, folder: str, resumable: bool,
                 echo: Echo | None = None, slots: int = 1,
                 limit: str = "maxThreads") -> None:
        self.options = options
        self.folder = folder
        self.resumable = resumable
        self.echo = echo
        self.slots, self.free, self.limit = slots, slots, limit
        self.calls: queue.Queue[Call | None] = queue.Queue()
        self.terminated = False
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)  # a tree ended, or the pool stops
        self.masters: dict[str, Master] = {}  # tree -> its running master
        self.running: dict[str, list[Call]] = {}  # tree -> its calls
        self.runners: list[threading.Thread] = []
        self._callbacks = threading.Lock()
        self._known: dict[str, tuple[str, int | None, int, int]] | None = None
        self.thread = threading.Thread(target=self.serve, name="jobtree-pool", daemon=True)
        self.thread.start()

    def owns(self, thread: threading.Thread) -> bool:
        """Whether ``thread`` is one of the pool's (a callback runs in one)."""
        return thread is self.thread or thread in self.runners

    def terminate(self) -> None:
        """Stops every running tree; calls not started fail."""
        with self.changed:
            self.terminated = True
            self.changed.notify_all()
        self.calls.put(None)
        self.stop("the pool was terminated")

    # ----------------------------------------------------------- the loop
    def serve(self) -> None:
        while True:
            batch, last = self._gather()
            if batch:
                self._run_batch(batch)
            del batch
            if last:
                for runner in list(self.runners):
                    runner.join()
                if self.terminated:
                    self.fail_queued()
                return

    def _gather(self) -> tuple[list[Call], bool]:
        """The calls to run next (those made together), and whether the pool
        was closed after them."""
        first = self.calls.get()
        if first is None:
            return [], self.terminated or self.calls.empty()
        batch = [first]
        wait = 0.0 if first.blocking and self.calls.empty() else GATHER_SECONDS
        while len(batch) < MOST_CALLS:
            try:
                more = self.calls.get(timeout=wait) if wait else self.calls.get_nowait()
            except queue.Empty:
                break
            if more is None:
                return batch, True
            batch.append(more)
        return batch, False

    def fail_queued(self) -> None:
        """Fails the calls not started (the pool was terminated)."""
        while True:
            try:
                call = self.calls.get_nowait()
            except queue.Empty:
                return
            if call is not None:
                self._stopped(call)

    def _stopped(self, call: Call) -> None:
        call.error = PoolError("The pool was terminated before this call ran.", call.tree)
        call.placed.set()
        self.finish(call)

    def finish(self, call: Call) -> None:
        """Hands a call its outcome: its callback runs first, as in
        multiprocessing, then get() and wait() return."""
        try:
            with self._callbacks:
                if call.error is None and call.callback is not None:
                    value = call.results
                    call.callback(value[0] if call.single and value else value)
                elif call.error is not None and call.error_callback is not None:
                    call.error_callback(call.error)
        except Exception:  # noqa: BLE001 - as multiprocessing, a callback must not kill the pool
            logger.exception("a callback of %s raised", call.name)
        finally:
            call.done.set()

    # ----------------------------------------------------------- batches
    def _run_batch(self, batch: list[Call]) -> None:
        if self.terminated:
            for call in batch:
                self._stopped(call)
            return
        groups: dict[str, list[Call]] = {}  # tree -> calls, for calls with a tree
        new: list[Call] = []
        for call in batch:
            where = self._where(call) if self.resumable else None
            if where is None:
                new.append(call)
            else:
                groups.setdefault(where, []).append(call)
        if len(new) == 1:
            groups.setdefault(new[0].tree, []).append(new[0])
        elif new:
            groups.setdefault(self._place(new), []).extend(new)
        for tree, calls in groups.items():
            self._start(tree, calls)

    def _start(self, tree: str, calls: list[Call]) -> None:
        """Starts the tree of ``calls`` in a thread of its own, once some of
        the pool's processes are free (and the tree is not running)."""
        wanted = max(1, min(self.slots, sum(c.chunk_count for c in calls)))
        with self.changed:
            while not self.terminated and (tree in self.running or self.free < 1):
                self.changed.wait()
            if not self.terminated:
                share = min(wanted, self.free)
                self.free -= share
                self.running[tree] = calls
        if self.terminated:
            for call in calls:
                self._stopped(call)
            return
        runner = threading.Thread(target=self._run_group, args=(tree, calls, share),
                                  name="jobtree-pool-tree", daemon=True)
        self.runners = [r for r in self.runners if r.is_alive()] + [runner]
        runner.start()

    def _where(self, call: Call) -> str | None:
        """The tree that holds this call already, if one does (its position
        there is set on the call)."""
        if os.path.isdir(call.tree):
            return call.tree
        if self._known is None:
            self._known = self._read_known()
        found = self._known.get(call.key)
        if found is None or not os.path.isdir(found[0]):
            return None
        call.tree, call.index, call.first_chunk, call.chunksize = found
        return found[0]

    def _read_known(self) -> dict[str, tuple[str, int | None, int, int]]:
        """The calls of the trees of several calls in the pool's folder, by key."""
        from .jobstore import JobStore

        known: dict[str, tuple[str, int | None, int, int]] = {}
        for paths in pool_trees(TreePaths(self.folder)) or []:
            if not os.path.basename(paths.root).startswith("batch-"):
                continue
            try:
                store = JobStore.open(paths, readonly=True)
                try:
                    meta = store.meta().get("pool") or {}
                finally:
                    store.close()
            except JobTreeError:
                continue
            for index, call in enumerate(meta.get("calls") or []):
                known.setdefault(call["key"], (paths.root, index, int(call["first_chunk"]),
                                               int(call["chunksize"])))
        return known

    def _place(self, calls: list[Call]) -> str:
        """Puts new calls made together in one new tree; returns it."""
        digest = hashlib.sha256(b"".join(c.key.encode() for c in calls)).hexdigest()
        tree = os.path.join(self.folder, f"batch-{len(calls)}-{digest[:12]}")
        first = 0
        for index, call in enumerate(calls):
            call.tree, call.index, call.first_chunk = tree, index, first
            first += call.chunk_count
            if self._known is not None:
                self._known[call.key] = (tree, index, call.first_chunk, call.chunksize)
        return tree

    def _run_group(self, tree: str, calls: list[Call], share: int) -> None:
        """Runs (or continues, or reads) one tree with ``share`` of the pool's
        processes, and finishes its calls."""
        for call in calls:
            call.placed.set()
        try:
            failed = self._run_tree(TreePaths(tree), calls, share)
        except BaseException as err:  # noqa: BLE001 - handed to the callers
            if isinstance(err, TreeStopped):
                err = PoolError(
                    f"{calls[0].name} was stopped ({err.reason}) before it finished. Its "
                    f"tree {tree} is kept: the same call continues it, without running "
                    f"finished inputs again.", tree)
            elif not isinstance(err, JobTreeError):
                logger.debug("the call of %s failed", calls[0].name, exc_info=True)
            for call in calls:
                call.error = err
        else:
            paths = TreePaths(tree)
            for call in calls:
                try:
                    call.results = collect(paths, call.name, call.chunks)
                except PoolError as missing:
                    call.error = as_raised(failure(paths, call.name, call.index),
                                           call.function_file) if failed else missing
        finally:
            with self.changed:
                self.free += share
                self.running.pop(tree, None)
                self.changed.notify_all()
        if self.echo is not None:
            self.echo.drain()
        for call in calls:
            call.items = []  # no references kept to the inputs
            self.finish(call)

    def _run_tree(self, paths: TreePaths, calls: list[Call], share: int) -> int:
        """Runs the tree of ``calls``: the number of its targets that failed
        for good (0 if it had finished already)."""
        from . import tree
        from .start import pipeline_script, start_tree

        pipeline = None
        if tree.is_tree(paths):
            if self._finished(paths, calls):
                return 0
        else:
            pipeline = _pipeline(calls, pipeline_script())
        failed = start_tree(
            paths, _copy(self.options, jobTree=paths.root, **{self.limit: share}), pipeline,
            # the versions given now run
            before_run=lambda: [write_function(c.function_file, c.pickled) for c in calls],
            on_master=lambda master: self.on_master(paths.root, master))
        return failed

    def _finished(self, paths: TreePaths, calls: list[Call]) -> bool:
        """Whether the calls' tree that exists has finished; refuses the tree
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
        held = {c.get("key"): c for c in stored.get("calls") or [stored]}
        for call in calls:
            if call.key not in held:
                raise TreeError(
                    f"{paths.root} holds another call than this one of {call.name}. Remove "
                    f"it with jobTreeClean --jobTree {paths.root}, or give the Pool another "
                    f"folder.")
            # a default chunk size of another pool's size: the tree's chunks hold
            call.chunksize = int(held[call.key].get("chunksize") or call.chunksize)
        if counts and all(n == 0 for state, n in counts.items() if state.name != "DONE"):
            return True
        if tree.is_locked(paths):
            raise TreeError(
                f"Another process runs the tree of this call of {calls[0].name} "
                f"({paths.root}, {tree.describe_holder(paths)}). Wait for it to finish, "
                f"then make the call again to read its results.")
        return False

    def on_master(self, tree: str, master: Master | None) -> None:
        if master is not None:
            master.report_failures = False  # the call raises its error instead
        with self.lock:
            if master is None:
                self.masters.pop(tree, None)
            else:
                self.masters[tree] = master
            stop = master is not None and self.terminated
        if stop and master is not None:
            master.request_stop("the pool was terminated")

    def stop(self, reason: str, only: Call | None = None) -> None:
        """Stops the running trees (only that of ``only``, when given)."""
        with self.lock:
            masters = [master for tree, master in self.masters.items()
                       if only is None or only in self.running.get(tree, ())]
        for master in masters:
            master.request_stop(reason)


def _pipeline(calls: list[Call], script: str | None) -> Any:
    """The pipeline of a new tree running ``calls``."""
    from .start import Pipeline

    chunks = []
    for call in calls:
        chunks.extend(make_chunks(call.function_file, call.name, call.mode, call.items,
                                  call.chunksize, call.resources, call.index,
                                  call.first_chunk))
    first = calls[0]
    module = getattr(first.function, "__module__", None)
    described = [{"key": c.key, "function": c.name, "mode": c.mode, "inputs": c.count,
                  "chunksize": c.chunksize, "first_chunk": c.first_chunk} for c in calls]
    call = dict(described[0]) if len(calls) == 1 else {
        "key": "", "mode": "batch", "inputs": sum(c.count for c in calls),
        "chunksize": first.chunksize, "calls": described,
        "function": f"{len(calls)} calls ({', '.join(sorted({c.name for c in calls}))})"}
    # what the fork server imports for the chunks (a script's own functions
    # come with the script)
    call["module"] = (module if isinstance(module, str) and module != "__main__"
                      and module in sys.modules else None)
    name = first.name if len(calls) == 1 else call["function"]
    return Pipeline(MapRoot(chunks, name, call["inputs"]), {
        "script": script, "root_class": ROOT_CLASS, "pool": call})


def _copy(options: Any, **changes: Any) -> Any:
    copied = type(options)()
    copied.__dict__.update(vars(options))
    copied.__dict__.update(changes)
    return copied


def wait_done(call: Call, stop: Callable[[], None]) -> None:
    """Waits for a call made by a blocking method; Ctrl-C stops its tree
    (kept, to be continued by the same call) before it is raised."""
    try:
        while not call.done.wait(0.5):
            pass
    except KeyboardInterrupt:
        stop()
        call.done.wait(60)
        raise
