"""jobTreeStatus: how far a tree has got, what runs now and what failed, read
without disturbing a running master.

The index is opened read-only (SQLite ``mode=ro``; in WAL mode readers never
block the master, the one writer), and whether a master holds the tree is
found without taking its lock where this machine can tell (``/proc/locks``
and the pid the master recorded); only a master on another host sharing the
tree is looked for by trying the lock for an instant.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from typing import Any

from ..errors import BadOptionError
from ..jobstore import Issued, JobState, TreeIndex
from ..paths import TreePaths, pool_trees
from ..report import describe_failure, failed_for_good, tree_defaults, tries_lines, tries_of
from ..resources import format_duration
from . import query
from .common import (MasterState, entry_point, find_master, open_tree, plural, tree_argument,
                     tree_paths)

#: issued targets listed one by one with --verbose (the rest are counted)
SHOWN_ISSUED = 20
#: failed targets described with --verbose (the rest are counted)
SHOWN_FAILED = 20
#: latest logToMaster messages shown with --verbose
SHOWN_MESSAGES = 5
#: running and failed targets listed in --json unless --limit says otherwise
JSON_LIMIT = 1000
#: seconds a listing (--state, --class, --select) may run unless --selectTimeout says
SELECT_TIMEOUT = 60.0


# --------------------------------------------------------------- printing
def _when(stamp: float | None) -> str:
    if not stamp:
        return "?"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))


def _ago(stamp: float | None, now: float) -> str:
    return format_duration(max(0.0, now - stamp)) if stamp else "?"


def header_lines(paths: TreePaths, meta: dict[str, Any]) -> list[str]:
    """What the tree is: its pipeline, root target and age."""
    script = meta.get("script") or "?"
    lines = [f"Job tree {paths.root}",
             f"  pipeline {script}, root target {meta.get('root_class', '?')}, "
             f"created {_when(meta.get('created'))} with jobtree "
             f"{meta.get('jobtree_version', '?')}"]
    call = meta.get("pool")
    if isinstance(call, dict):
        lines.append(f"  a Pool call: {call.get('mode')} of {call.get('function')} over "
                     f"{plural(int(call.get('inputs', 0)), 'input')}, "
                     f"{call.get('chunksize', 0):,} per target")
    return lines


def master_lines(master: MasterState) -> list[str]:
    """Who runs the tree now."""
    if master.running:
        return [f"Master: running ({master.describe()})."]
    if master.host:
        return [f"Master: none is running (the last one ran on host {master.host}, "
                f"pid {master.pid}, from {_when(master.started)})."]
    return ["Master: none is running."]


def count_lines(counts: dict[JobState, int], issued: Issued, now: float) -> list[str]:
    """The targets per state, with how long the issued ones have waited or run."""
    total = sum(counts.values())
    done = counts[JobState.DONE]
    percent = f" ({100.0 * done / total:.0f}%)" if total else ""
    waiting = counts[JobState.WAITING] + counts[JobState.RAN]
    running = f"{issued.running} running"
    if issued.running:
        running += f" (longest for {_ago(issued.oldest_start, now)})"
    queued = f"{issued.queued} queued"
    if issued.queued:
        queued += f" (longest for {_ago(issued.oldest_issue, now)})"
    rows = [
        ("done", done, ""),
        ("issued", counts[JobState.ISSUED], f"{running}, {queued}"),
        ("ready", counts[JobState.READY], "can be issued now"),
        ("waiting", waiting,
         f"{plural(counts[JobState.RAN], 'target')} that ran, waiting for children; "
         f"{plural(counts[JobState.WAITING], 'follow-on')} not started yet"),
        ("failed", counts[JobState.FAILED], "failed on every try"),
    ]
    width = len(str(max(total, 1)))
    grows = "" if done == total else " so far (the total grows as targets add children)"
    lines = [f"Progress: {done} of {plural(total, 'target')} done{percent}{grows}."]
    lines.extend(f"  {name:<8} {count:>{width}}" + (f"  {note}" if note and count else "")
                 for name, count, note in rows)
    return lines


def issued_lines(index: TreeIndex, now: float) -> list[str]:
    """Each issued target (up to SHOWN_ISSUED): where it runs and for how long."""
    rows = index.jobs_in(JobState.ISSUED, limit=SHOWN_ISSUED + 1)
    if not rows:
        return []
    lines = ["Issued targets:"]
    for row in rows[:SHOWN_ISSUED]:
        where = f"{row.batch} job {row.batch_id}" if row.batch_id else (row.batch or "?")
        if row.started_at:
            how = f"running for {_ago(row.started_at, now)}"
        else:
            how = f"issued {_ago(row.issued_at, now)} ago, not started yet"
        lines.append(f"  {row.description}  [{row.cls}, job {row.id}, attempt {row.attempt}, "
                     f"{where}]  {how}")
    if len(rows) > SHOWN_ISSUED:
        lines.append(f"  ... and more (only the first {SHOWN_ISSUED} are listed)")
    return lines


def retried_lines(index: TreeIndex) -> list[str]:
    """The targets that were tried again and did not fail for good (up to
    SHOWN_FAILED): what each try asked, and why it failed."""
    defaults = tree_defaults(index.meta())
    retried = [(row, failures) for row, failures in index.retried(SHOWN_FAILED + 1)
               if row.state != JobState.FAILED]
    if not retried:
        return []
    lines = ["Targets tried again:"]
    for row, failures in retried[:SHOWN_FAILED]:
        lines.append(f"  {row.description}  [{row.cls}, job {row.id}]")
        lines.extend(f"    {t['line']}" for t in tries_of(row, failures, defaults))
    if len(retried) > SHOWN_FAILED:
        lines.append("  ... and more (only the first ones are listed)")
    return lines


def failure_lines(index: TreeIndex) -> list[str]:
    """Every target that failed for good (up to SHOWN_FAILED), by its last attempt."""
    failed = failed_for_good(index)
    if not failed:
        return []
    lines = [f"Failed targets ({len(failed)}):"]
    requests = tries_lines(index, [failure["job"] for failure, _ in failed[:SHOWN_FAILED]])
    for failure, tries in failed[:SHOWN_FAILED]:
        lines.extend(describe_failure(failure, tries, requests.get(failure["job"])))
    if len(failed) > SHOWN_FAILED:
        lines.append(f"  ... and {len(failed) - SHOWN_FAILED} more")
    return lines


def message_lines(index: TreeIndex) -> list[str]:
    """The latest logToMaster messages."""
    messages = index.latest_messages(SHOWN_MESSAGES)
    if not messages:
        return []
    lines = ["Latest messages (logToMaster):"]
    lines.extend(f"  {_when(at)}  {description}: {text}" for at, description, text in messages)
    return lines


def warning_lines(index: TreeIndex) -> list[str]:
    """The targets' warnings (a value that could not be stored, a
    logToMaster at WARNING or above): how many, and the latest ones."""
    count, latest = index.warnings(SHOWN_MESSAGES)
    if not count:
        return []
    shown = f"; the latest {len(latest)}" if count > len(latest) else ""
    lines = [f"Warnings from targets ({count}{shown}):"]
    lines.extend(f"  {_when(at)}  {description} [job {job}]: {text}"
                 for at, job, description, text in latest)
    return lines


def advice_lines(paths: TreePaths, counts: dict[JobState, int], master: MasterState,
                 verbose: bool) -> list[str]:
    """What the user can do next."""
    total = sum(counts.values())
    failed = counts[JobState.FAILED]
    issued = counts[JobState.ISSUED]
    continue_with = f"jobTreeRun --jobTree {paths.root}"
    if counts[JobState.DONE] == total:
        return [f"The tree finished: all {plural(total, 'target')} are done."]
    if master.running:
        return [f"Follow it with:  jobTreeStatus --jobTree {paths.root}   "
                f"stop it with:  jobTreeKill --jobTree {paths.root}"]
    lines = []
    if issued:
        lines.append(f"{plural(issued, 'target')} still marked as issued by a master "
                     f"that stopped without returning them; jobTreeRun will run them again.")
    if failed:
        more = "" if verbose else \
            f" (see why with:  jobTreeStatus --jobTree {paths.root} --verbose)"
        lines.append(f"{plural(failed, 'target')} failed for good{more}. Fix the cause, then "
                     f"continue with:  {continue_with}")
    else:
        lines.append(f"Nothing runs the tree. Continue it with:  {continue_with}")
    return lines


@entry_point
def main(argv: list[str] | None = None) -> int:
    """Prints the state of a tree; with --failIfNotComplete exits 1 unless every
    target is done."""
    parser = argparse.ArgumentParser(
        prog="jobTreeStatus",
        description="Show how far the job tree in --jobTree has got: targets done, issued "
                    "(running or queued), ready, waiting and failed, and whether a master "
                    "runs it now. Safe while a master runs: the tree is only read, never "
                    "locked. Exit status: 0, or 1 with --failIfNotComplete when some target "
                    "is not done; 2 when the tree cannot be read.")
    tree_argument(parser)
    parser.add_argument("--verbose", action="store_true",
                        help="also list issued targets, failed targets (with their error, "
                             "log file and its last lines) and the latest logToMaster messages")
    parser.add_argument("--failIfNotComplete", action="store_true",
                        help="exit with status 1 if any target is not done")
    parser.add_argument("--check", action="store_true",
                        help="also check the tree's invariants (reads every job; slow on "
                             "huge trees) and exit 1 if one is broken")
    parser.add_argument("--json", action="store_true",
                        help="print the status as one JSON document (schema "
                             f"{query.SCHEMA}, see docs/status.schema.json); with --state, "
                             "--class or --select, the matching targets; with --classes, the "
                             "classes")
    parser.add_argument("--state", type=query.parse_state, metavar="STATE",
                        help="list the targets in STATE, one per line (id, class, state, "
                             f"attempts, wall time, description): {', '.join(query.STATES)}")
    parser.add_argument("--class", dest="cls", metavar="NAME",
                        help="list the targets of class NAME (module.Class, or just Class)")
    parser.add_argument("--select", metavar="EXPR",
                        help="list the targets for which the SQL condition EXPR holds, over "
                             f"the columns {', '.join(query.COLUMNS)}; e.g. 'attempts > 1'")
    parser.add_argument("--selectTimeout", type=_seconds, default=SELECT_TIMEOUT,
                        metavar="SECONDS",
                        help="stop a listing (--state, --class, --select) that runs longer "
                             f"than SECONDS, with a message (default {SELECT_TIMEOUT:g}; 0: no "
                             "limit); Ctrl-C stops it at any time")
    parser.add_argument("--limit", type=_positive, metavar="N",
                        help="list at most N targets (with --json: at most N running and N "
                             "failed ones; default 1000)")
    parser.add_argument("--classes", action="store_true",
                        help="show each target class: its targets in each state and their "
                             "median run time (recorded with --stats)")
    parser.add_argument("--log", type=int, metavar="ID",
                        help="print the kept logs of target ID (every failed or running attempt)")
    parser.add_argument("--attempt", type=_positive, metavar="N",
                        help="with --log: only the log of attempt N")
    parser.add_argument("--dot", metavar="FILE",
                        help="also write the tree (its first 5000 targets, the top of the "
                             "tree) as a Graphviz DOT graph to FILE: children solid, "
                             "follow-ons dashed")
    options = parser.parse_args(argv)
    paths = tree_paths(options.jobTree)
    calls = pool_trees(paths)
    if calls is not None and len(calls) == 1:
        paths = calls[0]  # a Pool's folder of one call stands for its tree
    elif calls and not (options.json or options.state or options.cls or options.select
                        or options.classes or options.log is not None or options.dot):
        # a Pool's folder: the status of each call's tree in turn
        codes = []
        print(f"Pool folder {paths.root}: {len(calls)} calls, one job tree each.\n")
        for call in calls:
            codes.append(main([*(argv if argv is not None else sys.argv[1:]),
                               "--jobTree", call.root]))
            print()
        return max(codes)
    listing = options.state or options.cls or options.select
    modes = [name for name, on in (("--state/--class/--select", listing),
                                   ("--classes", options.classes),
                                   ("--log", options.log is not None)) if on]
    if len(modes) > 1:
        raise BadOptionError(f"{' and '.join(modes)} cannot be combined; ask for one at a time.")
    if options.attempt is not None and options.log is None:
        raise BadOptionError("--attempt goes with --log ID (the target whose log to print).")
    if modes:
        return _query(paths, options)
    index = open_tree(paths)
    try:
        now = time.time()
        if options.json:
            master = find_master(paths)
            with index.snapshot():
                issued = index.issued_summary()
                document = query.document(
                    paths, index, dataclasses.asdict(master),
                    {"running": issued.running, "queued": issued.queued}, now,
                    options.limit or JSON_LIMIT)
            print(json.dumps(document, indent=2))
            complete = bool(document["complete"])
            return 1 if options.failIfNotComplete and not complete else 0
        with index.snapshot():
            meta = index.meta()
            counts = index.counts()
            issued = index.issued_summary()
        master = find_master(paths)
        lines = header_lines(paths, meta) + master_lines(master)
        lines += count_lines(counts, issued, now) + warning_lines(index)
        if options.verbose:
            lines += (issued_lines(index, now) + retried_lines(index) + failure_lines(index)
                      + message_lines(index))
        lines += advice_lines(paths, counts, master, options.verbose)
        problems: list[str] = []
        if options.check or options.dot:
            from .. import graph  # networkx, imported only when needed
        if options.check:
            index.check_whole()  # a damaged index is an error (exit 2), not a problem
            problems = graph.check(index)
            lines += ([f"Check: {len(problems)} problems:"] + [f"  {p}" for p in problems]
                      if problems else ["Check: the tree is consistent."])
        if options.dot:
            _write_dot(options.dot, graph.to_dot(graph.build(index, graph.DOT_LIMIT)))
            total = sum(counts.values())
            part = (f" (its first {graph.DOT_LIMIT:,} of {total:,} targets)"
                    if total > graph.DOT_LIMIT else "")
            lines.append(f"Wrote the tree as a DOT graph to {options.dot}{part}.")
    finally:
        index.close()
    print("\n".join(lines))
    complete = counts[JobState.DONE] == sum(counts.values())
    if problems:
        return 1
    return 1 if options.failIfNotComplete and not complete else 0


def _query(paths: TreePaths, options: argparse.Namespace) -> int:
    """--state/--class/--select, --classes or --log."""
    index = open_tree(paths)
    try:
        if options.log is not None:
            for attempt, path in query.logs(paths, index, options.log, options.attempt):
                print(f"==> target {options.log}, attempt {attempt}: {path} <==")
                sys.stdout.flush()
                with open(path, "rb") as handle:
                    sys.stdout.buffer.write(handle.read())
                sys.stdout.buffer.flush()
            return 0
        if options.classes:
            summaries = query.classes(index)
            if options.json:
                print(json.dumps({"schema": query.SCHEMA, "tree": paths.root,
                                  "classes": [c.to_dict() for c in summaries]}, indent=2))
            else:
                print("\n".join(query.class_lines(summaries)))
            return 0
        found = query.targets(index, options.state, options.cls, options.select, options.limit,
                              timeout=options.selectTimeout or None)
    finally:
        index.close()
    if options.json:
        print(json.dumps({"schema": query.SCHEMA, "tree": paths.root,
                          "targets": [t.to_dict() for t in found]}, indent=2))
    else:
        for target in found:
            print(target.line())
    return 0


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number of at least 1")
    return number


def _seconds(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not number >= 0 or number == float("inf"):
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds (0 or more)")
    return number


def _write_dot(path: str, text: str) -> None:
    try:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as err:
        raise BadOptionError(f"--dot {path} cannot be written: {err.strerror}.") from None


if __name__ == "__main__":
    raise SystemExit(main())
