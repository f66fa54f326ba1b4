"""The timeline of a tree run with ``--stats``: one self-contained HTML page
with an SVG Gantt chart of every attempt, for ``jobTreeStats --timeline``.

Each attempt is a bar from its start to its end, on a row of its own: rows
are the worker slots (or batch jobs) as they were used, found by putting
each attempt on the lowest row free when it started. Bars are coloured by
target class; failed attempts have a red outline. Hovering over a bar shows
the target, its class, attempt and run time. With more attempts than
MAX_BARS, bars that follow each other on a row with less than a pixel
between them are drawn as one (see merge), so the page stays light.
"""

from __future__ import annotations

import dataclasses
import heapq
import html
import math
import time
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from .jobstore import TreeIndex

#: the most bars drawn one by one; beyond this, neighbours are merged
MAX_BARS = 20_000
#: the chart's width in pixels
WIDTH = 1200
#: colours of the classes, most time first (then they repeat)
PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948",
           "#9c755f", "#bab0ac", "#ff9da7", "#86bcb6", "#8cd17d", "#d37295")


@dataclasses.dataclass
class Attempt:
    """One run of a target: a bar."""

    job: int
    attempt: int
    cls: str
    description: str
    start: float
    end: float
    failed: str | None = None  # why, if it failed
    row: int = 0
    merged: int = 1  # attempts this bar stands for
    mix: dict[str, float] = dataclasses.field(default_factory=dict)  # merged: time per class


@dataclasses.dataclass(frozen=True)
class Table:
    """A table of jobTreeStats, shown as text and, on the page, as an HTML table.

    Attributes:
        title: what it shows.
        head: the column titles.
        rows: the cells of each row; None between two groups of rows.
        left: the columns aligned left (the others hold numbers: right).
        intro: a paragraph before it.
        notes: lines after it.
        paste: lines to copy into a script, after the notes.
    """

    title: str
    head: tuple[str, ...]
    rows: tuple[tuple[str, ...] | None, ...]
    left: frozenset[int] = frozenset({0})
    intro: str = ""
    notes: tuple[str, ...] = ()
    paste: tuple[str, ...] = ()


_NUMBER, _GROUP = ' class="num"', ' class="group"'


def html_table(table: Table) -> str:
    """``table`` as an HTML section: its title, a real <table> (every cell
    escaped), its notes and the lines to paste."""
    def cells(row: tuple[str, ...], tag: str) -> str:
        return "".join(f"<{tag}{'' if i in table.left else _NUMBER}>{html.escape(cell)}</{tag}>"
                       for i, cell in enumerate(row))

    body: list[str] = []
    rule = False
    for row in table.rows:
        if row is None:
            rule = True
            continue
        body.append(f"<tr{_GROUP if rule else ''}>{cells(row, 'td')}</tr>")
        rule = False
    parts = [f"<h2>{html.escape(table.title)}</h2>"]
    if table.intro:
        parts.append(f"<p>{html.escape(table.intro)}</p>")
    parts.append(f'<table class="stats"><thead><tr>{cells(table.head, "th")}</tr></thead>'
                 f"<tbody>{''.join(body)}</tbody></table>")
    if table.notes:
        parts.append("<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in table.notes)
                     + "</ul>")
    if table.paste:
        parts.append("<p>To paste into each class's script:</p><pre>"
                     + html.escape("\n".join(table.paste)) + "</pre>")
    return "\n".join(parts)


def attempts(index: TreeIndex) -> list[Attempt]:
    """Every attempt the index has times for: each step run with --stats, and
    each failed attempt whose start is known."""
    found = [Attempt(job, attempt or 1, cls, description, started, started + (wall or 0.0))
             for job, attempt, cls, description, started, wall in index.run_times()]
    found += [Attempt(job, attempt, cls, description, started, max(at, started), reason)
              for job, attempt, cls, description, started, at, reason
              in index.failed_attempt_times()]
    return found


def assign_rows(bars: list[Attempt]) -> int:
    """Puts each attempt on the lowest row free when it starts; returns the
    number of rows."""
    bars.sort(key=lambda b: (b.start, b.end))
    busy: list[tuple[float, int]] = []  # (end, row)
    free: list[int] = []
    rows = 0
    for bar in bars:
        while busy and busy[0][0] <= bar.start:
            heapq.heappush(free, heapq.heappop(busy)[1])
        if free:
            bar.row = heapq.heappop(free)
        else:
            bar.row, rows = rows, rows + 1
        heapq.heappush(busy, (bar.end, bar.row))
    return rows


def merge(bars: list[Attempt], pixel: float) -> list[Attempt]:
    """Bars that follow each other on a row with less than ``pixel`` seconds
    between them, drawn as one when they are of one class and outcome, or
    both narrower than a pixel; a merged bar takes the colour of the class
    that had most of its time, and is failed if any of its attempts was."""
    merged: list[Attempt] = []
    last: dict[int, Attempt] = {}
    for bar in sorted(bars, key=lambda b: (b.row, b.start)):
        previous = last.get(bar.row)
        if previous is not None and bar.start - previous.end < pixel and (
                (previous.cls == bar.cls and bool(previous.failed) == bool(bar.failed))
                or (previous.end - previous.start < pixel and bar.end - bar.start < pixel)):
            previous.mix[bar.cls] = previous.mix.get(bar.cls, 0.0) + bar.end - bar.start
            previous.cls = max(previous.mix, key=lambda c: previous.mix[c])
            previous.end = max(previous.end, bar.end)
            previous.failed = previous.failed or bar.failed
            previous.merged += 1
            continue
        copy = dataclasses.replace(bar, mix={bar.cls: bar.end - bar.start})
        merged.append(copy)
        last[bar.row] = copy
    return merged


