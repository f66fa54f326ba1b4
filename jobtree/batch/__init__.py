"""Batch systems: the contract, and creating one by its --batchSystem name."""

from __future__ import annotations

import importlib
from typing import Any

from ..errors import BatchSystemError
from .base import BatchJobId, BatchSystem, ExitReason, JobSpec, Update

# the batch systems are imported when created: a worker that imports
# jobtree.batch.base (or the fork server) does not pay for them

__all__ = ["BatchJobId", "BatchSystem", "ExitReason", "JobSpec", "Update", "create",
           "known_names", "CLUSTERS"]

#: cluster batch systems: name -> (module, SchedulerDialect class); imported when used
CLUSTERS = {
    "slurm": ("slurm", "Slurm"),
    "gridEngine": ("gridengine", "GridEngine"),
    "torque": ("torque", "Torque"),
    "pbspro": ("pbspro", "PBSPro"),
    "lsf": ("lsf", "LSF"),
}

_ALIASES = {"singlemachine": "singleMachine", "local": "singleMachine",
            "slurm": "slurm", "gridengine": "gridEngine", "sge": "gridEngine",
            "ge": "gridEngine", "uge": "gridEngine", "oge": "gridEngine",
            "pbs": "torque", "torque": "torque", "pbstorque": "torque",
            "pbspro": "pbspro", "openpbs": "pbspro", "lsf": "lsf"}


def known_names() -> list[str]:
    """The names --batchSystem accepts."""
    return ["singleMachine", *CLUSTERS]


def canonical_name(name: str) -> str:
    """The canonical spelling of a batch system name.

    Raises:
        BatchSystemError: the name is unknown.
    """
    alias = _ALIASES.get(name.lower().replace("-", "").replace("_", "").replace("/", ""))
    if alias:
        return alias
    raise BatchSystemError(
        f"Unknown batch system {name!r}. --batchSystem takes one of: "
        f"{', '.join(known_names())} (pbs is Torque; sge is gridEngine).")


def create(name: str, max_threads: int | None = None, max_cpus: float | None = None,
           max_memory: int | None = None, *, options: Any = None, workdir: str | None = None,
           tree_id: str | None = None) -> BatchSystem:
    """Creates the batch system called ``name``.

    Args:
        name: a --batchSystem name.
        max_threads: most jobs at once (--maxThreads).
        max_cpus: the largest cpu request allowed (and, locally, the cores used).
        max_memory: the largest memory request allowed (and, locally, the memory used).
        options: the tree's options (cluster config file, queue, account, ...).
        workdir: where a cluster batch system keeps its job files (None: no
            jobs will be issued, as when a new root is checked).
        tree_id: the tree's id, which names its scheduler jobs.

    Raises:
        BatchSystemError: the name is unknown.
        BadOptionError: the cluster config file or an option is bad.
    """
    canonical = canonical_name(name)
    if canonical == "singleMachine":
        from .local import SingleMachine

        return SingleMachine(max_threads=max_threads, max_cpus=max_cpus, max_memory=max_memory)
    from .cluster import ClusterBatchSystem
    from .settings import cluster_settings

    module, cls = CLUSTERS[canonical]
    dialect = getattr(importlib.import_module(f".{module}", __name__), cls)()
    settings = cluster_settings(canonical, options, workdir, tree_id, max_threads, max_cpus,
                                max_memory)
    system = ClusterBatchSystem(dialect, settings)
    system.check_commands()
    return system
