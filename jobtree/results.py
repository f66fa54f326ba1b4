"""Reading the result file a worker left, as the job store takes it."""

from __future__ import annotations

import logging
import os
import pickle
from typing import Any

from .batch import ExitReason, Update
from .jobstore import NewJob, Step
from .resources import Resources, format_duration

logger = logging.getLogger(__name__)

#: how many endings in a row that are not the target's doing (preempted,
#: requeued, lost to a failed node) go back to ready without a try counted;
#: the next one in a row counts, so a job that keeps landing on a failing node
#: (or is preempted for ever) still uses up its tries and fails at last
UNCOUNTED_IN_ROW = 5
#: the endings that are not the target's doing
NOT_ITS_DOING = frozenset({ExitReason.PREEMPTED, ExitReason.NODE_FAILURE})


def counts_as_try(reason: ExitReason, in_row: int) -> bool:
    """Whether an attempt that ended for ``reason`` uses up one of the job's tries.

    Args:
        reason: why the attempt ended.
        in_row: how many of the job's latest attempts before this one ended,
            one after another, preempted or lost to a failed node.
    """
    return reason not in NOT_ITS_DOING or in_row >= UNCOUNTED_IN_ROW


def _new_job(job: dict[str, Any]) -> NewJob:
    """A target the run added."""
    res = Resources.from_dict(job["resources"])
    return NewJob(job["cls"], job["description"], res.cpu, res.memory, res.time,
                  res.disk, job["pickle"], res.cluster_only() or None,
                  tuple(job.get("needs") or ()), job.get("token"), job.get("priority", 0))


def to_step(data: dict[str, Any]) -> Step:
    """A step of a worker's result file, as the job store takes it."""
    followon = data["followon"]
    return Step(cls=data["cls"], description=data["description"],
                children=[_new_job(c) for c in data["children"]],
                followon=_new_job(followon) if followon is not None else None,
                messages=data["messages"], stats=data["stats"],
                value=data.get("value"), token=data.get("token"),
                priority=data.get("priority", 0))


def read_result(path: str) -> dict[str, Any] | None:
    """The result file at ``path``, or None if it is absent or torn.

    The file holds only plain data (the targets the run added are pickled
    bytes inside it), so loading it runs no user code.
    """
    try:
        with open(path, "rb") as handle:
            result = pickle.load(handle)
    except FileNotFoundError:
        return None
    except Exception as err:  # noqa: BLE001 - a torn file can fail in many ways
        logger.warning("cannot read the result %s (%s: %s); treating it as missing",
                       path, type(err).__name__, err)
        return None
    return result if isinstance(result, dict) else None


def value_files(folder: str, result: dict[str, Any] | None) -> list[str]:
    """The value files (in the tree's values ``folder``) that a result wrote,
    to remove when it is not ingested."""
    if not result or not result.get("ok"):
        return []
    return [os.path.join(folder, step["value"][1])
            for step in result.get("steps", ())
            if step.get("value") and step["value"][0] == "file"]


def failure_of(update: Update | None, result: dict[str, Any] | None,
               timed_out: bool, max_duration: float | None = None
               ) -> tuple[ExitReason, str | None]:
    """Why an attempt that did not succeed failed, and what to tell the user.

    Args:
        update: what its batch system said when it ended (None: it vanished,
            or its result was found at a restart).
        result: its result file, if it left one.
        timed_out: the master killed it for --maxJobDuration.
        max_duration: --maxJobDuration, for the message.
    """
    if timed_out:
        shown = format_duration(max_duration) if max_duration is not None else "?"
        return ExitReason.TIMEOUT, (f"it ran over --maxJobDuration ({shown}) and was "
                                    f"stopped; raise --maxJobDuration to let it run on")
    if update is not None:
        reason = update.reason
    else:
        reason = ExitReason.FAILED if result is not None else ExitReason.LOST
    if reason is ExitReason.FINISHED:
        reason = ExitReason.LOST  # it exited 0, but its result never came
    message = result.get("error") if result else None
    if message is None and update is not None:
        message = update.message
    if message is None and update is not None and update.reason is ExitReason.FINISHED:
        message = "the worker exited 0 but left no result"
    if message is None and update is not None and update.exit_code is not None \
            and update.exit_code < 0:
        message = f"killed by signal {-update.exit_code}"
    return reason, message
