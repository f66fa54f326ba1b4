"""Where everything lives inside a ``--jobTree`` directory, and atomic file writes."""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import re
import stat
import sys

from . import metrics
from .errors import BadOptionError, TempDirError, TreeError

logger = logging.getLogger(__name__)


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

    def pending_result(self, job_id: int, attempt: int) -> str:
        """Where a worker in a pilot leaves its result, not yet synced, for
        the pilot to sync with others and rename into place (see
        :mod:`jobtree.batch.pilot_runner`)."""
        return os.path.join(self.results, f"{PENDING_PREFIX}{job_id}.{attempt}")

    def log(self, job_id: int, attempt: int) -> str:
        return os.path.join(self.logs, f"{job_id}.{attempt}.log")

    def chain_dir(self, chain_id: int) -> str:
        return os.path.join(self.global_tmp, str(chain_id))

    def folders(self) -> tuple[str, ...]:
        return (self.jobs, self.results, self.logs, self.global_tmp, self.control)


#: a control character (C0, DEL, C1): never part of a path jobtree writes into a job script
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def control_character(text: str) -> str | None:
    """The first control character (newline, carriage return, tab, escape, ...)
    in ``text`` as Python spells it (``'\\n'``), or None if it has none."""
    found = _CONTROL.search(text)
    return None if found is None else repr(found.group())[1:-1]


def check_tree_path(root: str) -> str:
    """Refuses a ``--jobTree`` path that holds a control character: the path
    goes into job scripts, where a newline would start a shell line.

    Returns:
        ``root``.

    Raises:
        BadOptionError: naming the path and the character.
    """
    bad = control_character(root)
    if bad is not None:
        raise BadOptionError(
            f"--jobTree {root!r} holds a control character ({bad}); a tree path goes into "
            f"the job scripts of cluster jobs, where it could start a command of its own. "
            f"Choose a --jobTree path of printable characters.")
    return root


def tree_root(paths: TreePaths) -> TreePaths:
    """The tree that ``--jobTree`` names: a symbolic link to a directory is
    followed (the tree lives in the directory it points to); the path is
    checked with :func:`check_tree_path`.

    Raises:
        BadOptionError: the path holds a control character.
        TreeError: the path is a symbolic link to nothing (a dangling one,
            or a loop) or to something that is not a directory.
    """
    check_tree_path(paths.root)
    if not os.path.islink(paths.root):
        return paths
    target = os.path.realpath(paths.root)
    if os.path.isdir(target):
        return TreePaths(check_tree_path(target))
    try:
        shown = os.readlink(paths.root)
    except OSError:
        shown = target
    if not os.path.exists(target):
        raise TreeError(
            f"--jobTree {paths.root} is a symbolic link to {shown}, which does not exist "
            f"(or the links loop). Create that directory (mkdir -p {target}) to keep the "
            f"tree there, or give --jobTree a path that is not a link.")
    raise TreeError(
        f"--jobTree {paths.root} is a symbolic link to {shown}, which is not a directory. "
        f"Give --jobTree a directory (or a link to one).")


#: the name prefix of a result a worker left for the node runner (a pilot, an
#: array task) that forked it to
#: publish (``results/.pending-<job>.<attempt>``)
PENDING_PREFIX = ".pending-"

#: the levels of a tree's local temp root below ``$TMPDIR``: ``jobtree-<uid>``
#: (or ``jobtree-<uid>-<tree id>``), then the tree's id
LOCAL_ROOT_LEVELS = 2


def temp_base() -> str:
    """The node-local folder for temp dirs: ``$TMPDIR``, else /tmp (not
    tempfile.gettempdir(), which writes a test file each time a process asks)."""
    return os.environ.get("TMPDIR") or "/tmp"


