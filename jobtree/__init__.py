"""jobtree: write cluster pipelines as trees of targets.

Subclass :class:`Target`, add children and a follow-on in ``run()``, and start
the tree with ``Stack(root).startJobTree(options)``. The names are those of the
classic jobTree, so old scripts port by changing their imports.
"""

from __future__ import annotations

from ._version import __version__
from .errors import (
                     BadOptionError,
                     BatchSystemError,
                     JobTreeError,
                     ResourceError,
                     SchedulerCommandError,
                     TargetDefinitionError,
                     TreeError,
                     TreeLockedError,
                     TreeStopped,
                     UnpicklableTargetError,
)
from .stack import Stack
from .target import CommandTarget, FunctionWrappingTarget, Target, TargetFunctionWrappingTarget
from .tempfiles import getTempDirectory, getTempFile

__all__ = [
    "BadOptionError", "BatchSystemError", "CommandTarget", "FunctionWrappingTarget",
    "JobTreeError", "ResourceError", "SchedulerCommandError", "Stack", "Target",
    "TargetDefinitionError", "TargetFunctionWrappingTarget", "TreeError", "TreeLockedError",
    "TreeStopped", "UnpicklableTargetError", "__version__", "getTempDirectory", "getTempFile",
]
