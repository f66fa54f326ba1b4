"""jobTreeStats --timeline: the page holds one bar per attempt (failed ones
marked), is self-contained, and merges bars when there are too many."""

from __future__ import annotations

import html.parser
import sqlite3
from pathlib import Path

import pytest
from conftest import run_command, run_script

from jobtree import timeline


class Bars(html.parser.HTMLParser):
    """The bars of a timeline page, and anything that would load from elsewhere."""

    def __init__(self) -> None:
        super().__init__()
        self.bars: list[dict[str, str]] = []
        self.titles = 0
        self.external: list[str] = []
        self._in_bar = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {k: v or "" for k, v in attrs}
        if tag == "rect" and "bar" in found.get("class", "").split():
            self.bars.append(found)
            self._in_bar = True
        if tag == "title" and self._in_bar:
            self.titles += 1
        if tag in ("script", "link", "img", "iframe") or "src" in found:
            self.external.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "rect":
            self._in_bar = False


def test_one_bar_per_attempt_and_failed_ones_marked(tmp_path: Path) -> None:
    tree = tmp_path / "jt"
    done = run_script("statusdata.py", "--jobTree", str(tree), "--retryCount", "1",
                      "--stats", "--logLevel", "ERROR")
    assert done.returncode == 3, done.stderr
    page = tmp_path / "timeline.html"
    made = run_command("stats", "--jobTree", str(tree), "--timeline", str(page))
    assert made.returncode == 0, made.stderr
    parsed = Bars()
    parsed.feed(page.read_text())
    db = sqlite3.connect(f"file:{tree / 'tree.db'}?mode=ro", uri=True)
    ran = {(job, attempt) for job, attempt in db.execute(
        "SELECT s.job, j.attempt FROM stats s JOIN jobs j ON j.id = s.job")}
    failed = set(db.execute("SELECT job, attempt FROM failures").fetchall())
    db.close()
    assert len(ran) == 13 and len(failed) == 6  # 12 leaves + 3 others - 3 failed + root
    drawn = [(int(b["data-job"]), int(b["data-attempt"])) for b in parsed.bars]
    assert sorted(drawn) == sorted(ran | failed)  # one bar per attempt, no more
    outlined = {(int(b["data-job"]), int(b["data-attempt"])) for b in parsed.bars
                if "failed" in b["class"].split()}
    assert outlined == failed
    assert parsed.titles == len(drawn)  # every bar says what it is
    assert parsed.external == []  # opens offline: nothing to load
    text = page.read_text()
    assert "Per class" in text and "all targets" in text  # the jobTreeStats table
    assert "19 attempts" in text and "6 failed" in text


def test_a_tree_without_stats_gets_a_clear_error(tmp_path: Path) -> None:
    tree = tmp_path / "jt"
    assert run_script("sleepy.py", "--jobTree", str(tree), "--count", "1",
                      "--seconds", "0").returncode == 0
    made = run_command("stats", "--jobTree", str(tree), "--timeline", str(tmp_path / "t.html"))
    assert made.returncode == 2 and "not run with --stats" in made.stderr
    assert not (tmp_path / "t.html").exists()


def _attempts(count: int, rows: int) -> list[timeline.Attempt]:
    """``count`` back-to-back attempts of 0.01 s spread over ``rows`` slots."""
    return [timeline.Attempt(n, 1, f"C{n % 3}", f"T({n})", (n // rows) * 0.01,
                             (n // rows) * 0.01 + 0.01) for n in range(count)]


def test_rows_are_the_slots_as_they_were_used() -> None:
    bars = [timeline.Attempt(1, 1, "A", "a", 0, 10), timeline.Attempt(2, 1, "A", "b", 1, 3),
            timeline.Attempt(3, 1, "A", "c", 4, 5), timeline.Attempt(4, 1, "A", "d", 2, 6)]
    assert timeline.assign_rows(bars) == 3
    rows = {b.job: b.row for b in bars}
    assert rows == {1: 0, 2: 1, 4: 2, 3: 1}  # c reuses b's row once b ended


@pytest.mark.parametrize("count", [100, 30_000])
def test_many_attempts_are_merged_into_fewer_bars(count: int) -> None:
    parsed = Bars()
    parsed.feed(timeline.page("/tree", _attempts(count, 4), []))
    if count <= timeline.MAX_BARS:
        assert len(parsed.bars) == count
    else:
        assert len(parsed.bars) < count / 4  # about a bar a pixel on each row
        assert sum(int(b.get("data-attempts", 1)) for b in parsed.bars) == count
