"""jobTreeStats: wall time, CPU time, wait and peak memory of the targets of a
tree run with ``--stats``, summarised per target class, and what each class
asked against what it used, with a suggested request (see :mod:`.fit`).

The summaries are computed by the index (one record per target that ran
with ``--stats``; see TreeIndex.run_spread and TreeIndex.class_use), so
memory stays flat however big the tree.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from typing import Any

from .. import options as tree_options
from .. import timeline
from ..errors import BadOptionError, JobTreeError
from ..jobstore import TreeIndex
from ..paths import TreePaths
from ..placement import default_resources
from ..resources import Resources, format_bytes, format_seconds
from .common import entry_point, one_tree, open_tree, tree_argument, tree_paths
from .fit import fit_table, request, unrecorded

#: the measures of a run: (its name in the index's records, title, is a duration)
MEASURES: tuple[tuple[str, str, bool], ...] = (
    ("wall", "wall time", True),
    ("cpu", "CPU time", True),
    ("wait", "wait", True),
    ("memory", "peak memory", False),
)
SUMMARIES = ("min", "median", "mean", "max", "total")


class NoStatsError(JobTreeError):
    """The tree holds no statistics: it was not run with --stats."""


def summarise(index: TreeIndex, cls: str | None) -> dict[str, Any]:
    """The count and, per measure, min/median/mean/max/total of one class (None: all).

    Missing values (a run that could not measure one) are left out of that
    measure. The total of peak memory is left out (None): peaks do not add up.
    """
    summary: dict[str, Any] = {"count": index.run_count(cls)}
    for measure, _, _ in MEASURES:
        spread = index.run_spread(measure, cls)
        summary[measure] = {"min": spread.low, "median": spread.median, "mean": spread.mean,
                            "max": spread.high,
                            "total": spread.total if measure != "memory" else None}
    return summary


def collect(paths: TreePaths) -> dict[str, Any]:
    """Every summary of the tree: per class, and over all targets.

    Raises:
        TreeError: the tree cannot be read.
        NoStatsError: the tree holds no statistics.
    """
    index = open_tree(paths)
    try:
        classes = index.run_classes()
        if not classes:
            raise NoStatsError(
                f"The job tree {paths.root} has no statistics: it was not run with --stats. "
                f"Targets record their wall time, CPU time, wait and memory when the tree "
                f"runs with --stats; for the targets still to run, continue it with:  "
                f"jobTreeRun --jobTree {paths.root} --stats  (or run your pipeline script "
                f"with --stats on a new --jobTree).")
        targets = sum(index.counts().values())
        data = {"tree": paths.root, "targets": targets,
                "classes": {cls: summarise(index, cls) for cls in classes},
                "total": summarise(index, None)}
        defaults = tree_defaults(index, paths)
        failed = index.failed_tries(defaults)
        for use in index.class_use(defaults):
            if use.cls in data["classes"]:
                data["classes"][use.cls]["request"] = request(use, failed.get(use.cls, {}))
        data["failed_classes"] = {
            cls: {"count": 0, "request": request(use, tries)}
            for cls, tries in sorted(failed.items()) if cls not in data["classes"]
            and (use := unrecorded(cls, tries)) is not None}
        return data
    finally:
        index.close()


def tree_defaults(index: TreeIndex, paths: TreePaths) -> Resources:
    """The default resources of the tree's last run (--defaultMemory, ...), the
    options' defaults for a tree that never stored them."""
    stored = index.meta().get("options")
    given = argparse.Namespace(jobTree=paths.root)
    try:
        config, _ = tree_options.resolve(given, stored if isinstance(stored, dict) else None)
    except (JobTreeError, TypeError):
        config, _ = tree_options.resolve(given, None)
    return default_resources(config)


def _value(column: str, value: float | None) -> str:
    if column == "memory":
        return "-" if value is None else format_bytes(value)
    return format_seconds(value)


