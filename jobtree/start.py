"""Starting or continuing a tree: the one road that Stack, Pool and jobTreeRun take.

:func:`start_tree` opens the tree (or creates it from the pipeline's root),
resolves the options given against those the tree was run with, creates the
batch systems once (a new root is checked against them before the tree is
made) and runs the master with them.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import uuid
from typing import TYPE_CHECKING, Any, Callable

from .errors import JobTreeError
from .paths import TreePaths, exists_but_empty, tree_root
from .target import Target, class_name

if TYPE_CHECKING:
    from .batch import BatchSystem
    from .jobstore import NewJob
    from .master import Master
    from .options import Config

# The master's modules (sqlite3, filelock, the batch systems) are imported in
# start_tree, after singleMachine's fork server is started, so that it starts
# up meanwhile; importing this module stays quick.

#: (logging level, message) logged once the master's log is set up
Notice = tuple[int, str]


@dataclasses.dataclass(frozen=True)
class Pipeline:
    """A pipeline's root target, and what identifies the pipeline in its tree.

    Attributes:
        root: the root target of a new tree.
        fingerprint: what the tree keeps to know its pipeline again: the
            script and the root's class (and, for a Pool's call, the call).
    """

    root: Target
    fingerprint: dict[str, Any]

    @classmethod
    def of(cls, root: Target) -> Pipeline:
        """The pipeline of the running script whose root is ``root``."""
        return cls(root, {"script": pipeline_script(), "root_class": class_name(root)})


def pipeline_script() -> str | None:
    """The running script, as a tree names its pipeline: the module run with
    ``python -m``, else the script file's real path (None in a notebook)."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and getattr(spec, "name", None):
        return str(spec.name)
    if isinstance(getattr(main, "__file__", None), str):
        return os.path.realpath(str(getattr(main, "__file__")))
    return None


def start_tree(paths: TreePaths, options: Any, pipeline: Pipeline | None = None, *,
               before_run: Callable[[], None] | None = None,
               on_master: Callable[[Master | None], None] | None = None) -> int:
    """Creates the tree in ``paths`` from ``pipeline`` if there is none, or
    continues the one there; then runs its master until nothing more can run.

    Args:
        paths: the tree.
        options: the options given (parsed from a command line, or a
            Namespace); those not given take the tree's stored values, then
            the defaults.
        pipeline: the pipeline to create the tree with; a tree that exists
            must be of the same pipeline (its root is not used). None: the
            tree must exist (as for jobTreeRun).
        before_run: called once the tree exists, before its master runs.
        on_master: called with the master once it runs, and with None when
            it has stopped (a Pool keeps it, to stop it from another thread).

    Returns:
        the number of targets that failed permanently (0 = success).

    Raises:
        JobTreeError: the options, the root, the batch systems or the tree
            cannot be used; nothing is created then.
    """
    paths = tree_root(paths)  # a link to a directory is followed
    new = pipeline is not None and (not os.path.exists(paths.root) or exists_but_empty(paths))
    if pipeline is not None:  # a script's start: overlaps its imports below
        warm_fork_server(options, pipeline.fingerprint["script"] if new else None)
    from . import tree
    from .options import resolve

    notices: list[Notice] = []
    if new:
        config, changed = resolve(options)
        tree_id = uuid.uuid4().hex
    else:
        meta = _existing_meta(paths, pipeline)
        config, changed = resolve(options, meta.get("options"))
        tree_id = meta["tree_id"]
        notices += _root_ignored(paths, meta, pipeline)
    batches = tree.make_batches(config, paths, tree_id)
    try:
        if new and pipeline is not None:
            root = root_job(pipeline.root, config, batches)
            tree.create(paths, root, config, pipeline.fingerprint, tree_id)
            notices.append((logging.INFO, f"created the job tree {paths.root}"))
        if before_run is not None:
            before_run()
    except BaseException:
        tree.close_batches(batches)
        raise
    return tree.run(paths, config, changed, batches, notices, on_master)


def _existing_meta(paths: TreePaths, pipeline: Pipeline | None) -> dict[str, Any]:
    """What the tree in ``paths`` keeps about itself, once it is known to be
    the user's own tree (and, if ``pipeline`` is given, of that pipeline)."""
    from . import tree
    from .jobstore import JobStore, check_writable

    tree.check_owner(paths)
    check_writable(paths)  # a read-only tree is said to be one, not damaged
    store = JobStore.open(paths, readonly=True)
    try:
        if pipeline is not None:
            tree.check_same_pipeline(store, {key: pipeline.fingerprint.get(key)
                                             for key in ("script", "root_class")})
        meta = store.meta()
    finally:
        store.close()
    make_folders(paths)
    return meta


def make_folders(paths: TreePaths) -> None:
    """Makes again the tree's folders that someone removed (logs/, ...), as a
    new tree has them: a worker cannot write its log into a missing folder.

    Raises:
        TreeError: a folder cannot be made.
    """
    from .errors import TreeError

    for folder in paths.folders():
        try:
            os.makedirs(folder, mode=0o700, exist_ok=True)
        except OSError as err:
            raise TreeError(f"The folder {folder} of the job tree {paths.root} is missing "
                            f"and cannot be made again ({err.strerror}). Make it yourself "
                            f"(mkdir -p {folder}), then run again.") from err


def _root_ignored(paths: TreePaths, meta: dict[str, Any],
                  pipeline: Pipeline | None) -> list[Notice]:
    """A warning if the root given now is not the one the tree was started with."""
    if pipeline is None:
        return []
    described = pipeline.root._jt_describe()
    if meta.get("root_description") in (None, described):
        return []
    return [(logging.WARNING, (
        f"continuing the existing tree {paths.root}, started with the root "
        f"{meta['root_description']}; the root given now, {described}, is ignored. To "
        f"start over with it, remove the tree first:  jobTreeClean --jobTree {paths.root}"))]


def root_job(target: Target, config: Config, batches: dict[str, BatchSystem]) -> NewJob:
    """The root of a new tree, pickled, once it is known to fit the batch
    system it goes to.

    Raises:
        ResourceError: it asks for more than that batch system gives.
        PromiseError: it holds a promise (nothing runs before the root).
    """
    from .jobstore import NewJob
    from .placement import default_resources, route
    from .promise import PromiseError, dump_with_needs
    from .target import check_fits

    wanted = target.getResources().with_defaults(default_resources(config))
    batch = batches[route(config, wanted, batches)]
    check_fits(target, wanted, batch.limits(), f"{batch.name} (--maxCpus/--maxMemory)")
    data, needs, token = dump_with_needs(target)
    if needs:
        raise PromiseError(
            f"The root target {target._jt_describe()} holds the promise "
            f"{next(iter(needs.values()))}.rv(), but nothing runs before the root. Pass "
            f"promises only to targets added inside run(): the promised target's "
            f"children, or the follow-on of the target that added it.")
    res = target.getResources()
    return NewJob(class_name(target), target._jt_describe(), res.cpu, res.memory, res.time,
                  res.disk, data, res.cluster_only() or None, token=token,
                  priority=target.getPriority())


def warm_fork_server(options: Any, script: str | None) -> None:
    """Starts singleMachine's fork server at once, so that it starts up while
    this process imports the master and builds the tree; for a new tree it
    imports the pipeline's ``script`` right away too."""
    from .batch import canonical_name

    try:
        if canonical_name(str(getattr(options, "batchSystem", None)
                              or "singleMachine")) != "singleMachine":
            return
    except JobTreeError:
        return  # reported when the options are checked
    from .batch.local import prestart_fork_server
    from .paths import worker_sys_path

    prestart_fork_server(script, worker_sys_path())
