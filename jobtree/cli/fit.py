"""Requested against used, per target class, and the request jobTreeStats
suggests: the rule, and the table that shows it.

The rule (docs/resources.md, "Seeing what to ask for"), for the runs of one
class recorded with ``--stats``:

- **memory**: the highest peak plus MEMORY_MARGIN, rounded up to a friendly
  size, and at least MIN_MEMORY. The highest, not a percentile: a target
  over its memory is killed. When tries of the class ran out of memory, at
  least ESCALATION times the most any of them asked (their peak was never
  recorded).
- **cpu**: the cores the class kept busy (its CPU time over its wall time),
  rounded up once more than CORE_SLACK of a core over a whole core; at least
  1, and 1 when its runs took less than MIN_BUSY_WALL in all (too short for
  CPU time to tell).
- **time**: the TIME_PERCENT percentile of the wall time, rounded up to a
  friendly duration. ``time`` is an estimate (the scheduler is asked for it
  with a margin), so a typical long run, not the longest, is the estimate.
  When tries ran over time, at least ESCALATION times their estimate.
"""

from __future__ import annotations

import math
from typing import Any

from ..batch.base import ExitReason
from ..jobstore import ClassUse, FailedTries
from ..resources import format_bytes, format_seconds
from ..timeline import Table

#: memory suggested: the highest peak times this, before rounding up
MEMORY_MARGIN = 1.2
#: the least memory suggested: a fresh Python worker on a node needs about
#: this much to start, more than a run forked on singleMachine shows
MIN_MEMORY = 64 * 1024 ** 2
#: busy cores up to this much over a whole number round down
CORE_SLACK = 0.25
#: wall time (seconds, all runs of a class) under which CPU time is too
#: coarse to count busy cores: 1 core is suggested
MIN_BUSY_WALL = 1.0
#: the percentile of wall time suggested as the estimate
TIME_PERCENT = 95
#: a class whose tries ran out of memory (over time) is suggested at least
#: this many times what they asked
ESCALATION = 2.0
_MIB = 1024 ** 2
_GIB = 1024 ** 3


def friendly_size(size: float) -> int:
    """``size`` bytes rounded up to a friendly size: to a quarter of the power of
    two below it (…, 320M, 384M, 448M, 512M, 640M, 768M, …, 1.25G, 1.5G, …),
    at least 16M, so rounding adds at most a quarter."""
    size = max(float(size), 16 * _MIB)
    step = 2 ** (math.floor(math.log2(size)) - 2)
    return int(math.ceil(size / step - 1e-9) * step)


def size_text(size: int) -> str:
    """A size as a script gives it: ``"768M"``, ``"1.25G"``."""
    if size < _GIB:
        return f"{math.ceil(size / _MIB)}M"
    return f"{round(size / _GIB, 2):g}G"


def friendly_duration(seconds: float) -> float:
    """``seconds`` rounded up: whole seconds under a minute (at least 1), whole
    minutes under an hour, quarter hours under a day, whole hours beyond."""
    for limit, step in ((60, 1), (3600, 60), (86400, 900)):
        if seconds <= limit:
            return float(max(math.ceil(seconds / step - 1e-9) * step, 1))
    return float(math.ceil(seconds / 3600 - 1e-9) * 3600)


