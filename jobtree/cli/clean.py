"""jobTreeClean: remove a job tree that no master holds, and its local temp files.

It removes only what is surely a job tree of this user (a directory of yours
holding ``tree.db``), and only while it holds the tree's master lock: the
tree is first renamed aside (atomic, so no master can start on a half-removed
tree), then removed with ``shutil.rmtree``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import uuid

from .. import tree
from ..errors import JobTreeError, TreeError
from ..jobstore import peek
from ..paths import POOL_MARKER, TreePaths, local_temp_root, pool_trees
from .common import cancel_scheduler_jobs, entry_point, tree_argument, tree_paths


def check_removable(paths: TreePaths) -> None:
    """Refuses anything but a real job tree directory of this user.

    Raises:
        TreeError: saying what the path is instead and that it was left alone.
    """
    if os.path.islink(paths.root):
        raise TreeError(
            f"{paths.root} is a symbolic link (to {os.path.realpath(paths.root)}); "
            f"jobTreeClean removes only a tree directory itself, so it left it alone. "
            f"Give the directory it points to as --jobTree.")
    tree.check_owner(paths)
    if not os.path.isfile(paths.db) or os.path.islink(paths.db):
        raise TreeError(
            f"{paths.root} is not a job tree (it has no tree.db), so jobTreeClean left it "
            f"alone: it removes only job trees. Check the --jobTree path.")


def describe_tree(paths: TreePaths) -> tuple[str | None, str]:
    """The tree's id (to find its local temp files) and a few words on its state,
    both read without trusting the index to be whole."""
    found = peek(paths)
    if found is None:
        return None, "its index could not be read"
    tree_id = found.tree_id
    if tree_id is not None and not tree_id.isalnum():
        tree_id = None  # never build a path from an odd value
    return tree_id, f"{found.done} of {found.total} targets done"


def remove_tree(paths: TreePaths) -> None:
    """Renames the tree aside, then removes it.

    Raises:
        TreeError: it could not be renamed or wholly removed.
    """
    parent, name = os.path.split(paths.root)
    doomed = os.path.join(parent, f".{name}.removing-{uuid.uuid4().hex[:8]}")
    try:
        os.rename(paths.root, doomed)
    except OSError as err:
        raise TreeError(f"Cannot remove the job tree {paths.root}: {err}. Check that you "
                        f"can write its parent folder {parent}; nothing was removed.") from err
    problems: list[str] = []

    def note(function: object, path: str, info: object) -> None:
        problems.append(f"{path}: {info[1] if isinstance(info, tuple) else info}")

    if sys.version_info >= (3, 12):
        shutil.rmtree(doomed, onexc=note)
    else:
        shutil.rmtree(doomed, onerror=note)
    if problems:
        raise TreeError(
            f"The job tree {paths.root} was moved to {doomed} for removal, but "
            f"{len(problems)} files could not be removed (first: {problems[0]}). The tree "
            f"is gone; remove {doomed} yourself once the cause is fixed.")


@entry_point
def main(argv: list[str] | None = None) -> int:
    """Removes a tree no master holds; exits 0 when it is gone (or was absent)."""
    parser = argparse.ArgumentParser(
        prog="jobTreeClean",
        description="Remove the job tree in --jobTree and this machine's local temp files "
                    "of it, for good (finished results your pipeline wrote elsewhere stay). "
                    "It refuses a tree a master is running (stop it with jobTreeKill first), "
                    "a directory that is not a job tree (no tree.db) and another user's. "
                    "Exit status: 0 when the tree was removed, or when there was none at "
                    "that path (a message says so, so scripts can clean unconditionally); "
                    "2 when it refused or could not remove it.")
    tree_argument(parser)
    options = parser.parse_args(argv)
    paths = tree_paths(options.jobTree)
    if not os.path.lexists(paths.root):
        print(f"jobtree: there is no job tree at {paths.root}; nothing to remove.")
        return 0
    calls = pool_trees(paths) if not os.path.islink(paths.root) else None
    if calls is not None:
        return _clean_pool(paths, calls)
    _clean(paths)
    return 0


def _clean_pool(paths: TreePaths, calls: list[TreePaths]) -> int:
    """Removes every call's tree of a Pool's folder, then the folder."""
    tree.check_owner(paths)
    for call in calls:
        check_removable(call)
        if tree.is_locked(call):
            raise TreeError(
                f"A master is running {call.root}, a call of the Pool whose folder is "
                f"{paths.root}; jobTreeClean removed nothing. Stop the Pool (or wait for "
                f"the call to finish), then run jobTreeClean again.")
    for call in calls:
        _clean(call)
    os.remove(os.path.join(paths.root, POOL_MARKER))
    try:
        os.rmdir(paths.root)
    except OSError:
        print(f"Kept {paths.root}: it holds files that are not the Pool's.")
        return 0
    print(f"Removed the Pool folder {paths.root}.")
    return 0


def _clean(paths: TreePaths) -> None:
    """Removes one tree, with what it left on the scheduler and this machine."""
    check_removable(paths)
    tree_id, state = describe_tree(paths)
    with tree.master_lock(paths, refusal=(
            f"jobTreeClean left it alone. Stop it first with:  jobTreeKill --jobTree "
            f"{paths.root}  then run jobTreeClean again.")):
        # jobs a crashed master left queued on a cluster would run against a tree
        # that is gone: cancel them first
        try:
            cancelled = cancel_scheduler_jobs(paths)
        except JobTreeError as err:  # a scheduler out of reach must not keep the tree
            cancelled = [f"Warning: {err} Removing the tree anyway; cancel its jobs by "
                         f"name yourself (see docs/clusters.md)."]
        remove_tree(paths)
    for line in cancelled:
        print(line)
    removed = f"Removed the job tree {paths.root} ({state})"
    if tree_id is not None:
        local = local_temp_root(tree_id)
        if os.path.isdir(local) and not os.path.islink(local):
            shutil.rmtree(local, ignore_errors=True)
            removed += f" and its local temp files in {local}"
    print(removed + ".")


if __name__ == "__main__":
    raise SystemExit(main())
