"""What every command shares: the --jobTree argument, opening a tree to read
it, finding its master, and printing errors as one paragraph (exit status 2)
instead of a traceback."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import socket
import sys
import time
from typing import Protocol

from .. import batch as batch_systems
from .. import remote, tree
from ..batch.supervise import alive as _alive
from ..errors import JobTreeError, SchedulerCommandError
from ..jobstore import TreeIndex
from ..paths import TreePaths, pool_trees
from ..sshlink import is_remote

#: exit status of a command stopped by an error the user can fix
EXIT_ERROR = 2


def tree_argument(parser: argparse.ArgumentParser) -> None:
    """Adds ``--jobTree DIR`` (required)."""
    parser.add_argument("--jobTree", required=True, metavar="DIR",
                        help="the job tree directory")


def tree_paths(value: str) -> TreePaths:
    """The paths of the tree named on the command line."""
    return TreePaths(os.path.abspath(os.path.expanduser(value)))


def one_tree(paths: TreePaths) -> TreePaths:
    """The tree a command works on: ``paths``, or the one call's tree of a
    Pool's folder that holds a single call."""
    calls = pool_trees(paths)
    return calls[0] if calls is not None and len(calls) == 1 else paths


def open_tree(paths: TreePaths) -> TreeIndex:
    """Opens an existing tree of this user read-only.

    Raises:
        TreeError: the directory is missing, another user's, or not a tree.
    """
    tree.check_owner(paths)
    return TreeIndex.open(paths)


def plural(count: int, noun: str) -> str:
    """'1 target', '2 targets'."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


# ------------------------------------------------------------- the master
@dataclasses.dataclass(frozen=True)
class MasterState:
    """Whether a master holds a tree, and what it recorded about itself.

    Attributes:
        running: a master holds the tree's lock now.
        host: the host the (last) master recorded, if any.
        pid: its pid on that host, if any.
        started: when it took the tree (epoch seconds), if known.
        local_pid: the pid of the lock holder when it runs on this host and
            this machine can see it (None otherwise).
    """

    running: bool
    host: str | None
    pid: int | None
    started: float | None
    local_pid: int | None

    def describe(self) -> str:
        """'host X, pid N, since T' for messages."""
        if not self.host:
            return "an unknown process"
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started or 0))
        return f"host {self.host}, pid {self.pid}, since {since}"


def find_master(paths: TreePaths) -> MasterState:
    """Finds out whether a master holds the tree, taking its lock only if nothing
    else can tell (a master on another host sharing the tree).

    The master's lock is an ``flock`` on ``master.lock``: on Linux every lock
    taken on this host is listed in ``/proc/locks`` with its holder's pid. A
    lock not listed there can still be held from another host (NFS), unless the
    master that last took the tree ran here and its process is gone.
    """
    info = tree.holder(paths)
    host = info.get("host")
    pid = info.get("pid") if isinstance(info.get("pid"), int) else None
    started = info.get("started") if isinstance(info.get("started"), (int, float)) else None

    def state(running: bool, local_pid: int | None = None) -> MasterState:
        return MasterState(running, host, pid, started, local_pid)

    if not os.path.exists(paths.lock):
        return state(False)  # a master makes the lock file before it takes it
    holder_pid = _local_lock_holder(paths.lock)
    if holder_pid is not None:
        return state(True, holder_pid or None)
    if host == socket.gethostname() and pid is not None and not _alive(pid):
        return state(False)
    running = tree.is_locked(paths)
    local = pid if running and host == socket.gethostname() else None
    return state(running, local)


def _local_lock_holder(path: str) -> int | None:
    """The pid holding a lock on ``path`` as ``/proc/locks`` lists it (0 when the
    holder is in another pid namespace), or None if no lock on this host is seen."""
    try:
        info = os.stat(path)
        with open("/proc/locks", encoding="ascii", errors="replace") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if "->" in fields:  # a waiter, not a holder
            continue
        try:
            pid = int(fields[4])
            major, minor, inode = fields[5].split(":")
            if (int(inode) == info.st_ino and int(major, 16) == os.major(info.st_dev)
                    and int(minor, 16) == os.minor(info.st_dev)):
                return max(pid, 0)
        except (IndexError, ValueError):
            continue
    return None




# ----------------------------------------------------------- the scheduler
class CancelError(JobTreeError):
    """The jobs a scheduler holds for a tree could not be cancelled; the
    command can be run again once the scheduler answers."""


def cancel_scheduler_jobs(paths: TreePaths) -> list[str]:
    """Cancels every job a cluster scheduler still holds for the tree (of this
    master or of one that is gone); returns what was done, as sentences to print."""
    index = open_tree(paths)
    try:
        meta = index.meta()
    finally:
        index.close()
    options = meta.get("options") or {}
    said = []
    for role, key in (("main", "batchSystem"), ("big", "bigBatchSystem")):
        name = options.get(key)
        if not name or batch_systems.canonical_name(name) in ("singleMachine", "allocation"):
            continue  # their jobs end with their master: the scheduler holds none
        system = batch_systems.create(
            name, options=argparse.Namespace(**options),
            workdir=tree.batch_workdir(paths, role, name), tree_id=meta.get("tree_id"))
        try:
            if system.local:  # a plugin's jobs that end with their master
                continue
            count = system.kill_tree()
        except SchedulerCommandError as err:
            raise CancelError(
                f"The {system.name} jobs of {paths.root} could not be cancelled: {err} "
                f"Run jobTreeKill again once the scheduler answers.") from err
        finally:
            system.close()
        said.append(f"Cancelled {plural(count, f'{system.name} job')} of the tree.")
    return said


def _module_of(main: Main) -> str:
    """The importable name of a command's module (also when run with ``-m``)."""
    name = main.__module__
    if name == "__main__":
        spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        name = getattr(spec, "name", None) or name
    return name


class Main(Protocol):
    """A command's main function."""

    def __call__(self, argv: list[str] | None = None) -> int: ...


def entry_point(main: Main) -> Main:
    """Wraps a command's main: JobTreeError and Ctrl-C become one line on stderr."""

    @functools.wraps(main)
    def wrapper(argv: list[str] | None = None) -> int:
        try:
            args = sys.argv[1:] if argv is None else argv
            if is_remote(remote.jobtree_value(args)):
                return remote.run_command(_module_of(main), list(args))
            return main(argv)
        except JobTreeError as err:
            print(f"jobtree: {err}", file=sys.stderr)
            return EXIT_ERROR
        except KeyboardInterrupt:
            print("jobtree: interrupted", file=sys.stderr)
            return 130

    return wrapper
