"""Creating, checking, locking and running a tree (for jobtree.start, the one road to them)."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import logging.handlers
import os
import shutil
import signal
import socket
import sqlite3
import sys
import tempfile
import threading
import time
import uuid
from typing import Any, Callable, Iterator

import filelock

from . import batch as batch_systems
from .batch import BatchSystem
from .errors import BadOptionError, TreeError, TreeLockedError
from .jobstore import JobStore, NewJob
from .master import Master
from .options import Config
from .paths import REMOTE_FOLDER, TreePaths, worker_sys_path
from .progress import Progress, ProgressHandler, is_terminal

logger = logging.getLogger(__name__)


def check_owner(paths: TreePaths) -> None:
    """Refuses a tree that is missing, not a directory, or another user's.

    Raises:
        TreeError: saying what is wrong and what to do.
    """
    try:
        info = os.stat(paths.root)
    except FileNotFoundError:
        raise TreeError(
            f"There is no job tree at {paths.root}. Check the --jobTree path; a new tree "
            f"is made by running your pipeline script with --jobTree.") from None
    if not os.path.isdir(paths.root):
        raise TreeError(f"{paths.root} is a file, not a job tree directory. Check --jobTree.")
    if info.st_uid != os.geteuid():
        raise TreeError(
            f"The job tree {paths.root} belongs to another user (uid {info.st_uid}). Its "
            f"pickled targets would run code as you, so jobtree will not use it. Use a "
            f"--jobTree directory of your own.")


def is_tree(paths: TreePaths) -> bool:
    """Whether the folder holds a job tree (an index)."""
    return os.path.isfile(paths.db)


def create(paths: TreePaths, root: NewJob, config: Config, fingerprint: dict[str, Any],
           tree_id: str | None = None) -> None:
    """Makes a new tree holding ``root``, atomically: it is whole or absent.

    Args:
        tree_id: the tree's id, if its batch systems were made before it
            (default: a new one).

    Raises:
        TreeError: the directory cannot be made.
    """
    parent = os.path.dirname(paths.root)
    try:
        os.makedirs(parent, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=f".{os.path.basename(paths.root)}.new-", dir=parent)
    except OSError as err:
        raise TreeError(f"Cannot create the job tree {paths.root}: {err}. Choose a --jobTree "
                        f"in a folder you can write.") from err
    try:
        staged = TreePaths(staging)
        for folder in staged.folders():
            os.makedirs(folder, mode=0o700)
        meta = dict(fingerprint, tree_id=tree_id or uuid.uuid4().hex, environ=dict(os.environ),
                    sys_path=worker_sys_path(),
                    cwd=os.getcwd(), options=config.stored(), user=os.geteuid(),
                    root_description=root.description,
                    host=socket.gethostname())
        JobStore.initialise(staged, meta, root, config.retryCount)
        os.chmod(staging, 0o700)
        kept = _keep_remote_folder(paths, staging)
        try:
            os.rename(staging, paths.root)
        except BaseException:
            if kept:  # give the remote side's folder back
                os.rename(os.path.join(staging, REMOTE_FOLDER), kept)
            raise
    except BaseException as err:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(err, OSError) and err.errno in (errno.ENOTEMPTY, errno.EEXIST):
            raise TreeError(
                f"Another process created {paths.root} while this one was creating a tree "
                f"there (two runs started at once?). Nothing of this run was kept; check "
                f"that directory, and continue its tree with:  jobTreeRun --jobTree "
                f"{paths.root}") from err
        if isinstance(err, OSError):
            raise TreeError(f"Cannot create the job tree {paths.root}: {err}.") from err
        raise


def _keep_remote_folder(paths: TreePaths, staging: str) -> str | None:
    """Moves the remote side's folder (a remote tree's pipeline copy and its
    masters' output, made before the tree) into the staged tree, so that the
    staged tree can replace the then empty folder; returns where it was."""
    folder = os.path.join(paths.root, REMOTE_FOLDER)
    try:
        if os.listdir(paths.root) != [REMOTE_FOLDER]:
            return None
    except OSError:
        return None
    os.rename(folder, os.path.join(staging, REMOTE_FOLDER))
    return folder


def check_same_pipeline(store: JobStore, fingerprint: dict[str, Any]) -> None:
    """Refuses to continue a tree made by a different pipeline.

    Raises:
        TreeError: naming both pipelines.
    """
    meta = store.meta()
    stored = {"script": meta.get("script"), "root_class": meta.get("root_class")}
    if stored != fingerprint:
        raise TreeError(
            f"The job tree {store.paths.root} belongs to another pipeline (script "
            f"{stored['script']}, root target {stored['root_class']}); this one is "
            f"{fingerprint['script']} with root target {fingerprint['root_class']}. Use a "
            f"different --jobTree, or remove the old tree with:  jobTreeClean --jobTree "
            f"{store.paths.root}")


def holder(paths: TreePaths) -> dict[str, Any]:
    """What the last master wrote about itself (host, pid, started)."""
    try:
        with open(paths.master_info, encoding="utf-8") as handle:
            return dict(json.load(handle))
    except (OSError, ValueError):
        return {}


def describe_holder(paths: TreePaths) -> str:
    """'host X, pid N, since T' for messages."""
    info = holder(paths)
    if not info:
        return "an unknown process"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("started", 0)))
    return f"host {info.get('host')}, pid {info.get('pid')}, since {since}"


@contextlib.contextmanager
def master_lock(paths: TreePaths, refusal: str | None = None) -> Iterator[None]:
    """Holds the tree's master lock, so there is one writer.

    Args:
        paths: the tree.
        refusal: what to tell the user if a master holds it (default: how to
            wait for, follow or stop that master).

    Raises:
        TreeLockedError: another master holds it.
    """
    lock = filelock.FileLock(paths.lock)
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        raise TreeLockedError(
            f"Another jobtree master is running the tree {paths.root} ({describe_holder(paths)}). "
            + (refusal or f"Wait for it to finish, follow it with jobTreeStatus --jobTree "
                          f"{paths.root}, or stop it with jobTreeKill --jobTree {paths.root}.")
        ) from None
    try:
        info = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}
        with open(paths.master_info, "w", encoding="utf-8") as handle:
            json.dump(info, handle)
        yield
    finally:
        lock.release()


def is_locked(paths: TreePaths) -> bool:
    """Whether a master holds the tree now."""
    lock = filelock.FileLock(paths.lock)
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        return True
    lock.release()
    return False


def batch_workdir(paths: TreePaths, role: str, name: str) -> str:
    """The folder of a cluster batch system's job files in a tree (one per
    role and scheduler, so a tree moved to another scheduler keeps them apart)."""
    return os.path.join(paths.batch, f"{role}-{batch_systems.canonical_name(name)}")


def make_batches(config: Config, paths: TreePaths, tree_id: str) -> dict[str, BatchSystem]:
    """The batch systems a run uses ("main", and "big" if configured). They
    touch nothing until a job is issued, so they can be made (and a new root
    checked against them) before the tree is.

    Args:
        config: the run's options.
        paths: the tree.
        tree_id: the tree's id.

    Raises:
        BatchSystemError: a name is unknown.
        BadOptionError: a cluster config file or option is bad.
    """
    batches = {"main": batch_systems.create(
        config.batchSystem, config.maxThreads, config.maxCpus, config.maxMemory,
        options=config, tree_id=tree_id,
        workdir=batch_workdir(paths, "main", config.batchSystem))}
    if config.bigBatchSystem:
        batches["big"] = batch_systems.create(
            config.bigBatchSystem, config.maxThreads, config.bigMaxCpus, config.bigMaxMemory,
            options=config, tree_id=tree_id,
            workdir=batch_workdir(paths, "big", config.bigBatchSystem))
    return batches


def close_batches(batches: dict[str, BatchSystem]) -> None:
    """Closes the batch systems of a run (stopping whatever they still run)."""
    for batch in batches.values():
        batch.close()


#: the runs of this process that log now (a Pool runs several masters at
#: once); the first sets up jobtree's log, the last takes it down
_logging = threading.Lock()
_logging_runs: list[Any] = []  # [saved level and propagate, handlers] while any run


@contextlib.contextmanager
def master_logging(config: Config) -> Iterator[Progress]:
    """Sends jobtree's log to stderr (and --logFile) for the length of a run.

    Yields:
        the run's progress: a line kept up to date on stderr when it is a
        terminal and the log level shows INFO, else a log line now and then.
        A run while another of this process runs shares the other's log,
        and its progress is log lines.
    """
    with _logging:
        if _logging_runs:
            _logging_runs[0] += 1
            shared = True
        else:
            shared = False
    if shared:
        progress = Progress(sys.stderr, live=False)
        try:
            yield progress
        finally:
            progress.finish()
            _leave_logging()
        return
    log = logging.getLogger("jobtree")
    progress = Progress(sys.stderr, live=is_terminal(sys.stderr)
                        and config.log_level <= logging.INFO)
    handlers: list[logging.Handler] = [ProgressHandler(progress) if progress.live
                                       else logging.StreamHandler(sys.stderr)]
    if config.logFile:
        try:
            if config.rotatingLogging:
                handlers.append(logging.handlers.RotatingFileHandler(
                    config.logFile, maxBytes=config.maxLogFileSize, backupCount=3))
            else:
                handlers.append(logging.FileHandler(config.logFile))
        except OSError as err:
            raise BadOptionError(f"--logFile {config.logFile} cannot be written: "
                                 f"{err.strerror}. Give a file in a folder that exists "
                                 f"and that you can write.") from None
    formatter = logging.Formatter("%(asctime)s jobtree %(levelname)s: %(message)s",
                                  "%Y-%m-%d %H:%M:%S")
    with _logging:
        _logging_runs[:] = [1, (log.level, log.propagate), handlers]
    for handler in handlers:
        handler.setFormatter(formatter)
        log.addHandler(handler)
    log.setLevel(config.log_level)
    log.propagate = False
    try:
        yield progress
    finally:
        progress.finish()
        _leave_logging()


def _leave_logging() -> None:
    """The end of a run's logging: the last run takes jobtree's log down."""
    with _logging:
        _logging_runs[0] -= 1
        if _logging_runs[0] > 0:
            return
        _, saved, handlers = _logging_runs
        _logging_runs.clear()
    log = logging.getLogger("jobtree")
    for handler in handlers:
        log.removeHandler(handler)
        handler.close()
    log.setLevel(saved[0])
    log.propagate = saved[1]


@contextlib.contextmanager
def _stop_on_signals(master: Master) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if signum == signal.SIGINT and master.stopping:
            raise KeyboardInterrupt  # a second Ctrl-C
        master.request_stop(f"received {signal.Signals(signum).name}")

    # a signal ignored on purpose (nohup, a background job) stays ignored
    saved = {s: signal.signal(s, handler)
             for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
             if signal.getsignal(s) is not signal.SIG_IGN}
    try:
        yield
    finally:
        for sig, old in saved.items():
            signal.signal(sig, old)


def run(paths: TreePaths, config: Config, changed: list[str], batches: dict[str, BatchSystem],
        notices: list[tuple[int, str]] | None = None,
        on_master: Callable[[Master | None], None] | None = None) -> int:
    """Runs the master on an existing tree until nothing more can run.

    Args:
        batches: the batch systems to run with, by role (see
            :func:`make_batches`); closed before the tree is let go, or at
            once if it cannot be had.
        notices: (level, message) to log once the run's log is set up.
        on_master: called with the master once it runs, and with None when
            it has stopped (a Pool keeps it, to stop it from another thread).

    Returns:
        the number of targets that failed permanently.

    Raises:
        JobTreeError: the tree cannot be run (locked, bad batch system, ...).
    """
    try:
        return _run_locked(paths, config, changed, batches, notices or [], on_master)
    except sqlite3.Error as err:
        raise TreeError(
            f"The index of {paths.root} cannot be written ({err}). Finished work is safe; "
            f"check that the disk is not full and the directory is writable, then continue "
            f"with:  jobTreeRun --jobTree {paths.root}") from err
    except OSError as err:
        raise TreeError(
            f"jobtree could not write in {paths.root} ({err}). Finished work is safe; fix the "
            f"cause (disk full? permissions?), then continue with:  jobTreeRun --jobTree "
            f"{paths.root}") from err


@contextlib.contextmanager
def _holding(paths: TreePaths, config: Config,
             batches: dict[str, BatchSystem]) -> Iterator[Progress]:
    """Sets up the run's log and takes the tree's lock; the batch systems are
    closed before either is let go, or at once if they cannot be had.

    Yields:
        the run's progress (see :func:`master_logging`).
    """
    with contextlib.ExitStack() as stack:
        try:
            progress = stack.enter_context(master_logging(config))
            stack.enter_context(master_lock(paths))
        finally:
            stack.callback(close_batches, batches)  # last in, so first out
        yield progress


def _run_locked(paths: TreePaths, config: Config, changed: list[str],
                batches: dict[str, BatchSystem], notices: list[tuple[int, str]],
                on_master: Callable[[Master | None], None] | None) -> int:
    with _holding(paths, config, batches) as progress:
        store = JobStore.open(paths)
        try:
            for level, notice in notices:
                logger.log(level, "%s", notice)
            if changed:
                logger.info("options changed since the last run: %s", "; ".join(changed))
            store.set_meta("options", config.stored())
            master = Master(store, config, batches, progress=progress)
            logger.info("running %s on %s", paths.root, ", ".join(
                f"{b.name}" for b in batches.values()))
            if on_master is not None:
                on_master(master)
            try:
                with _stop_on_signals(master):
                    return master.run()
            finally:
                if on_master is not None:
                    on_master(None)
        finally:
            store.close()


def getReturnValue(jobTree: str, target: int = 1) -> Any:
    """What ``run()`` of a target of a finished (or running) tree returned:
    by default the root's; ``target`` is a job id as jobTreeStatus lists them.

    Raises:
        TreeError: the tree cannot be read, has no such target, or the target
            has not run successfully yet.
        ReturnValueError: the value cannot be read back: its file in values/
            is missing or damaged (the message names it), or run() returned a
            value that could not be pickled (named with its type).
    """
    from .jobstore import JobState
    from .promise import load_value

    paths = TreePaths(os.path.abspath(os.path.expanduser(jobTree)))
    check_owner(paths)
    store = JobStore.open(paths, readonly=True)
    try:
        try:
            job = store.job(target)
        except KeyError:
            raise TreeError(f"The tree {paths.root} has no target {target}; jobTreeStatus "
                            f"--jobTree {paths.root} --state done lists those that ran.") from None
        stored = store.returned(target)
    finally:
        store.close()
    if stored is None:
        if job.state in (JobState.RAN, JobState.DONE):
            return None  # it returned None
        raise TreeError(
            f"Target {target} ({job.description}) of {paths.root} has not run successfully "
            f"yet (it is {job.state.name.lower()}), so it has no value. Continue the tree "
            f"with:  jobTreeRun --jobTree {paths.root}")
    return load_value(stored, job.description)
