"""Stack: the options and ``startJobTree``, the entry point of a pipeline script."""

from __future__ import annotations

import argparse
import os
import sys
from types import TracebackType
from typing import Any

from .errors import JobTreeError, TargetDefinitionError
from .options import add_options, default_options
from .target import Target

# The master's modules (sqlite3, filelock, the batch systems) are imported in
# startJobTree (see jobtree.start), so that a worker importing a pipeline
# script stays quick.


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
        from .paths import TreePaths
        from .start import Pipeline, start_tree

        _install_excepthook()
        script = os.environ.get("JOBTREE_IMPORTING_SCRIPT")
        if script:
            raise TargetDefinitionError(
                f"The script {script} started a tree while a worker imported it to load its "
                f"target classes. Workers import the script as a module, so put the code "
                f"that parses options and starts the tree under "
                f"`if __name__ == \"__main__\":`.")
        location = getattr(options, "jobTree", None) or "./jobTree"
        if str(location).startswith("ssh://"):
            from .remote import run_pipeline
            run_pipeline(options)  # runs the script there; exits with its status
        paths = TreePaths(os.path.abspath(os.path.expanduser(location)))
        return start_tree(paths, options, Pipeline.of(self.target))


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