def summary_table(data: dict[str, Any]) -> timeline.Table:
    """The summaries: one block of four rows per class, then all targets."""
    rows: list[tuple[str, ...] | None] = []
    groups = [*data["classes"].items(), ("all targets", data["total"])]
    for index, (cls, summary) in enumerate(groups):
        if index == len(groups) - 1:
            rows.append(None)  # a rule before the total
        for number, (column, title, _) in enumerate(MEASURES):
            first = number == 0
            rows.append((cls if first else "", str(summary["count"]) if first else "", title,
                         *(_value(column, summary[column][s]) for s in SUMMARIES)))
    return timeline.Table(title="Per class", head=("target class", "count", "measure",
                                                   *SUMMARIES),
                          rows=tuple(rows), left=frozenset({0, 2}))


def tables(data: dict[str, Any]) -> list[timeline.Table]:
    """Every table jobTreeStats shows, in order."""
    found = [summary_table(data)]
    fits = {cls: summary for cls, summary in data["classes"].items() if "request" in summary}
    fits.update(data.get("failed_classes", {}))
    if fits:
        found.append(fit_table({"classes": fits}))
    return found


def text(table: timeline.Table, titled: bool = True) -> str:
    """A table as aligned text: its title and intro, the rows with a rule
    under the head and between groups, then its notes and lines to paste."""
    widths = [max(len(r[i]) for r in [table.head, *table.rows] if r)
              for i in range(len(table.head))]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) if i in table.left else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    rule = "-" * len(line(table.head))
    out = [f"{table.title}:"] if titled else []
    if table.intro:
        out.extend(textwrap.wrap(table.intro, 88))
    out += [line(table.head), rule]
    out.extend(line(r) if r else rule for r in table.rows)
    out.extend(table.notes)
    if table.paste:
        out.append("To paste into each class's script (Target.__init__, addChildFn, ...):")
        out.extend(f"  {p}" for p in table.paste)
    return "\n".join(out)


@entry_point
def main(argv: list[str] | None = None) -> int:
    """Prints the statistics of a tree run with --stats; exits 2 if it has none."""
    parser = argparse.ArgumentParser(
        prog="jobTreeStats",
        description="Summarise, per target class, the wall time, CPU time, wait (from "
                    "issue to start) and peak memory of the targets of a job tree run with "
                    "--stats: count, min, median, mean, max and total (no total for memory: "
                    "peaks do not add up). Then, per class, what its targets asked against "
                    "what they used (peak memory against memory asked, CPU time against "
                    "cores x wall, wall time against the time estimate), with a suggested "
                    "request to paste into the script. Safe while a master runs. Exit "
                    "status: 0, or 2 if the tree has no statistics or cannot be read.")
    tree_argument(parser)
    parser.add_argument("--json", action="store_true",
                        help="print the numbers as JSON (seconds and bytes) for programs")
    parser.add_argument("--timeline", metavar="FILE",
                        help="also write FILE: one HTML page with a chart of every attempt "
                             "over time (a row per worker slot or batch job, coloured by "
                             "class, failed attempts outlined) and the per-class tables")
    options = parser.parse_args(argv)
    paths = one_tree(tree_paths(options.jobTree))
    data = collect(paths)
    if options.timeline:
        _write_timeline(paths, data, options.timeline)
    if options.json:
        json.dump(data, sys.stdout, indent=2)
        print()
        return 0
    recorded = data["total"]["count"]
    print(f"Job tree {data['tree']}: statistics of {recorded} of {data['targets']} targets "
          f"(those that ran with --stats).")
    shown = tables(data)
    print(text(shown[0], titled=False))
    for table in shown[1:]:
        print()
        print(text(table))
    if options.timeline:
        print(f"Wrote the timeline to {options.timeline}.")
    return 0


def _write_timeline(paths: TreePaths, data: dict[str, Any], path: str) -> None:
    index = open_tree(paths)
    try:
        found = timeline.attempts(index)
    finally:
        index.close()
    page = timeline.page(paths.root, found, tables(data))
    try:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(page)
    except OSError as err:
        raise BadOptionError(f"--timeline {path} cannot be written: {err.strerror}. Give a "
                             f"file in a folder that exists and that you can write.") from None


if __name__ == "__main__":
    raise SystemExit(main())
