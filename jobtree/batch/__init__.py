"""Batch systems: the contract, and creating one by its --batchSystem name."""

from __future__ import annotations

from typing import Callable

from ..errors import BatchSystemError
from .base import BatchJobId, BatchSystem, ExitReason, JobSpec, Update
from .local import SingleMachine

__all__ = ["BatchJobId", "BatchSystem", "ExitReason", "JobSpec", "Update", "create",
           "known_names"]

_ALIASES = {"singlemachine": "singleMachine", "single_machine": "singleMachine",
            "local": "singleMachine"}


def _single_machine(max_threads: int | None, max_cpus: float | None,
                    max_memory: int | None) -> BatchSystem:
    return SingleMachine(max_threads=max_threads, max_cpus=max_cpus, max_memory=max_memory)


_FACTORIES: dict[str, Callable[[int | None, float | None, int | None], BatchSystem]] = {
    "singleMachine": _single_machine,
}


def known_names() -> list[str]:
    """The names --batchSystem accepts."""
    return sorted(_FACTORIES)


def canonical_name(name: str) -> str:
    """The canonical spelling of a batch system name.

    Raises:
        BatchSystemError: the name is unknown.
    """
    if name in _FACTORIES:
        return name
    alias = _ALIASES.get(name.lower().replace("-", "_").replace("_", "")) or _ALIASES.get(
        name.lower())
    if alias:
        return alias
    raise BatchSystemError(
        f"Unknown batch system {name!r}. --batchSystem takes one of: "
        f"{', '.join(known_names())}.")


def create(name: str, max_threads: int | None = None, max_cpus: float | None = None,
           max_memory: int | None = None) -> BatchSystem:
    """Creates the batch system called ``name``.

    Raises:
        BatchSystemError: the name is unknown or the system cannot start.
    """
    return _FACTORIES[canonical_name(name)](max_threads, max_cpus, max_memory)