def local_temp_root(tree_id: str) -> str:
    """The node-local folder under which workers of one tree make their local
    temp dirs: ``$TMPDIR/jobtree-<uid>/<tree id>``.

    When a level of it exists but is not a private folder of this user (see
    :func:`private_problem`: another user's, a symbolic link, or open to
    others' writes), it is not used: the root is then
    ``$TMPDIR/jobtree-<uid>-<tree id>/<tree id>`` instead, with a warning that
    names the bad path. Every process of the tree (master, runner, worker)
    comes to the same answer, so each finds and cleans the others' folders.
    :func:`make_private_dirs` checks every level again as it makes them.
    """
    base, uid = temp_base(), os.getuid()
    normal = os.path.join(base, f"jobtree-{uid}", tree_id)
    for level in (os.path.dirname(normal), normal):
        problem = private_problem(level, missing_ok=True)
        if problem is not None:
            fallback = os.path.join(base, f"jobtree-{uid}-{tree_id}", tree_id)
            logger.warning("not using %s for local temp dirs: it %s; using %s instead "
                           "(remove %s, or set TMPDIR to a folder of your own)",
                           level, problem, os.path.dirname(fallback), level)
            return fallback
    return normal


def private_problem(path: str, missing_ok: bool = False) -> str | None:
    """Why ``path`` is not a private folder of this user, or None if it is.

    Private: a directory itself (``lstat``: a symbolic link is never
    followed), owned by this user, that no one else may write (a folder others
    may only read, as jobtree made them before, is private enough: nothing in
    it is theirs; :func:`make_private_dirs` closes it).

    Args:
        missing_ok: a path that does not exist has no problem.
    """
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None if missing_ok else "does not exist"
    except OSError as err:
        return f"cannot be examined ({err.strerror})"
    if stat.S_ISLNK(info.st_mode):
        return "is a symbolic link"
    if not stat.S_ISDIR(info.st_mode):
        return "is not a directory"
    if info.st_uid != os.getuid():
        return f"belongs to another user (uid {info.st_uid})"
    if info.st_mode & 0o022:
        return f"may be written by others (mode {stat.S_IMODE(info.st_mode):04o})"
    return None


def make_private_dirs(path: str, levels: int) -> str:
    """Makes ``path`` and the ``levels - 1`` folders above it that it needs,
    each one made by this process with mode 0700 or found private
    (:func:`private_problem`) and closed to 0700; the folder above them
    (``$TMPDIR``) must not be open to everyone's writes without the sticky bit.

    Returns:
        ``path``.

    Raises:
        TempDirError: naming the first level that is not private, and what to do.
    """
    parts = []
    top = path
    for _ in range(levels):
        top, name = os.path.split(top)
        parts.append(name)
    _check_base(top)
    current = top
    for name in reversed(parts):
        current = os.path.join(current, name)
        try:
            os.mkdir(current, 0o700)
        except FileExistsError:
            pass
        except OSError as err:
            raise TempDirError(f"Cannot make the local temp dir {current}: {err.strerror}. "
                               f"Set TMPDIR to a folder of your own you can write.") from err
        problem = private_problem(current)
        if problem is not None:
            raise TempDirError(
                f"The local temp dir {current} {problem}, so jobtree will not use it: "
                f"another user could read or replace what targets write there. Remove "
                f"{current} (or ask its owner to), or set TMPDIR to a folder of your own.")
        if stat.S_IMODE(os.lstat(current).st_mode) != 0o700:
            os.chmod(current, 0o700)
    return path


def _check_base(base: str) -> None:
    """Refuses a temp base anyone may write without the sticky bit (there,
    anyone could swap the folders jobtree makes in it); makes a missing one."""
    try:
        info = os.stat(base)
    except FileNotFoundError:
        os.makedirs(base, mode=0o700, exist_ok=True)
        return
    if (info.st_mode & 0o002 and not info.st_mode & stat.S_ISVTX
            and info.st_uid != os.getuid()):
        raise TempDirError(
            f"The temp folder {base} may be written by everyone and has no sticky bit, so "
            f"another user could replace the local temp dirs jobtree makes in it. Set "
            f"TMPDIR to a folder of your own (or ask for chmod +t {base}).")


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
