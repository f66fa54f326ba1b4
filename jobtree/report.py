"""The report of failed targets, as the master prints it and jobTreeStatus shows it."""

from __future__ import annotations

import os
from typing import Any

from .jobstore import TreeIndex

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


def describe_failure(failure: dict[str, Any], tries: int | None = None) -> list[str]:
    """The lines that describe one failed target by its last failed attempt."""
    code = failure["exit_code"]
    how = f"exit {code}" if code is not None else "no exit status"
    if failure.get("batch_id"):
        how += f" on {failure['batch']} job {failure['batch_id']}"
    count = f"failed {tries} times" if tries and tries > 1 else "failed"
    lines = [f"  {failure['description']}  [{failure['cls']}, job {failure['job']}]",
             f"    {count}; last: {how} ({failure['reason']})"
             + (f": {failure['message']}" if failure["message"] else "")]
    if failure["log"]:
        lines.append(f"    log: {failure['log']}")
        lines.extend(f"    | {line}" for line in tail(failure["log"]))
    return lines


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
    for failure, tries in failed:
        lines.extend(describe_failure(failure, tries))
        if store.is_promised(failure["job"]):
            lines.append("    its value (rv()) is promised to targets that run after it: "
                         "they wait until it succeeds")
    lines.append("Targets that do not depend on them have finished. Fix the cause, then "
                 f"continue with:  jobTreeRun --jobTree {store.paths.root}")
    return "\n".join(lines)
