"""The report of failed targets, as the master prints it and jobTreeStatus shows it."""

from __future__ import annotations

import json
import os
from typing import Any

from .escalation import OUT_OF_MEMORY, TIMEOUT, asked_dict, describe_try, from_json, last_try
from .jobstore import JobRow, JobState, TreeIndex
from .resources import Resources

#: lines of a failed target's log shown in the report
TAIL_LINES = 5


def tail(path: str | None, lines: int = TAIL_LINES) -> list[str]:
    """The last ``lines`` non-empty lines of a log file (empty if unreadable)."""
    if not path:
        return []
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 16384))
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if line.strip()][-lines:]


def describe_failure(failure: dict[str, Any], tries: int | None = None,
                     requests: list[str] | None = None) -> list[str]:
    """The lines that describe one failed target by its last failed attempt
    (and, given ``requests``, what each of its tries asked)."""
    code = failure["exit_code"]
    how = f"exit {code}" if code is not None else "no exit status"
    if failure.get("batch_id"):
        how += f" on {failure['batch']} job {failure['batch_id']}"
    count = f"failed {tries} times" if tries and tries > 1 else "failed"
    lines = [f"  {failure['description']}  [{failure['cls']}, job {failure['job']}]",
             f"    {count}; last: {how} ({failure['reason']})"
             + (f": {failure['message']}" if failure["message"] else "")]
    lines.extend(requests or ())
    if failure["log"]:
        lines.append(f"    log: {failure['log']}")
        lines.extend(f"    | {line}" for line in tail(failure["log"]))
    return lines


def tree_defaults(meta: dict[str, Any]) -> Resources:
    """The tree's default resources, as its last run stored its options."""
    options = meta.get("options") if isinstance(meta.get("options"), dict) else {}
    return Resources(cpu=options.get("defaultCpu", 1),
                     memory=options.get("defaultMemory", 1024 ** 3),
                     time=options.get("defaultTime"), disk=options.get("defaultDisk"))


def tries_of(row: JobRow, failures: list[dict[str, Any]],
             defaults: Resources) -> list[dict[str, Any]]:
    """Every try of a target: its failed tries (as :meth:`TreeIndex.retried`
    gives them), then the try that runs or succeeded; each with its attempt,
    reason (None for the try that runs or succeeded), what it asked (None if
    the index is too old to say) and the line that describes it."""
    tries: list[dict[str, Any]] = []
    before = None
    for failure in failures:
        asked = from_json(failure["asked"]) if failure["asked"] else None
        line = (describe_try(failure["attempt"], asked, before) if asked is not None
                else f"try {failure['attempt']}")
        tries.append({"attempt": failure["attempt"], "reason": failure["reason"],
                      "asked": asked_dict(asked), "at": failure["at"],
                      "line": f"{line}: {failure['reason']}"})
        before = last_try(failure["attempt"], failure["reason"], failure["asked"])
    last = failures[-1]["attempt"] if failures else 0
    if row.attempt > last and row.state in (JobState.ISSUED, JobState.RAN, JobState.DONE):
        asked = from_json(row.asked, row.resources().with_defaults(defaults))
        outcome = "running" if row.state == JobState.ISSUED else "succeeded"
        tries.append({"attempt": row.attempt, "reason": None, "asked": asked_dict(asked),
                      "at": None,
                      "line": f"{describe_try(row.attempt, asked, before)}: {outcome}"})
    return tries


def tries_lines(store: TreeIndex, jobs: list[int]) -> dict[int, list[str]]:
    """The lines of each try of those of ``jobs`` (targets with a failed try)
    whose tries asked for more, or ran out of memory or time: for the others,
    every try asked the same and the report's other lines say why they failed."""
    defaults = tree_defaults(store.meta())
    found = {}
    for row, failures in store.retried(0, jobs):
        tries = tries_of(row, failures, defaults)
        if (len({json.dumps(t["asked"], sort_keys=True) for t in tries}) > 1
                or any(t["reason"] in (OUT_OF_MEMORY, TIMEOUT) for t in tries)):
            found[row.id] = [f"    {t['line']}" for t in tries]
    return found


def failed_for_good(store: TreeIndex) -> list[tuple[dict[str, Any], int]]:
    """Every target that failed for good, by id: its last failed attempt (as
    :meth:`JobStore.failures` gives it) and how many of its attempts failed."""
    failed = {f["job"] for f in store.failures(permanent_only=True)}
    latest: dict[int, dict[str, Any]] = {}
    tries: dict[int, int] = {}
    for failure in store.failures(permanent_only=False):
        if failure["job"] in failed:
            latest[failure["job"]] = failure
            tries[failure["job"]] = tries.get(failure["job"], 0) + 1
    return [(latest[job], tries[job]) for job in sorted(failed)]


def failure_report(store: TreeIndex) -> str:
    """The report of every target that failed for good, with how to continue."""
    failed = failed_for_good(store)
    noun = "target" if len(failed) == 1 else "targets"
    lines = [f"{len(failed)} {noun} failed."]
    requests = tries_lines(store, [failure["job"] for failure, _ in failed])
    for failure, tries in failed:
        lines.extend(describe_failure(failure, tries, requests.get(failure["job"])))
        if store.is_promised(failure["job"]):
            lines.append("    its value (rv()) is promised to targets that run after it: "
                         "they wait until it succeeds")
    lines.append("Targets that do not depend on them have finished. Fix the cause, then "
                 f"continue with:  jobTreeRun --jobTree {store.paths.root}")
    return "\n".join(lines)