def _step(span: float) -> float:
    """A round tick interval giving about 10 ticks over ``span`` seconds."""
    raw = max(span, 1e-3) / 10
    power = 10.0 ** math.floor(math.log10(raw))
    return float(next(m * power for m in (1, 2, 5, 10) if m * power >= raw))


def _label(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:g}h"
    if seconds >= 60:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"


def page(tree: str, bars: list[Attempt], tables: Sequence[Table],
         now: float | None = None) -> str:
    """The HTML page: the chart of ``bars``, a legend, and jobTreeStats's ``tables``."""
    rows = assign_rows(bars)
    t0 = min((b.start for b in bars), default=0.0)
    span = max((b.end for b in bars), default=1.0) - t0 or 1.0
    scale = WIDTH / span
    drawn = merge(bars, 1 / scale) if len(bars) > MAX_BARS else bars
    height = max(2.0, min(14.0, 900 / max(rows, 1)))
    totals: dict[str, float] = {}
    for bar in bars:
        totals[bar.cls] = totals.get(bar.cls, 0.0) + bar.end - bar.start
    classes = sorted(totals, key=lambda c: (-totals[c], c))
    colour = {c: PALETTE[i % len(PALETTE)] for i, c in enumerate(classes)}
    top, left = 24.0, 10.0
    chart_height = rows * height
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH + 2 * left:.0f}" '
           f'height="{top + chart_height + 10:.0f}" role="img" aria-label="timeline">']
    step = _step(span)
    tick = 0.0
    while tick <= span + 1e-9:
        x = left + tick * scale
        svg.append(f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" '
                   f'y2="{top + chart_height:.1f}" class="grid"/>'
                   f'<text x="{x:.1f}" y="{top - 8}" class="tick">{_label(tick)}</text>')
        tick += step
    for bar in drawn:
        x = left + (bar.start - t0) * scale
        width = max((bar.end - bar.start) * scale, 0.5)
        y = top + bar.row * height
        seconds = bar.end - bar.start
        if bar.merged > 1:
            shares = ", ".join(f"{c} {100 * t / max(sum(bar.mix.values()), 1e-9):.0f}%"
                               for c, t in sorted(bar.mix.items(), key=lambda i: -i[1]))
            tip = f"{bar.merged} attempts over {seconds:.3g} s: {shares}"
            extra = f' data-attempts="{bar.merged}"'
        else:
            tip = (f"{bar.description} · {bar.cls} · attempt {bar.attempt} · {seconds:.3g} s"
                   + (f" · failed ({bar.failed})" if bar.failed else ""))
            extra = f' data-job="{bar.job}" data-attempt="{bar.attempt}"'
        kind = "bar failed" if bar.failed else "bar"
        svg.append(f'<rect class="{kind}"{extra} x="{x:.2f}" y="{y:.2f}" width="{width:.2f}" '
                   f'height="{max(height - 1, 1):.2f}" fill="{colour[bar.cls]}">'
                   f'<title>{html.escape(tip)}</title></rect>')
    svg.append("</svg>")
    legend = "".join(
        f'<li><span class="swatch" style="background:{colour[c]}"></span>'
        f'{html.escape(c)} ({_label(round(totals[c], 1))} in all)</li>' for c in classes)
    failed = sum(1 for b in bars if b.failed)
    merged_note = (f" Drawn as {len(drawn):,} bars: attempts that follow each other on a row "
                   f"closer than a pixel are merged, coloured by the class with most of their "
                   f"time." if drawn is not bars else "")
    sections = "".join(html_table(t) + "\n" for t in tables)
    made = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now or time.time()))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>jobtree timeline: {html.escape(tree)}</title>
<style>
body {{ font: 13px system-ui, sans-serif; margin: 16px; color: #222; }}
.grid {{ stroke: #e4e4e4; stroke-width: 1; }}
.tick {{ font-size: 10px; fill: #666; text-anchor: middle; }}
rect.failed {{ stroke: #d00; stroke-width: 1.5; }}
ul.legend {{ list-style: none; padding: 0; display: flex; flex-wrap: wrap; gap: 4px 16px; }}
.swatch {{ display: inline-block; width: 12px; height: 12px; margin-right: 4px;
          vertical-align: -2px; }}
.chart {{ overflow-x: auto; border: 1px solid #ddd; }}
pre {{ background: #f7f7f7; padding: 8px; overflow-x: auto; }}
table.stats {{ border-collapse: collapse; font-variant-numeric: tabular-nums; }}
table.stats th, table.stats td {{ padding: 2px 8px; text-align: left; white-space: nowrap; }}
table.stats .num {{ text-align: right; }}
table.stats thead th {{ border-bottom: 2px solid #999; }}
table.stats tr.group td {{ border-top: 1px solid #ccc; }}
</style></head>
<body>
<h1>Timeline of {html.escape(tree)}</h1>
<p>{len(bars):,} attempts on {rows:,} rows (worker slots or batch jobs as they were used)
over {_label(round(span, 1))}; {failed:,} failed (red outline). Hover over a bar for the
target.{merged_note} Written {made}.</p>
<ul class="legend">{legend}</ul>
<div class="chart">
{"".join(svg)}
</div>
{sections}</body></html>
"""
