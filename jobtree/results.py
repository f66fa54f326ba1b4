"""Reading the result file a worker left, as the job store takes it."""

from __future__ import annotations

import logging
import pickle
from typing import Any

from .jobstore import NewJob, Step
from .resources import Resources

logger = logging.getLogger(__name__)


def _new_job(job: dict[str, Any]) -> NewJob:
    """A target the run added."""
    res = Resources.from_dict(job["resources"])
    return NewJob(job["cls"], job["description"], res.cpu, res.memory, res.time,
                  res.disk, job["pickle"], res.cluster_only() or None,
                  tuple(job.get("needs") or ()), job.get("token"))


def to_step(data: dict[str, Any]) -> Step:
    """A step of a worker's result file, as the job store takes it."""
    followon = data["followon"]
    return Step(cls=data["cls"], description=data["description"],
                children=[_new_job(c) for c in data["children"]],
                followon=_new_job(followon) if followon is not None else None,
                messages=data["messages"], stats=data["stats"],
                value=data.get("value"), token=data.get("token"))


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
