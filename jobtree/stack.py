"""Stack: the options and ``startJobTree``, the entry point of a pipeline script."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .errors import JobTreeError, TargetDefinitionError
from .options import add_options, default_options
from .target import Target, class_name

if TYPE_CHECKING:
    from .jobstore import NewJob

# The master's modules (sqlite3, filelock, the batch systems) are imported in
# startJobTree, so that a worker importing a pipeline script stays quick (and
# after singleMachine's fork server is started, which then starts up meanwhile).


class Stack:
    """Runs a tree whose root is ``target``.

    Example::

        parser = argparse.ArgumentParser()
        Stack.addJobTreeOptions(parser)
        options = parser.parse_args()
        failed = Stack(Setup(options.input)).startJobTree(options)
    """

    def __init__(self, target: Target) -> None:
        if not isinstance(target, Target) or "_jt_resources" not in target.__dict__:
            raise TargetDefinitionError(
                f"Stack() takes a Target whose __init__ calls Target.__init__, not "
                f"{type(target).__name__}.")
        self.target = target

    @staticmethod
    def addJobTreeOptions(parser: Any) -> None:
        """Adds jobtree's options (``--jobTree``, ``--batchSystem``, ...) to an
        argparse.ArgumentParser or optparse.OptionParser."""
        add_options(parser)

    @staticmethod
    def getDefaultOptions() -> argparse.Namespace:
        """Options as if none were given on the command line (edit ``jobTree``)."""
        return default_options()

    def startJobTree(self, options: Any) -> int:
        """Runs the tree in ``options.jobTree``: creates it if absent, continues it
        if it exists (as jobTreeRun does).

        Returns:
            the number of targets that failed permanently (0 = success).

        Raises:
            JobTreeError: the options, the target or the tree directory cannot be
                used; printed without a traceback if the script does not catch it.
        """
        from .paths import TreePaths, exists_but_empty

        _install_excepthook()
        script = os.environ.get("JOBTREE_IMPORTING_SCRIPT")
        if script:
            raise TargetDefinitionError(
                f"The script {script} started a tree while a worker imported it to load its "
                f"target classes. Workers import the script as a module, so put the code "
                f"that parses options and starts the tree under "
                f"`if __name__ == \"__main__\":`.")
        paths = TreePaths(os.path.abspath(os.path.expanduser(
            getattr(options, "jobTree", None) or "./jobTree")))
        fingerprint = _fingerprint(self.target)
        new = not os.path.exists(paths.root) or exists_but_empty(paths)
        _warm_fork_server(options, fingerprint["script"] if new else None)
        from . import batch as batch_systems
        from . import tree
        from .jobstore import JobStore
        from .options import resolve

        notices: list[tuple[int, str]] = []
        if not new:
            tree.check_owner(paths)
            store = JobStore.open(paths, readonly=True)
            try:
                tree.check_same_pipeline(store, fingerprint)
                meta = store.meta()
            finally:
                store.close()
            config, changed = resolve(options, meta.get("options"))
            batch_systems.canonical_name(config.batchSystem)
            described = self.target._jt_describe()
            if meta.get("root_description") not in (None, described):
                notices.append((logging.WARNING, (
                    f"continuing the existing tree {paths.root}, started with the root "
                    f"{meta['root_description']}; the root given now, {described}, is "
                    f"ignored. To start over with it, remove the tree first:  jobTreeClean "
                    f"--jobTree {paths.root}")))
        else:
            config, changed = resolve(options)
            root = self._root_job(config)
            tree.create(paths, root, config, fingerprint)
            notices.append((logging.INFO, f"created the job tree {paths.root}"))
        return tree.run(paths, config, changed, notices)

    def _root_job(self, config: Any) -> NewJob:
        """Checks the root against the batch system and pickles it."""
        from . import tree
        from .jobstore import NewJob
        from .resources import Resources
        from .target import check_fits

        batches = tree.make_batches(config)
        try:
            defaults = Resources(cpu=config.defaultCpu, memory=config.defaultMemory,
                                 time=config.defaultTime, disk=config.defaultDisk)
            wanted = self.target.getResources().with_defaults(defaults)
            role = "main"
            if "big" in batches and (
                    (config.bigMemoryThreshold is not None
                     and (wanted.memory or 0) >= config.bigMemoryThreshold)
                    or (config.bigCpuThreshold is not None
                        and (wanted.cpu or 0) >= config.bigCpuThreshold)):
                role = "big"
            check_fits(self.target, wanted, batches[role].limits(),
                       f"{batches[role].name} (--maxCpus/--maxMemory)")
        finally:
            for batch in batches.values():
                batch.close()
        from .promise import PromiseError, dump_with_needs

        data, needs, token = dump_with_needs(self.target)
        if needs:
            raise PromiseError(
                f"The root target {self.target._jt_describe()} holds the promise "
                f"{next(iter(needs.values()))}.rv(), but nothing runs before the root. Pass "
                f"promises only to targets added inside run(): the promised target's "
                f"children, or the follow-on of the target that added it.")
        res = self.target.getResources()
        return NewJob(class_name(self.target), self.target._jt_describe(), res.cpu,
                      res.memory, res.time, res.disk, data, res.cluster_only() or None,
                      token=token)


def _warm_fork_server(options: Any, script: str | None) -> None:
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


def _fingerprint(target: Target) -> dict[str, Any]:
    """What identifies a pipeline: its script and its root target's class."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    script: str | None = None
    if spec is not None and getattr(spec, "name", None):
        script = spec.name
    elif isinstance(getattr(main, "__file__", None), str):
        script = os.path.realpath(str(getattr(main, "__file__")))
    return {"script": script, "root_class": class_name(target)}


def _install_excepthook() -> None:
    """Makes an uncaught JobTreeError print as one paragraph, without a traceback."""
    previous = sys.excepthook
    if getattr(previous, "jobtree", False):
        return

    def hook(kind: type[BaseException], value: BaseException,
             trace: TracebackType | None) -> None:
        if isinstance(value, JobTreeError):
            print(f"jobtree: {value}", file=sys.stderr)
            return
        previous(kind, value, trace)

    hook.jobtree = True  # type: ignore[attr-defined]
    sys.excepthook = hook
