"""Bulk edits for jobTreeRun: ``--select CONDITION --set KEY=VALUE ...``
changes what the matching targets that may still run ask for (memory, time,
cores, ...) or their priority, before the master continues the tree.

The condition is the one of ``jobTreeStatus --select`` (the same columns, the
same time limit), and it only ever runs on a read-only connection: first
before anything is started (a bad condition is refused with nothing
changed), then again once jobTreeRun holds the tree, whose ids the master's
store changes in one transaction before it issues anything.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import TYPE_CHECKING, Any, Callable

from ..errors import BadOptionError, JobTreeError
from ..paths import TreePaths
from ..resources import Resources, parse_priority
from .common import plural

if TYPE_CHECKING:
    from ..master import Master

#: what --set can change: the key (a Target keyword) and the Resources field
#: it sets ("priority" is the target's priority, not a resource)
SETTABLE = {"memory": "memory", "cpu": "cpu", "disk": "disk", "time": "time",
            "timeLimit": "time_limit", "gpus": "gpus", "nodes": "nodes",
            "processes": "processes", "queue": "queue", "account": "account",
            "memoryRetryFactor": "memory_retry_factor",
            "timeRetryFactor": "time_retry_factor", "priority": "priority"}
#: the value that puts a key back to the tree's default (priority: 0)
DEFAULT = "default"


@dataclasses.dataclass(frozen=True)
class Edit:
    """One jobTreeRun --select/--set.

    Attributes:
        select: the condition choosing the targets (jobTreeStatus --select's).
        values: the new values by Resources field name (and ``priority``);
            None: the tree's default.
        shown: the keys as given, for the message.
        timeout: the seconds the condition may run (None: no limit).
    """

    select: str
    values: dict[str, Any]
    shown: tuple[str, ...]
    timeout: float | None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds --select, --set and --selectTimeout to jobTreeRun's parser."""
    parser.add_argument(
        "--select", metavar="CONDITION",
        help="With --set: the targets to change, as an SQL condition over the columns of "
             "jobTreeStatus --select (e.g. \"class LIKE '%%Align%%' AND state = 'failed'\"; "
             "'true' for every target that may still run)")
    parser.add_argument(
        "--set", metavar="KEY=VALUE", action="append", default=[], dest="set_values",
        help=f"Changes what the --select targets that may still run ask for, before the "
             f"tree continues; repeat it for several keys: {', '.join(SETTABLE)} (VALUE "
             f"'{DEFAULT}' puts it back to the tree's default). Their next try asks this, "
             f"even after one that ran out of memory or time")
    parser.add_argument(
        "--selectTimeout", metavar="SECONDS", type=float, default=60.0,
        help="Stop a --select condition that runs longer than this (0: no limit; default 60)")


def parse(options: argparse.Namespace) -> Edit | None:
    """The edit asked on the command line, checked (None: none asked).

    Raises:
        BadOptionError: --set without --select or the other way round, a key
            that cannot be set, or a value that is not valid for its key.
    """
    sets: list[str] = list(options.set_values or [])
    select = options.select
    if not sets and select is None:
        return None
    if not sets:
        raise BadOptionError(
            f"--select {select!r} chooses the targets that --set changes, and no --set was "
            f"given. Add --set KEY=VALUE (e.g. --set memory=8G), or list the matching "
            f"targets with:  jobTreeStatus --jobTree {options.jobTree} --select {select!r}")
    if select is None or not select.strip():
        raise BadOptionError(
            f"--set {' --set '.join(sets)} needs --select to say which targets to change. "
            f"Give an SQL condition over the columns of jobTreeStatus --select (e.g. "
            f"--select \"class LIKE '%Align%'\"), or --select true to change every target "
            f"that may still run.")
    values: dict[str, Any] = {}
    shown: list[str] = []
    for item in sets:
        key, equals, text = item.partition("=")
        key, text = key.strip(), text.strip()
        if not equals or key not in SETTABLE:
            raise BadOptionError(
                f"--set {item!r}: give KEY=VALUE with one of the keys {', '.join(SETTABLE)} "
                f"(the Target keywords), e.g. --set memory=8G --set time=2h.")
        values[SETTABLE[key]] = _value(key, text, item)
        shown.append(key)
    timeout = options.selectTimeout
    return Edit(select, values, tuple(dict.fromkeys(shown)), timeout or None)


def _value(key: str, text: str, item: str) -> Any:
    """One --set value, read as the Target keyword ``key`` reads it."""
    field = SETTABLE[key]
    if text == DEFAULT:
        return None
    try:
        if field == "priority":
            return parse_priority(text, key)
        if not text:
            raise ValueError
        return getattr(Resources.parse(**{field: text}), field)
    except (JobTreeError, ValueError) as err:
        why = f" ({str(err).rstrip('.')})" if str(err) else ""
        raise BadOptionError(
            f"--set {item!r}: the value is not valid for {key}{why}. Give it as the Target "
            f"keyword takes it (e.g. memory=8G, time=2h, timeLimit=4:00:00, cpu=4, "
            f"priority=10), or {key}={DEFAULT} for the tree's default.") from None


def matching(paths: TreePaths, edit: Edit) -> list[int]:
    """The ids of the targets ``edit.select`` matches, read through a
    read-only connection (the condition never runs on the master's).

    Raises:
        BadOptionError: the condition is not valid, or ran over its time.
    """
    from . import query  # only for an edit: jobTreeRun's own imports stay few
    from .common import open_tree

    index = open_tree(paths)
    try:
        return [t.id for t in query.targets(index, select=edit.select, timeout=edit.timeout)]
    finally:
        index.close()


def applier(paths: TreePaths, edit: Edit) -> Callable[[Master | None], None]:
    """What jobTreeRun gives start_tree as ``on_master``: once it holds the
    tree, and before the master issues anything, the matching targets are
    changed in one transaction, and one line says how many."""

    def apply(master: Master | None) -> None:
        if master is None:
            return
        jobs = matching(paths, edit)
        with master.store.transaction():
            changed, ran = master.store.edit_requests(jobs, edit.values)
        print(describe(edit, changed, ran), flush=True)

    return apply


def describe(edit: Edit, changed: int, ran: int) -> str:
    """The line that says what --set changed."""
    keys = " and ".join([", ".join(edit.shown[:-1]), edit.shown[-1]] if len(edit.shown) > 1
                        else edit.shown)
    line = f"jobTreeRun: --set changed the {keys} of {plural(changed, 'target')}"
    if ran:
        line += (f" ({plural(ran, 'other matching target')} had already run and "
                 f"{'was' if ran == 1 else 'were'} left as {'it was' if ran == 1 else 'they were'})")
    return line + "."

