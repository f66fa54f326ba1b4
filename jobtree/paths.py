"""Where everything lives inside a ``--jobTree`` directory, and atomic file writes."""

from __future__ import annotations

import dataclasses
import itertools
import os
import sys

from . import metrics


@dataclasses.dataclass(frozen=True)
class TreePaths:
    """The files and folders of one tree.

    ``tree.db`` is the index (only the master writes it); ``jobs/`` holds the
    input of issued jobs, ``results/`` the results workers leave, ``logs/``
    the logs of attempts (kept for failures), ``tmp/global/`` the global temp
    dirs of chains, ``control/`` requests to a running master.
    """

    root: str

    @property
    def db(self) -> str:
        return os.path.join(self.root, "tree.db")

    @property
    def lock(self) -> str:
        return os.path.join(self.root, "master.lock")

    @property
    def master_info(self) -> str:
        return os.path.join(self.root, "master.json")

    @property
    def config(self) -> str:
        return os.path.join(self.root, "config.json")

    @property
    def jobs(self) -> str:
        return os.path.join(self.root, "jobs")

    @property
    def results(self) -> str:
        return os.path.join(self.root, "results")

    @property
    def values(self) -> str:
        """Large values returned by run(), one file each (made when needed)."""
        return os.path.join(self.root, "values")

    @property
    def logs(self) -> str:
        return os.path.join(self.root, "logs")

    @property
    def global_tmp(self) -> str:
        return os.path.join(self.root, "tmp", "global")

    @property
    def batch(self) -> str:
        """Job scripts, manifests and exit files of cluster batch systems."""
        return os.path.join(self.root, "batch")

    @property
    def control(self) -> str:
        return os.path.join(self.root, "control")

    @property
    def kill_request(self) -> str:
        return os.path.join(self.control, "kill")

    def job_input(self, job_id: int) -> str:
        return os.path.join(self.jobs, str(job_id))

    def result(self, job_id: int, attempt: int) -> str:
        return os.path.join(self.results, f"{job_id}.{attempt}")

    def log(self, job_id: int, attempt: int) -> str:
        return os.path.join(self.logs, f"{job_id}.{attempt}.log")

    def chain_dir(self, chain_id: int) -> str:
        return os.path.join(self.global_tmp, str(chain_id))

    def folders(self) -> tuple[str, ...]:
        return (self.jobs, self.results, self.logs, self.global_tmp, self.control)


def local_temp_root(tree_id: str) -> str:
    """The node-local folder under which workers of one tree make their local
    temp dirs (``$TMPDIR`` or /tmp; not tempfile.gettempdir(), which writes a
    test file each time a process asks)."""
    base = os.environ.get("TMPDIR") or "/tmp"
    return os.path.join(base, f"jobtree-{os.getuid()}", tree_id)


#: the file that marks a folder as a Pool's (one job tree per call inside)
POOL_MARKER = "pool.json"


def pool_trees(paths: TreePaths) -> list[TreePaths] | None:
    """The call trees in a Pool's folder, oldest first; None if ``paths`` is
    not a Pool's folder (it has no marker, or it is a tree itself)."""
    if os.path.isfile(paths.db) or not os.path.isfile(os.path.join(paths.root, POOL_MARKER)):
        return None
    found = [TreePaths(os.path.join(paths.root, name)) for name in os.listdir(paths.root)]
    return sorted((p for p in found if os.path.isfile(p.db)),
                  key=lambda p: os.stat(p.db).st_mtime)


#: the folder of a tree reached over ssh that the remote side keeps (the
#: pipeline's copy, the masters' output): made before the tree itself
REMOTE_FOLDER = "remote"


def exists_but_empty(paths: TreePaths) -> bool:
    """Whether ``--jobTree`` names an existing, empty directory (usable for a new
    tree); a new remote tree's folder holds only the remote side's folder."""
    return os.path.isdir(paths.root) and not set(os.listdir(paths.root)) - {REMOTE_FOLDER}


def worker_sys_path() -> list[str]:
    """This process's ``sys.path`` as a new tree stores it for its workers."""
    return [os.path.abspath(p) for p in sys.path if p and os.path.isdir(p)]


def write_atomic(path: str, data: bytes, sync: bool = True) -> None:
    """Writes ``data`` to ``path`` so that the file is either whole or absent:
    a temporary name in the same folder (unique to this process and call),
    fsync unless ``sync`` is false, rename."""
    folder, name = os.path.split(path)
    tmp = os.path.join(folder, f".tmp-{os.getpid()}-{next(_temp_names)}-{name}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if sync:
                os.fsync(fd)
                metrics.count("fsyncs")
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


_temp_names = itertools.count()
