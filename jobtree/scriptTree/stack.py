"""``from jobtree.scriptTree.stack import Stack``, as in classic jobTree."""

from ..stack import Stack

__all__ = ["Stack"]
