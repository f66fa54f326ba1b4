"""Batch systems: the contract, and creating one by its --batchSystem name.

Besides singleMachine, the cluster adapters (:data:`CLUSTERS`), DRMAA and
allocation (the nodes of the allocation the master runs in), a
batch system may come from another package: a class implementing
:class:`~jobtree.batch.base.BatchSystem`, registered under the entry-point
group ``jobtree.batch_systems`` (see docs/plugins.md). Entry points are read
only when a name is not one of jobtree's own.
"""

from __future__ import annotations

import importlib
import inspect
from importlib import metadata
from typing import Any

from ..errors import BatchSystemError
from .base import BatchJobId, BatchSystem, ExitReason, JobSpec, Update

# the batch systems are imported when created: a worker that imports
# jobtree.batch.base (or the fork server) does not pay for them

__all__ = ["BatchJobId", "BatchSystem", "ExitReason", "JobSpec", "Update", "create",
           "known_names", "canonical_name", "plugins", "CLUSTERS", "PLUGIN_GROUP"]

#: the entry-point group a third-party batch system registers under
PLUGIN_GROUP = "jobtree.batch_systems"

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
            "pbspro": "pbspro", "openpbs": "pbspro", "lsf": "lsf", "drmaa": "drmaa",
            "allocation": "allocation", "alloc": "allocation"}


def plugins() -> dict[str, metadata.EntryPoint]:
    """The batch systems other packages register (entry-point group
    ``jobtree.batch_systems``), by name; a name of jobtree's own is not
    overridden."""
    found: dict[str, metadata.EntryPoint] = {}
    for point in metadata.entry_points(group=PLUGIN_GROUP):
        if _key(point.name) not in _ALIASES:
            found.setdefault(point.name, point)
    return found


def _key(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "").replace("/", "")


def known_names() -> list[str]:
    """The names --batchSystem accepts."""
    return ["singleMachine", *CLUSTERS, "drmaa", "allocation", *sorted(plugins())]


def canonical_name(name: str) -> str:
    """The canonical spelling of a batch system name.

    Raises:
        BatchSystemError: the name is unknown.
    """
    alias = _ALIASES.get(_key(name))
    if alias:
        return alias
    installed = plugins()
    for plugin in installed:
        if _key(plugin) == _key(name):
            return plugin
    plugged = (f"Installed plugins: {', '.join(sorted(installed))}." if installed else
               f"No plugin is installed (a plugin registers under the entry-point group "
               f"{PLUGIN_GROUP}: see docs/plugins.md).")
    raise BatchSystemError(
        f"Unknown batch system {name!r}. --batchSystem takes one of: "
        f"{', '.join(known_names())} (pbs is Torque; sge is gridEngine). {plugged}")


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
    if canonical == "allocation":
        from . import allocation

        return allocation.create(max_threads, max_cpus, max_memory, workdir=workdir)
    if canonical not in CLUSTERS and canonical != "drmaa":
        return _plugin(canonical, max_threads, max_cpus, max_memory, options=options,
                       workdir=workdir, tree_id=tree_id)
    from .cluster import ClusterBatchSystem
    from .settings import cluster_settings

    if canonical == "drmaa":
        from . import drmaa_batch

        return drmaa_batch.create(cluster_settings(canonical, options, workdir, tree_id,
                                                   max_threads, max_cpus, max_memory))
    module, cls = CLUSTERS[canonical]
    dialect = getattr(importlib.import_module(f".{module}", __name__), cls)()
    settings = cluster_settings(canonical, options, workdir, tree_id, max_threads, max_cpus,
                                max_memory)
    system = ClusterBatchSystem(dialect, settings)
    system.check_commands()
    return system


def _plugin(name: str, max_threads: int | None, max_cpus: float | None,
            max_memory: int | None, **context: Any) -> BatchSystem:
    """Creates the plugin batch system ``name``: its class is called with the
    limits, and with those of ``options``, ``workdir`` and ``tree_id`` its
    ``__init__`` takes (by keyword).

    Raises:
        BatchSystemError: the plugin cannot be loaded or is not a batch system.
    """
    point = plugins()[name]
    try:
        factory = point.load()
    except Exception as err:  # noqa: BLE001 - any failure of a third party's import
        raise BatchSystemError(
            f"The batch system plugin {name!r} ({point.value}, from the entry-point group "
            f"{PLUGIN_GROUP}) cannot be loaded: {type(err).__name__}: {err}. Reinstall "
            f"the package that provides it, or choose another --batchSystem.") from err
    try:
        accepted = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        accepted = {}
    takes_any = any(p.kind is p.VAR_KEYWORD for p in accepted.values())
    extra = {k: v for k, v in context.items() if takes_any or k in accepted}
    system = factory(max_threads=max_threads, max_cpus=max_cpus, max_memory=max_memory,
                     **extra)
    if not isinstance(system, BatchSystem):
        raise BatchSystemError(
            f"The batch system plugin {name!r} ({point.value}) made a "
            f"{type(system).__name__}, which is not a jobtree.batch.base.BatchSystem. "
            f"Its authors must subclass it (see docs/plugins.md).")
    return system
