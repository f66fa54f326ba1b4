"""What the next try of a target asks for, after a try that ran out of memory
or over its wall time: a pure function of the last try's request and reason.

The master applies it when it issues a try after a failed one
(``Master._mark_ready_issued``); the index keeps what every try asked
(``jobs.asked`` for the current try, ``failures.asked`` for each failed one).
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

from .resources import Resources, format_bytes, format_duration

#: the reasons (ExitReason values) after which a try asks for more
OUT_OF_MEMORY = "out of memory"
TIMEOUT = "timeout"
#: the factor of a tree or target that does not say
DEFAULT_FACTOR = 2.0
#: the request fields a try may change, and what the index keeps of a try
ASKED_FIELDS = ("cpu", "memory", "time", "disk")


@dataclasses.dataclass(frozen=True)
class Caps:
    """The most a try may ask for.

    Attributes:
        memory: the least of --maxMemory and what the batch systems give one
            job (the machine's memory on singleMachine, ``max_memory`` on a
            cluster); None: no cap known.
        time: --maxJobDuration (the master stops a run longer than that anyway).
    """

    memory: int | None = None
    time: float | None = None


@dataclasses.dataclass(frozen=True)
class LastTry:
    """A failed try, as the index keeps it.

    Attributes:
        attempt: its number (1 for the first try).
        reason: why it failed (an ExitReason value, e.g. "out of memory").
        asked: what it asked for (memory, time, cpu, disk).
        hard_limit: it was stopped at a hard limit the user set
            (``timeLimit`` or --maxJobDuration), not at a wall time derived
            from the ``time`` estimate.
    """

    attempt: int
    reason: str
    asked: Resources
    hard_limit: bool = False


def grown_memory(memory: int, factor: float, cap: int | None) -> int:
    """``memory`` × ``factor``, whole MiB up, at most ``cap`` (but never less than
    ``memory``: a request over the cap already fails as too big)."""
    mib = 1024 ** 2
    grown = int(math.ceil(memory * factor / mib) * mib) if factor > 1 else memory
    if cap is not None:
        grown = min(grown, cap)
    return max(grown, memory)


def grown_time(time: float, factor: float, cap: float | None) -> float:
    """The ``time`` estimate × ``factor``, whole seconds up, at most ``cap`` (never
    less than ``time``)."""
    grown = float(math.ceil(time * factor)) if factor > 1 else time
    if cap is not None:
        grown = min(grown, cap)
    return max(grown, time)


def next_request(own: Resources, last: LastTry | None, caps: Caps) -> Resources:
    """What the next try of a target asks for.

    The first try asks for the target's own request. After a failed try:

    - out of memory: its memory × the memory factor;
    - stopped by the scheduler at the wall time asked from its ``time``
      estimate: its ``time`` × the time factor (so the wall time asked grows
      too); never after a stop at ``timeLimit`` or --maxJobDuration, which are
      limits the user set;
    - any other reason: what it asked (a try never asks for less than the one
      before it, nor than the target's own request).

    The factors are the target's (``memoryRetryFactor``, ``timeRetryFactor``),
    else the tree's (set as ``own``'s defaults); each result is capped by
    ``caps`` and by the target's ``timeLimit``.

    Args:
        own: the target's request, the tree's defaults applied.
        last: the last failed try, if any.
        caps: the most a try may ask for.
    """
    if last is None:
        return own
    memory = _carried(own.memory, last.asked.memory)
    time = _carried(own.time, last.asked.time)
    if last.reason == OUT_OF_MEMORY and last.asked.memory is not None:
        factor = own.memory_retry_factor or DEFAULT_FACTOR
        memory = max(memory or 0, grown_memory(last.asked.memory, factor, caps.memory))
    elif (last.reason == TIMEOUT and not last.hard_limit and own.time_limit is None
          and last.asked.time is not None):
        factor = own.time_retry_factor or DEFAULT_FACTOR
        time = max(time or 0.0, grown_time(last.asked.time, factor, caps.time))
    return dataclasses.replace(own, memory=memory, time=time)


def _carried(own: float | None, asked: float | None) -> Any:
    """The larger of the target's own value and what the last try asked."""
    if asked is None:
        return own
    return asked if own is None else max(own, asked)


# ------------------------------------------------------------- the index
def asked_json(request: Resources, hard_limit: bool = False) -> str:
    """What a try asked, as ``failures.asked`` keeps it."""
    data: dict[str, Any] = {k: getattr(request, k) for k in ASKED_FIELDS
                            if getattr(request, k) is not None}
    if hard_limit:
        data["hard_limit"] = True
    return json.dumps(data, sort_keys=True)


def raised_json(own: Resources, request: Resources) -> str | None:
    """What ``jobs.asked`` keeps of the current try: the values it asks beyond
    the target's own request (None: it asks just that)."""
    data = {k: getattr(request, k) for k in ASKED_FIELDS
            if getattr(request, k) != getattr(own, k)}
    return json.dumps(data, sort_keys=True) if data else None


def from_json(text: str | None, own: Resources | None = None) -> Resources:
    """The request a try asked, from the index's JSON (over ``own``, the
    target's own request, for ``jobs.asked``)."""
    data = json.loads(text) if text else {}
    base = own if own is not None else Resources()
    return dataclasses.replace(base, **{k: data[k] for k in ASKED_FIELDS if k in data})


def last_try(attempt: int, reason: str, asked: str | None) -> LastTry | None:
    """The LastTry of a failure row (None: an index too old to say what it asked)."""
    if not asked:
        return None
    data = json.loads(asked)
    return LastTry(attempt, reason, from_json(asked), bool(data.get("hard_limit")))


def describe_asked(request: Resources) -> str:
    """What a try asked, for people: ``4.0 GiB, 1:00:00 and 2 cpu``."""
    parts = []
    if request.memory is not None:
        parts.append(format_bytes(request.memory))
    if request.time is not None:
        parts.append(format_duration(request.time))
    if request.cpu is not None:
        parts.append(f"{request.cpu:g} cpu")
    if len(parts) > 1:
        return f"{', '.join(parts[:-1])} and {parts[-1]}"
    return parts[0] if parts else "the defaults"


def describe_try(attempt: int, asked: Resources, before: LastTry | None) -> str:
    """One try, as status and the failure report show it, e.g. ``try 2 asked
    4.0 GiB and 1 cpu, after out of memory with 2.0 GiB``."""
    text = f"try {attempt} asked {describe_asked(asked)}"
    if before is not None:
        then = before.asked
        if before.reason == OUT_OF_MEMORY and then.memory is not None:
            then = Resources(memory=then.memory)
        elif before.reason == TIMEOUT and then.time is not None:
            then = Resources(time=then.time)
        else:
            return f"{text}, after {before.reason}"
        text += f", after {before.reason} with {describe_asked(then)}"
    return text


def asked_dict(request: Resources | None) -> dict[str, Any] | None:
    """What a try asked, as jobTreeStatus --json shows it (None: not known)."""
    if request is None:
        return None
    return {k: getattr(request, k) for k in ASKED_FIELDS}
