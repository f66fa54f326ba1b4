"""``from jobtree.scriptTree.target import Target``, as in classic jobTree."""

from ..target import FunctionWrappingTarget, Target, TargetFunctionWrappingTarget

__all__ = ["FunctionWrappingTarget", "Target", "TargetFunctionWrappingTarget"]
