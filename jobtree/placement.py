"""Where a job runs and with what: the tree's default resources, the rule that
sends a job to the "big" or the "main" batch system, and the limits a job
must fit in. The master and the start of a tree (for its root) both use it.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Any, Callable, Mapping

from .escalation import Caps, LastTry, asked_json, from_json, last_try, next_request, raised_json
from .resources import Resources, call_request

if TYPE_CHECKING:
    from .batch import BatchSystem
    from .options import Config


def default_resources(config: Config) -> Resources:
    """What a target that does not say gets (--defaultCpu, --defaultMemory,
    --defaultTime, --defaultDisk)."""
    return Resources(cpu=config.defaultCpu, memory=config.defaultMemory,
                     time=config.defaultTime, disk=config.defaultDisk,
                     memory_retry_factor=getattr(config, "memoryRetryFactor", None),
                     time_retry_factor=getattr(config, "timeRetryFactor", None))


def route(config: Config, resources: Resources, roles: Mapping[str, object]) -> str:
    """The role of the batch system a job goes to: "big" if there is one and
    the job reaches --bigMemoryThreshold or --bigCpuThreshold, else "main".

    Args:
        config: the run's options.
        resources: the job's resources, defaults applied.
        roles: the batch systems by role (only the keys are looked at).
    """
    if "big" not in roles:
        return "main"
    memory_limit = config.bigMemoryThreshold
    cpu_limit = config.bigCpuThreshold
    if ((memory_limit is not None and (resources.memory or 0) >= memory_limit)
            or (cpu_limit is not None and (resources.cpu or 0) >= cpu_limit)):
        return "big"
    return "main"


def too_big(resources: Resources, batch: BatchSystem) -> str | None:
    """Why a job cannot run on ``batch`` (it asks for more cores or memory
    than the batch system gives), or None if it fits."""
    limits = batch.limits()
    if limits.cpu is not None and (resources.cpu or 0) > limits.cpu + 1e-9:
        return (f"it asks for {resources.cpu:g} cores; {batch.name} gives at most "
                f"{limits.cpu:g} (--maxCpus)")
    if limits.memory is not None and (resources.memory or 0) > limits.memory:
        return (f"it asks for {resources.describe()}; {batch.name} gives at most "
                f"{Resources(memory=limits.memory).describe()} of memory (--maxMemory)")
    return None


def largest_limits(batches: Mapping[str, BatchSystem]) -> Resources:
    """The most cores and memory any of the batch systems gives one job (None:
    no limit), which a worker checks the targets it adds against."""
    cpus = [b.limits().cpu for b in batches.values()]
    memories = [b.limits().memory for b in batches.values()]
    return Resources(cpu=None if None in cpus else max(c for c in cpus if c is not None),
                     memory=None if None in memories else max(
                         m for m in memories if m is not None))


def retry_caps(config: Config, batches: Mapping[str, BatchSystem]) -> Caps:
    """The most a try that asks for more may ask: the batch systems' memory
    (and --maxMemory, without a big batch system), and --maxJobDuration."""
    memories = [largest_limits(batches).memory,
                config.maxMemory if "big" not in batches else None]
    known = [m for m in memories if m is not None]
    return Caps(memory=min(known) if known else None, time=config.maxJobDuration)


def place_try(config: Config, batches: Mapping[str, BatchSystem], own: Resources,
              failure: tuple[int, str, str | None] | None,
              attempt: int, pinned: frozenset[str] = frozenset()
              ) -> tuple[Resources, str, str | None]:
    """What try number ``attempt`` of a job asks (:func:`try_request`), the
    role of the batch system it goes to, and what ``jobs.asked`` keeps. Memory
    grown past what that batch system gives is cut to it (a target that asked
    more than that itself still fails as too big). The ``pinned`` fields
    (those ``jobTreeRun --set`` changed since the last failed try) are asked
    as ``own`` has them: the user's value wins over growth and over the
    target's ``request`` function.

    Raises:
        ResourceError: the target's request function failed.
    """
    if failure is None and (own.request_fn is None or attempt <= 1):
        return own, route(config, own, batches), None  # a first try asks its own request
    request, _ = try_request(own, failure, retry_caps(config, batches), attempt)
    if pinned:
        request = dataclasses.replace(request, **{f: getattr(own, f) for f in pinned})
    role = route(config, request, batches)
    most = batches[role].limits().memory
    if most is not None and request.memory is not None and request.memory > most >= (
            own.memory or 0):
        request = dataclasses.replace(request, memory=most)
    return request, role, raised_json(own, request)


def try_request(own: Resources, failure: tuple[int, str, str | None] | None,
                caps: Caps, attempt: int = 1) -> tuple[Resources, str | None]:
    """What try number ``attempt`` asks for, after the job's last failed try
    (``failure``: its attempt, reason and request as the index keeps them),
    and what of it ``jobs.asked`` keeps (None: the target's own request). A
    failed try of an index before format 5 asked the target's own request; a
    timeout of one is taken as a stop at a hard limit (it may have been). A
    target's ``request`` function decides instead, within the memory cap.

    Raises:
        ResourceError: the target's request function failed.
    """
    if own.request_fn is not None and attempt > 1:
        values = call_request(own.request_fn, attempt, failure[1] if failure else None)
        if caps.memory is not None and values.get("memory") is not None:
            values["memory"] = min(values["memory"], max(caps.memory, own.memory or 0))
        request = dataclasses.replace(own, **values)
        return request, raised_json(own, request)
    last = last_try(*failure) if failure is not None else None
    if failure is not None and last is None:
        last = LastTry(failure[0], failure[1], own, hard_limit=True)
    request = next_request(own, last, caps)
    return request, raised_json(own, request)


def failed_try_asked(own: Resources, asked: str | None, hard_limit: bool,
                     granted: Callable[[Resources], Resources] | None = None) -> str:
    """What a failed try asked (the target's ``own`` request with what the try
    asked beyond it), as ``failures.asked`` keeps it. ``hard_limit``: it was
    stopped at --maxJobDuration; a stop of a target with a ``timeLimit`` is
    always at that hard limit. ``granted``: what its batch system asked of the
    scheduler for it (a memory below the cluster's floor is raised to it), so
    that the next try grows what the try was really given."""
    request = from_json(asked, own)
    if granted is not None:
        request = granted(request)
    return asked_json(request, hard_limit or request.time_limit is not None)


def worker_config(meta: Mapping[str, Any], config: Config,
                  batches: Mapping[str, BatchSystem], defaults: Resources) -> dict[str, Any]:
    """What every worker of the tree reads first (the tree's ``config`` file,
    which the master writes when it starts): the environment to run in, the
    defaults and limits a target's resources and its children are checked
    against, chaining and statistics, and what a warm fork server preloads.

    Args:
        meta: the tree's stored meta values.
        config: this run's options.
        batches: the batch systems by role.
        defaults: the tree's default resources.
    """
    limits = largest_limits(batches)
    return {
        "tree_id": meta["tree_id"], "environ": meta["environ"],
        "sys_path": meta["sys_path"], "cwd": meta["cwd"],
        "defaults": defaults.to_dict(),
        "limits": {"cpu": limits.cpu, "memory": limits.memory},
        "job_time": config.jobTime, "stats": config.stats,
        # a result that reaches the master through another machine's file
        # system is synced; on this machine a torn result after a crash is
        # detected (it does not unpickle) and its job simply runs again
        "sync_results": not all(b.local for b in batches.values()),
        "log_level": logging.DEBUG if config.logLevel == "DEBUG" else logging.INFO,
        # what a warm fork server imports once for all its workers
        "preload": meta.get("script"),
        "preload_modules": _preload_modules(meta),
    }


def _preload_modules(meta: Mapping[str, Any]) -> list[str]:
    """Modules a warm fork server imports besides the script: for a Pool's
    tree, that of its chunks and that of its function (a notebook's pool
    has no script to import them with)."""
    call = meta.get("pool")
    if not isinstance(call, dict):
        return []
    module = call.get("module")
    return ["jobtree.pooltree"] + ([str(module)] if module else [])
