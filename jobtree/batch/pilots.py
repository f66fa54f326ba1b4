"""Pilot jobs on a cluster: the master's pure decisions.

With ``--pilots N`` the cluster base keeps up to N *pilots*: scheduler jobs
that run :mod:`jobtree.batch.pilot_runner`, which claims ready targets from a
queue file the master appends to (``subs/pilots-MASTER.queue``, one JSON
entry a line), one after another, each in its own process with its own log
and exit file, until no target has come for ``pilot_idle`` seconds or its
wall time is near. Claims are the same exclusive start markers as those of
packed array tasks (:mod:`jobtree.batch.runner`), so a target runs once
however many pilots read the queue, and they are taken in the order the
master wrote the entries (the order it issued the targets).

This module decides, without running a command or asking the time:

- which targets a pilot can take (:func:`fits`): one core, no more memory
  than a pilot's core has, a wall time within the pilot's, one node, no GPU,
  and the default queue, account and directives; any other target goes as a
  job of its own, as without pilots;
- what a pilot asks of the scheduler (:func:`pilot_request`);
- how many pilots to submit now (:func:`to_submit`): only while targets wait
  in the queue unclaimed, more than the pilots not yet started will take,
  up to ``--pilots`` that may still take work, and within what ``--maxJobs``
  leaves (a pilot counts one job);
- which queued pilots to cancel (:func:`surplus`): those not started once no
  target has waited for ``pilot_idle`` seconds, so that no pilot holds a
  place in the queue for work that is not there.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

from .jobfiles import Submitted
from .native import Request
from .settings import ClusterSettings

#: entries of a pilots' queue per claims folder: the master lists the folders
#: that hold a target not yet settled, and removes the others
CLAIMS_PER_FOLDER = 1000
#: memory of a pilot's core when ``pilot_memory`` is not set
MEMORY_PER_CORE = 2 * 1024 ** 3
#: seconds before the end of its wall time after which a pilot counts as
#: ending: another may be submitted in its place
ENDING = 300.0


def pilot_memory(settings: ClusterSettings) -> int:
    """The memory a pilot asks for (``pilot_memory``, else 2 GiB a core)."""
    if settings.pilot_memory is not None:
        return settings.pilot_memory
    return MEMORY_PER_CORE * settings.pilot_cores


def pilot_request(settings: ClusterSettings) -> Request:
    """What one pilot asks of the scheduler: its cores, memory and wall time,
    on one node, in the default queue and account, with the config's
    directives and the warning ``warn_before`` seconds before its end."""
    return Request(
        cores=settings.pilot_cores, memory=pilot_memory(settings),
        walltime=settings.pilot_walltime, nodes=1, processes=1, queue=settings.queue,
        account=settings.account, parallel_environment=settings.parallel_environment,
        extra=tuple(settings.extra), vmem_allowance=settings.vmem_allowance,
        warn_before=settings.warn_before)


def fits(request: Request | None, settings: ClusterSettings) -> bool:
    """Whether a pilot can run a target that asks ``request`` of the scheduler."""
    if request is None or not settings.pilots:
        return False
    per_core = pilot_memory(settings) // settings.pilot_cores
    return (request.cores <= 1 and request.nodes == 1 and request.processes == 1
            and not request.gpus and request.disk is None
            and (request.memory is None or request.memory <= per_core)
            and (request.walltime is None or request.walltime <= settings.pilot_walltime)
            and request.queue == settings.queue and request.account == settings.account
            and tuple(request.extra) == tuple(settings.extra))


def accepting(pilot: Submitted, queue: str, now: float, settings: ClusterSettings) -> bool:
    """Whether a pilot may still take targets: it reads the current queue, its
    job has not ended, and it is not within :data:`ENDING` of its wall time."""
    if pilot.queue != queue or pilot.live_tasks() == 0:
        return False
    started = pilot.running_since.get(1)
    ending = min(ENDING, settings.pilot_walltime / 4)
    return started is None or now - started < settings.pilot_walltime - ending


def to_submit(waiting: int, pilots: Iterable[Submitted], queue: str, budget: int, now: float,
              settings: ClusterSettings) -> int:
    """How many pilots to submit now.

    Args:
        waiting: targets in the queue that no pilot has claimed.
        pilots: the pilot jobs submitted (live or not).
        queue: the current queue file.
        budget: scheduler jobs ``max_jobs`` leaves room for.
        now: the time (``time.time()``).
        settings: ``pilots`` and the pilots' size.
    """
    if waiting <= 0 or budget <= 0:
        return 0
    taking = [p for p in pilots if accepting(p, queue, now, settings)]
    # a pilot not yet started takes its share of the waiting targets when it starts
    starting = sum(1 for p in taking if not p.running_since and not p.launched)
    needed = math.ceil(waiting / settings.pilot_cores) - starting
    return max(0, min(settings.pilots - len(taking), budget, needed))


def surplus(pilots: Sequence[Submitted], waiting: int, idle_since: float | None, now: float,
            settings: ClusterSettings) -> list[Submitted]:
    """Pilots to cancel: those not yet started (nor seen to start) while no
    target has waited for ``pilot_idle`` seconds (``idle_since``: since when
    none has; None while some wait)."""
    if waiting > 0 or idle_since is None or now - idle_since < settings.pilot_idle:
        return []
    return [p for p in pilots if p.job_id and p.live_tasks() and not p.running_since
            and not p.launched]


def capacity(settings: ClusterSettings, without: int) -> int:
    """How many targets the master should keep issued with pilots: enough to
    keep every core of every pilot busy between two turns of the master."""
    if not settings.pilots:
        return without
    return max(without, min(20000, math.ceil(settings.pilots * settings.pilot_cores * 500)))

