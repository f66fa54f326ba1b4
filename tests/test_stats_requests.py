"""jobTreeStats's requested against used: on a tree whose classes ask clearly
too much or too little (tests/pipelines/asking.py, run with --stats on
singleMachine), the table, --json and the timeline page show what each class
asked (defaults applied; a chained follow-on had its job's request), what it
used, and a sensible suggestion. The suggestion rule itself is tested on
made-up numbers."""

from __future__ import annotations

import html.parser
import json
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import run_command, run_script

from jobtree import timeline
from jobtree.cli import fit
from jobtree.jobstore import ClassUse, FailedTries

MIB = 1024 ** 2
GIB = 1024 ** 3
PLAIN = 'Plain<b>&"'


@pytest.fixture(scope="module")
def asking_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The asking pipeline, run once with --stats (tests only read it)."""
    tree = tmp_path_factory.mktemp("asking") / "jobTree"
    done = run_script("asking.py", "--jobTree", str(tree), "--stats", "--maxThreads", "2",
                      "--defaultMemory", "1536M", "--logLevel", "ERROR", timeout=180)
    assert done.returncode == 0, done.stderr
    return tree


@pytest.fixture(scope="module")
def data(asking_tree: Path) -> dict[str, Any]:
    made = run_command("stats", "--jobTree", str(asking_tree), "--json")
    assert made.returncode == 0, made.stderr
    return dict(json.loads(made.stdout))


def test_json_shows_asked_used_and_suggested(data: dict[str, Any]) -> None:
    classes = data["classes"]
    assert {cls: s["count"] for cls, s in classes.items()} == {
        "Root": 1, "Hungry": 2, "Idle": 1, "Tail": 1, PLAIN: 1}
    assert data["total"]["count"] == 6  # the summaries are still there

    hungry = classes["Hungry"]["request"]
    assert hungry["memory"]["asked_min"] == hungry["memory"]["asked_max"] == 10 * MIB
    assert hungry["memory"]["peak"] >= 150 * MIB
    assert hungry["memory"]["over_asked"] == 2
    assert hungry["memory"]["suggested"] >= 1.2 * hungry["memory"]["peak"]
    assert hungry["memory"]["suggested"] <= 1.5 * 1.2 * hungry["memory"]["peak"]
    assert hungry["memory"]["verdict"] == "more"
    assert hungry["cpu"]["asked_max"] == 1 and hungry["cpu"]["suggested"] == 1
    assert hungry["time"]["asked_max"] == 1.0 and hungry["time"]["estimated"] == 2

    idle = classes["Idle"]["request"]
    assert idle["memory"]["asked_max"] == 2 * GIB
    assert idle["memory"]["suggested"] < GIB and idle["memory"]["verdict"] == "less"
    assert idle["cpu"]["asked_max"] == 2 and idle["cpu"]["busy"] < 1
    assert idle["cpu"]["suggested"] == 1 and idle["cpu"]["verdict"] == "less"
    assert idle["cpu"]["efficiency"] < 0.5  # CPU time against 2 cores x wall
    assert idle["cpu"]["reserved"] == pytest.approx(2 * classes["Idle"]["wall"]["total"])
    assert idle["time"]["asked_max"] == 3600 and idle["time"]["max"] >= 0.3
    assert idle["time"]["suggested"] < 60 and idle["time"]["verdict"] == "less"
    assert idle["suggested"]["cpu"] == 1
    assert re.fullmatch(r'memory="\d+M", cpu=1, time="\d+s"', idle["paste"])

    # a follow-on chained into Idle's job had what that job was given
    tail = classes["Tail"]["request"]
    assert tail["memory"]["asked_max"] == 2 * GIB and tail["cpu"]["asked_max"] == 2

    # a target that said nothing asked the tree's defaults: no time estimate
    plain = classes[PLAIN]["request"]
    assert plain["memory"]["asked_max"] == 1536 * MIB and plain["cpu"]["asked_max"] == 1
    assert plain["time"]["asked_max"] is None and plain["time"]["estimated"] == 0
    assert plain["time"]["verdict"] == "none" and plain["time"]["suggested"] >= 1


def test_text_shows_the_table_and_lines_to_paste(asking_tree: Path,
                                                 data: dict[str, Any]) -> None:
    made = run_command("stats", "--jobTree", str(asking_tree))
    assert made.returncode == 0, made.stderr
    out = made.stdout
    assert re.search(r"^Hungry\s+2\s+wall time\s", out, re.M)  # the summaries first
    assert "Requested against used, and a suggested request:" in out
    hungry = data["classes"]["Hungry"]["request"]
    wanted = fit.size_text(hungry["memory"]["suggested"])
    assert re.search(rf"^Hungry\s+2\s+memory\s+10\.0 MiB\s+peak .*\s2\s+{wanted}\s+ask more$",
                     out, re.M)
    assert re.search(r"^\s+cores\s+2\s+0\.\d\d cores busy.*\s1\s+ask less$", out, re.M)
    assert re.search(r"^\s+time\s+1:00:00\s+max .*\s0\s+\d+s\s+ask less$", out, re.M)
    assert re.search(rf"^{re.escape(PLAIN)}\s+1\s+memory\s+1\.5 GiB\s", out, re.M)
    assert f"  Hungry: memory=\"{wanted}\", cpu=1, time=" in out
    rules = {len(line) for line in out.split("Requested against used")[1].splitlines()
             if line.startswith("---")}
    assert len(rules) == 1  # the rules line up with the table


class Tables(html.parser.HTMLParser):
    """The cells of each <table> of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell))
            self._cell = None


