"""The report of failed targets, as the master prints it and jobTreeStatus shows it."""

from __future__ import annotations

import os
from typing import Any

from .jobstore import JobStore

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


def describe_failure(failure: dict[str, Any], root: str) -> list[str]:
    """The lines that describe one failed attempt."""
    code = failure["exit_code"]
    how = f"exit {code}" if code is not None else "no exit status"
    where = f" on {failure['batch_system'] or failure['batch']} job {failure['batch_id']}" \
        if failure.get("batch_id") else ""
    lines = [f"  {failure['description']}  [{failure['cls']}, job {failure['job']}]",
             f"    attempt {failure['attempt']}: {how}{where} ({failure['reason']})"
             + (f": {failure['message']}" if failure["message"] else "")]
    log = failure["log"]
    if log:
        lines.append(f"    log: {os.path.relpath(log) if log.startswith(root) else log}")
        lines.extend(f"    | {line}" for line in tail(log))
    return lines


def failure_report(store: JobStore, retry_count: int | None = None) -> str:
    """The report of every target that failed for good, with how to continue."""
    failures = store.failures(permanent_only=True)
    latest: dict[int, dict[str, Any]] = {}
    for failure in failures:
        failure.setdefault("batch_system", None)
        latest[failure["job"]] = failure
    count = len(latest)
    noun = "target" if count == 1 else "targets"
    tries = f" (each tried {retry_count + 1} times unless noted)" if retry_count else ""
    lines = [f"jobtree: {count} {noun} failed{tries}."]
    for failure in latest.values():
        lines.extend(describe_failure(failure, store.paths.root))
    lines.append("Targets that do not depend on them have finished. Fix the cause, then "
                 f"continue with:  jobTreeRun --jobTree {store.paths.root}")
    return "\n".join(lines)
