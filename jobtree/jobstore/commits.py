"""The commit counter kept beside the index, which tells an index that lost its
last transactions (its ``tree.db-wal`` deleted after a master crashed) from a
whole one.

The master counts its transactions in the index (``meta.commits``, updated in
each transaction) and, after each commit, in ``commits.json`` beside it: one
small write into a file it keeps open, never synced. The file also names the
boot of the machine (Linux's ``boot_id``). An index whose count is below the
file's was rolled back. On the same boot nothing but a lost ``-wal`` can do
that (the page cache kept both writes), and the tree is refused; after a
restart of the machine a power loss can lose the last few commits of either
file, as docs/format.md allows, and the master only warns.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket

from ..errors import TreeError
from ..paths import TreePaths

#: where Linux names the current boot
BOOT_ID = "/proc/sys/kernel/random/boot_id"
#: the counter file, in the tree
FILE_NAME = "commits.json"
#: the meta key of the count in the index
META_KEY = "commits"


class RolledBackError(TreeError):
    """The index is older than the work the tree recorded (its -wal was lost)."""


@dataclasses.dataclass(frozen=True)
class Mark:
    """What the counter file says."""

    commits: int
    boot: str | None
    host: str | None


def path_of(paths: TreePaths) -> str:
    """The counter file of a tree."""
    return os.path.join(paths.root, FILE_NAME)


def boot_id() -> str | None:
    """This machine's current boot (None where the system does not say)."""
    try:
        with open(BOOT_ID, encoding="ascii") as handle:
            return handle.read().strip() or None
    except OSError:
        return None


def read(paths: TreePaths) -> Mark | None:
    """The counter file's mark, or None if there is none (a tree made before
    jobtree kept one) or it cannot be read."""
    try:
        with open(path_of(paths), encoding="utf-8") as handle:
            data = json.loads(handle.read())
        return Mark(int(data["commits"]), data.get("boot"), data.get("host"))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def rolled_back(paths: TreePaths, mark: Mark | None, stored: int | None) -> bool:
    """Whether the index, holding ``stored`` commits, lost some that the
    counter file (read before the index) saw.

    Raises:
        RolledBackError: it did, on this very boot of this machine, so its
            ``-wal`` was deleted or replaced (or the index copied without it).

    Returns:
        True if it did but the machine has restarted since (a power loss may
        have lost the last commits, which docs/format.md allows); False if the
        index is whole, or there is no mark to tell.
    """
    if mark is None or stored is None or mark.commits <= stored:
        return False
    boot = boot_id()
    if boot is None or mark.boot != boot:
        return True
    lost = mark.commits - stored
    raise RolledBackError(
        f"The index of the job tree {paths.root} is older than the tree: it holds "
        f"{stored:,} of the {mark.commits:,} transactions its master committed (as "
        f"{FILE_NAME} records), so the last {lost:,} are lost. They were in "
        f"{paths.db}-wal, SQLite's write-ahead log, which is part of the tree: it was "
        f"deleted or replaced after a master stopped without closing the index (or the "
        f"tree was copied without it). Continuing would run again the targets those "
        f"transactions recorded as done, and their chains' temp files may be gone. If you "
        f"still have the original tree.db-wal, put it back beside tree.db and continue "
        f"with:  jobTreeRun --jobTree {paths.root}. Otherwise run the pipeline again with "
        f"a new --jobTree; or, to continue from the older state anyway, remove "
        f"{path_of(paths)} and run jobTreeRun again.")


class Counter:
    """The master's side of the counter file: written after each commit into a
    file kept open, at a fixed length so that each write replaces the last."""

    def __init__(self, paths: TreePaths, commits: int) -> None:
        self._fd = os.open(path_of(paths), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        head = json.dumps({"boot": boot_id(), "host": socket.gethostname()})[:-1]
        self._template = head + ', "commits": %-20d}\n'
        self.commits = commits
        data = (self._template % commits).encode()
        os.pwrite(self._fd, data, 0)
        os.ftruncate(self._fd, len(data))  # a longer mark of another host's

    def write(self) -> None:
        """Records ``commits`` in the file."""
        os.pwrite(self._fd, (self._template % self.commits).encode(), 0)

    def close(self) -> None:
        """Closes the file."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