def test_the_timeline_shows_both_tables_as_html(asking_tree: Path, tmp_path: Path) -> None:
    page = tmp_path / "timeline.html"
    made = run_command("stats", "--jobTree", str(asking_tree), "--timeline", str(page))
    assert made.returncode == 0, made.stderr
    text = page.read_text()
    assert "<pre>" not in text.split("<h2>Per class</h2>")[1].split("</table>")[0]
    assert "Plain&lt;b&gt;&amp;&quot;" in text and PLAIN not in text  # escaped
    parsed = Tables()
    parsed.feed(text)
    summary, requests = parsed.tables
    assert summary[0][:3] == ["target class", "count", "measure"]
    assert ["all targets", "6", "wall time"] == summary[-4][:3]
    assert requests[0][:4] == ["target class", "runs", "resource", "asked"]
    hungry = next(row for row in requests if row[0] == "Hungry")
    assert hungry[1:4] == ["2", "memory", "10.0 MiB"] and hungry[-1] == "ask more"
    assert any(row[0] == PLAIN for row in requests)  # the name, read back unescaped


def test_html_table_escapes_every_cell() -> None:
    table = timeline.Table(title="<x1>", head=("a&b",), rows=(("<script>x</script>",), None,
                                                              ("'\"",)),
                           intro="<x2>", notes=("<x3>",), paste=("<x4>",))
    made = timeline.html_table(table)
    for raw in ("<x1>", "a&b", "<script>", "<x2>", "<x3>", "<x4>", "'\""):
        assert raw not in made
    assert "&lt;script&gt;x&lt;/script&gt;" in made and 'class="group"' in made


def test_a_class_that_always_ran_out_of_memory_is_shown(tmp_path: Path) -> None:
    tree = tmp_path / "jobTree"
    done = run_script("asking.py", "--jobTree", str(tree), "--stats", "--maxThreads", "2",
                      "--starve", "--retryCount", "1", "--logLevel", "CRITICAL", timeout=180)
    assert done.returncode == 1, done.stderr  # Starved failed for good
    made = run_command("stats", "--jobTree", str(tree), "--json")
    assert made.returncode == 0, made.stderr
    data = json.loads(made.stdout)
    assert "Starved" not in data["classes"]  # no run of it was recorded
    starved = data["failed_classes"]["Starved"]["request"]
    # the second try asked twice the first's 100 MiB (the index keeps each try's request)
    assert starved["memory"]["asked_max"] == 200 * MIB
    assert starved["memory"]["out_of_memory"] == 2  # both tries
    assert starved["memory"]["suggested"] >= 400 * MIB  # twice what they asked, at least
    assert starved["memory"]["verdict"] == "more"
    shown = run_command("stats", "--jobTree", str(tree)).stdout
    assert re.search(r"^Starved\s+0\s+memory\s+200\.0 MiB\s+no run recorded\s.*ask more$",
                     shown, re.M)
    assert "Starved: 2 tries ran out of memory" in shown