def duration_text(seconds: float) -> str:
    """A duration as a script gives it: ``"45s"``, ``"17m"``, ``"2:15:00"``."""
    whole = int(round(seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m"
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:00"


def _verdict(suggested: float | None, asked: tuple[Any, Any], less: float) -> str | None:
    """"more" if the suggestion is over the most asked, "less" if it is under
    ``less`` times the least asked, else "ok" (None: nothing to compare)."""
    low, high = asked
    if suggested is None:
        return None
    if high is None:
        return "none"
    if suggested > high:
        return "more"
    return "less" if low is not None and suggested < low * less else "ok"


_NONE = FailedTries(0, None, None, None)
#: the reasons for a failed try that a bigger request may cure
RESOURCE_REASONS = (ExitReason.MEMLIMIT.value, ExitReason.TIMEOUT.value)


def unrecorded(cls: str, failed: dict[str, FailedTries]) -> ClassUse | None:
    """A class none of whose runs was recorded but whose tries ran out of
    memory or over time (the class most in need of a suggestion), as a
    ClassUse of no runs with what those tries asked; None for any other."""
    tries = [failed[r] for r in RESOURCE_REASONS if r in failed]
    if not tries:
        return None

    def most(values: list[Any]) -> Any:
        known = [v for v in values if v is not None]
        return max(known) if known else None

    memory, cpu = most([t.memory for t in tries]), most([t.cpu for t in tries])
    estimate = most([t.time for t in tries])
    return ClassUse(cls=cls, runs=0, memory_asked=(memory, memory), memory_peak=None,
                    memory_over=0, cpu_asked=(cpu, cpu), cpu_time=None, cpu_wall=None,
                    cpu_reserved=None, time_asked=(estimate, estimate),
                    estimated=0, wall_high=None, wall_over=0)


def suggest_memory(use: ClassUse, oom: FailedTries) -> int | None:
    """The memory to ask (bytes), or None if no run measured it."""
    need = use.memory_peak
    if oom.count and oom.memory:
        need = max(need or 0, ESCALATION * oom.memory / MEMORY_MARGIN)
    return max(friendly_size(need * MEMORY_MARGIN), MIN_MEMORY) if need else None


def suggest_cores(use: ClassUse, busy: float | None) -> int | None:
    """The cores to ask, from the cores kept ``busy``, or None if unknown."""
    if busy is None:
        return None
    return max(1, math.ceil(busy - CORE_SLACK)) if (use.cpu_wall or 0) >= MIN_BUSY_WALL else 1


def suggest_time(use: ClassUse, late: FailedTries) -> float | None:
    """The estimate to give (seconds), or None if no run measured its wall time."""
    wall = use.ranks.get("wall", {}).get(TIME_PERCENT)
    if late.count and late.time:
        wall = max(wall or 0.0, ESCALATION * late.time)
    return friendly_duration(wall) if wall is not None else None


def request(use: ClassUse, failed: dict[str, FailedTries]) -> dict[str, Any]:
    """The requested-against-used record of one class, with the suggestion.

    Args:
        use: what its recorded runs were granted and used.
        failed: its failed tries by reason, as TreeIndex.failed_tries gives them.
    """
    oom = failed.get(ExitReason.MEMLIMIT.value, _NONE)
    late = failed.get(ExitReason.TIMEOUT.value, _NONE)
    memory_ranks, wall_ranks = use.ranks.get("memory", {}), use.ranks.get("wall", {})

    memory_suggested = suggest_memory(use, oom)
    busy = use.cpu_time / use.cpu_wall if use.cpu_time is not None and use.cpu_wall else None
    cpu_suggested = suggest_cores(use, busy)
    time_suggested = suggest_time(use, late)

    suggested: dict[str, Any] = {}
    if memory_suggested is not None:
        suggested["memory"] = size_text(memory_suggested)
    if cpu_suggested is not None:
        suggested["cpu"] = cpu_suggested
    if time_suggested is not None:
        suggested["time"] = duration_text(time_suggested)
    return {
        "memory": {"asked_min": use.memory_asked[0], "asked_max": use.memory_asked[1],
                   "peak": use.memory_peak, "median": memory_ranks.get(50),
                   "p95": memory_ranks.get(95), "over_asked": use.memory_over,
                   "out_of_memory": oom.count, "suggested": memory_suggested,
                   "verdict": _verdict(memory_suggested, use.memory_asked, 0.5)},
        "cpu": {"asked_min": use.cpu_asked[0], "asked_max": use.cpu_asked[1],
                "cpu_time": use.cpu_time, "reserved": use.cpu_reserved, "busy": busy,
                "efficiency": (use.cpu_time / use.cpu_reserved if use.cpu_time is not None
                               and use.cpu_reserved else None),
                "suggested": cpu_suggested,
                "verdict": _verdict(cpu_suggested, use.cpu_asked, 1.0)},
        "time": {"asked_min": use.time_asked[0], "asked_max": use.time_asked[1],
                 "estimated": use.estimated, "median": wall_ranks.get(50),
                 "p95": wall_ranks.get(95), "max": use.wall_high,
                 "over_estimate": use.wall_over, "over_time": late.count,
                 "suggested": time_suggested,
                 "verdict": _verdict(time_suggested, use.time_asked, 0.5)},
        "suggested": suggested,
        "paste": ", ".join(f'{k}="{v}"' if isinstance(v, str) else f"{k}={v}"
                           for k, v in suggested.items()),
    }


def _range(low: Any, high: Any, show: Any) -> str:
    if high is None:
        return "-"
    return show(high) if low == high else f"{show(low)}-{show(high)}"


def _bytes(value: Any) -> str:
    return "-" if value is None else format_bytes(value)


def _cores(value: Any) -> str:
    return f"{value:g}"


_VERDICTS = {"more": "ask more", "less": "ask less", "ok": "ok", "none": "give one", None: ""}


def _rows(cls: str, runs: int, fit: dict[str, Any]) -> list[tuple[str, ...]]:
    memory, cpu, wall = fit["memory"], fit["cpu"], fit["time"]
    used_memory = (f"peak {_bytes(memory['peak'])}, p95 {_bytes(memory['p95'])}, "
                   f"median {_bytes(memory['median'])}")
    used_cpu = ("-" if cpu["busy"] is None else
                f"{cpu['busy']:.2f} cores busy"
                + (f", {cpu['efficiency']:.0%} of cores x wall" if cpu["efficiency"] is not None
                   else ""))
    used_time = (f"max {format_seconds(wall['max'])}, p95 {format_seconds(wall['p95'])}, "
                 f"median {format_seconds(wall['median'])}")
    if not runs:
        used_memory = used_cpu = used_time = "no run recorded"
    suggested = fit["suggested"]
    return [
        (cls, str(runs), "memory",
         _range(memory["asked_min"], memory["asked_max"], format_bytes), used_memory,
         str(memory["over_asked"]), suggested.get("memory", "-"), _VERDICTS[memory["verdict"]]),
        ("", "", "cores", _range(cpu["asked_min"], cpu["asked_max"], _cores), used_cpu, "-",
         str(suggested.get("cpu", "-")), _VERDICTS[cpu["verdict"]]),
        ("", "", "time", _range(wall["asked_min"], wall["asked_max"], format_seconds),
         used_time, str(wall["over_estimate"]) if wall["estimated"] else "-",
         suggested.get("time", "-"), _VERDICTS[wall["verdict"]]),
    ]


def fit_table(data: dict[str, Any]) -> Table:
    """The requested-against-used table of the classes in ``data`` (what
    cli.stats.collect gives): three rows per class, then notes on failed
    tries and one line per class to paste into its script."""
    rows: list[tuple[str, ...] | None] = []
    notes: list[str] = []
    paste: list[str] = []
    for cls, summary in data["classes"].items():
        fit = summary["request"]
        if rows:
            rows.append(None)
        rows.extend(_rows(cls, summary["count"], fit))
        if fit["memory"]["out_of_memory"]:
            notes.append(f"{cls}: {fit['memory']['out_of_memory']} tries ran out of memory "
                         f"(not counted above); the suggestion asks at least "
                         f"{ESCALATION:g} times what they asked.")
        if fit["time"]["over_time"]:
            notes.append(f"{cls}: {fit['time']['over_time']} tries ran over time (not counted "
                         f"above); the suggestion is at least {ESCALATION:g} times their "
                         f"estimate.")
        if not summary["count"]:
            notes.append(f"{cls}: no run finished with --stats; asked is what its failed "
                         f"tries asked.")
        if fit["paste"]:
            paste.append(f"{cls}: {fit['paste']}")
    return Table(
        title="Requested against used, and a suggested request",
        head=("target class", "runs", "resource", "asked", "used", "over", "suggest", ""),
        rows=tuple(rows), left=frozenset({0, 2, 4, 7}),
        intro=("Asked is what each run was granted (the target's request, the tree's "
               "defaults filling what it did not say); over counts the runs that used more "
               "than they asked. The suggestion: memory, the highest peak plus "
               f"{MEMORY_MARGIN - 1:.0%}; cores, those kept busy (1 below a second in all); "
               f"time, the {TIME_PERCENT}th "
               "percentile of wall time (an estimate); each rounded up. See "
               "docs/resources.md."),
        notes=tuple(notes), paste=tuple(paste))
