"""jobtree: write cluster pipelines as trees of targets.

Subclass :class:`Target`, add children and a follow-on in ``run()``, and start
the tree with ``Stack(root).startJobTree(options)``. The names are those of the
classic jobTree, so old scripts port by changing their imports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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
from .promise import Promise, PromiseError, ReturnValueError
from .target import CommandTarget, FunctionWrappingTarget, Target, TargetFunctionWrappingTarget
from .tempfiles import getTempDirectory, getTempFile

if TYPE_CHECKING:
    from .pool import AsyncResult, Pool, PoolError, TaskFailure
    from .stack import Stack
    from .tree import getReturnValue

_POOL_NAMES = ("AsyncResult", "Pool", "PoolError", "TaskFailure")


def __getattr__(name: str) -> Any:
    # Stack (and with it the options) is imported when a script first asks for
    # it, so that workers and the fork server, which only run targets, start
    # quickly
    if name == "Stack":
        from .stack import Stack

        return Stack
    if name in _POOL_NAMES:
        from . import pool

        return getattr(pool, name)
    if name == "getReturnValue":  # reads a tree: as heavy to import as Stack
        from .tree import getReturnValue

        return getReturnValue
    raise AttributeError(f"module 'jobtree' has no attribute {name!r}")

__all__ = [
    "AsyncResult", "BadOptionError", "BatchSystemError", "CommandTarget",
    "FunctionWrappingTarget", "JobTreeError", "Pool", "PoolError", "Promise", "PromiseError",
    "ResourceError", "ReturnValueError", "SchedulerCommandError", "Stack", "Target",
    "TargetDefinitionError", "TargetFunctionWrappingTarget", "TaskFailure", "TreeError",
    "TreeLockedError",
    "TreeStopped", "UnpicklableTargetError", "__version__", "getReturnValue", "getTempDirectory",
    "getTempFile",
]