# ------------------------------------------------------ the rule, on made-up numbers
def _use(**values: Any) -> ClassUse:
    base: dict[str, Any] = dict(
        cls="C", runs=100, memory_asked=(GIB, GIB), memory_peak=700 * MIB, memory_over=0,
        cpu_asked=(1, 1), cpu_time=95.0, cpu_wall=100.0, cpu_reserved=100.0,
        time_asked=(60.0, 60.0), estimated=100, wall_high=900.0, wall_over=3,
        ranks={"memory": {50: 600 * MIB, 95: 690 * MIB}, "wall": {50: 30.0, 95: 110.0}})
    base.update(values)
    return ClassUse(**base)


def test_friendly_sizes_and_durations() -> None:
    assert [fit.size_text(fit.friendly_size(s * MIB)) for s in (1, 33, 300, 700, 1025, 5000)] \
        == ["16M", "40M", "320M", "768M", "1.25G", "5G"]
    assert [fit.duration_text(fit.friendly_duration(s)) for s in
            (0.01, 44.2, 61, 3599, 3601, 8000, 90000)] == [
        "1s", "45s", "2m", "1:00:00", "1:15:00", "2:15:00", "25:00:00"]


def test_the_rule_uses_the_peak_busy_cores_and_a_high_percentile() -> None:
    found = fit.request(_use(), {})
    assert found["memory"]["suggested"] == 896 * MIB  # 700 MiB peak + 20%, rounded up
    assert found["memory"]["verdict"] == "ok"
    assert found["cpu"]["suggested"] == 1 and found["cpu"]["efficiency"] == 0.95
    assert found["time"]["suggested"] == 120  # the 95th percentile, not the max
    assert found["time"]["verdict"] == "more"
    assert found["paste"] == 'memory="896M", cpu=1, time="2m"'
    busy = fit.request(_use(cpu_time=320.0), {})
    assert busy["cpu"]["suggested"] == 3 and busy["cpu"]["verdict"] == "more"  # 3.2 busy
    assert fit.request(_use(cpu_time=330.0), {})["cpu"]["suggested"] == 4


def test_tries_out_of_memory_or_over_time_raise_the_suggestion() -> None:
    found = fit.request(_use(), {"out of memory": FailedTries(4, 2 * GIB, 1, 60.0),
                                 "timeout": FailedTries(1, GIB, 1, 600.0)})
    assert found["memory"]["out_of_memory"] == 4
    assert found["memory"]["suggested"] >= 4 * GIB and found["memory"]["verdict"] == "more"
    assert found["time"]["over_time"] == 1 and found["time"]["suggested"] >= 1200
    notes = fit.fit_table({"classes": {"C": {"count": 100, "request": found}}}).notes
    assert any("4 tries ran out of memory" in n for n in notes)


def test_tiny_runs_get_the_least_memory_and_one_core() -> None:
    found = fit.request(_use(memory_peak=15 * MIB, cpu_time=0.004, cpu_wall=0.001,
                             cpu_asked=(2, 2)), {})
    assert found["suggested"]["memory"] == "64M"  # never below what a worker needs
    assert found["cpu"]["busy"] == 4.0 and found["suggested"]["cpu"] == 1  # too short to tell
    assert found["cpu"]["verdict"] == "less"


def test_a_class_with_no_run_recorded_asks_twice_what_its_tries_asked() -> None:
    assert fit.unrecorded("C", {"failed": FailedTries(3, GIB, 1, None)}) is None
    use = fit.unrecorded("C", {"out of memory": FailedTries(3, GIB, 2, 600.0)})
    assert use is not None and use.runs == 0 and use.memory_asked == (GIB, GIB)
    found = fit.request(use, {"out of memory": FailedTries(3, GIB, 2, 600.0)})
    assert found["suggested"] == {"memory": "2G"}  # twice what the tries asked
    assert found["cpu"]["verdict"] is None and found["time"]["verdict"] is None


def test_a_class_without_measures_gets_no_suggestion() -> None:
    found = fit.request(_use(memory_peak=None, cpu_time=None, cpu_wall=None, ranks={}), {})
    assert found["suggested"] == {} and found["paste"] == ""
    assert found["memory"]["verdict"] is None
