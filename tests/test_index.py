"""The read-only query layer (jobstore.TreeIndex) over an index the job store
wrote, and the seam itself: no SQL and no sqlite3 outside the job store."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from jobtree import jobstore
from jobtree.jobstore import ConditionError, JobState, JobStore, NewJob, Step, TreeIndex
from jobtree.paths import TreePaths

PACKAGE = Path(jobstore.__file__).resolve().parent.parent


def _new(cls: str, description: str) -> NewJob:
    return NewJob(cls, description, None, None, None, None, b"pickle")


def _step(cls: str, description: str, children: list[NewJob], wall: float,
          memory: int, started: float, messages: tuple[str, ...] = ()) -> Step:
    return Step(cls, description, children, None, [(20, m) for m in messages],
                {"wall": wall, "cpu": wall / 2, "wait": 1.0, "memory": memory,
                 "started": started})


@pytest.fixture
def index(tmp_path: Path) -> TreePaths:
    """A tree of a root, three Leafs and a Sort: the root ran and waits for
    its children, two leafs ran (all three with --stats), one leaf failed for
    good after two tries, the Sort is issued and running."""
    paths = TreePaths(str(tmp_path / "jt"))
    Path(paths.root).mkdir()
    JobStore.initialise(paths, {"tree_id": "abc123"}, _new("pipe.Root", "Root()"), tries=1)
    store = JobStore.open(paths)
    try:
        with store.transaction():
            attempt = store.mark_issued(1, "fake", now=100.0)
            children = [_new("pipe.Leaf", f"Leaf({n})") for n in range(3)]
            store.ingest_success(1, attempt, [
                _step("pipe.Root", "Root()", [*children, _new("other.Sort", "Sort()")],
                      wall=5.0, memory=100, started=100.0, messages=("hello", "world"))],
                run_id="r", tries=1, now=105.0)
        with store.transaction():
            for job, wall in ((2, 1.0), (3, 3.0)):
                attempt = store.mark_issued(job, "fake", now=110.0)
                store.ingest_success(job, attempt, [
                    _step("pipe.Leaf", f"Leaf({job - 2})", [], wall=wall, memory=10 * job,
                          started=110.0)], run_id="r", tries=1, now=115.0)
            for failure in range(2):
                attempt = store.mark_issued(4, "fake", now=120.0 + failure)
                store.record_failure(4, attempt, "exit", 1, None, "boom", now=125.0 + failure,
                                     started=121.0 + failure)
            attempt = store.mark_issued(5, "fake", now=130.0)
            store.set_started(5, attempt, 131.0)
    finally:
        store.close()
    return paths


def test_listing_names_states_and_filters(index: TreePaths) -> None:
    view = TreeIndex.open(index)
    try:
        every = view.listing()
        assert [(t.id, t.state) for t in every] == [
            (1, "waiting"), (2, "done"), (3, "done"), (4, "failed"), (5, "running")]
        assert [t.id for t in view.listing(state="done")] == [2, 3]
        assert [t.id for t in view.listing(cls="Leaf")] == [2, 3, 4]
        assert [t.id for t in view.listing(cls="pipe.Leaf", limit=1)] == [2]
        assert [t.id for t in view.listing(condition="attempts > 1")] == [4]
        assert {t.id: t.wall for t in every} == {1: 5.0, 2: 1.0, 3: 3.0, 4: None, 5: None}
        assert every[4].started_at == 131.0
        with pytest.raises(ConditionError, match="syntax error"):
            view.listing(condition="nonsense >")
        assert jobstore.state_name(JobState.RAN) == "waiting"
    finally:
        view.close()


def test_classes_and_recorded_runs(index: TreePaths) -> None:
    view = TreeIndex.open(index)
    try:
        classes = {cls: (counts, median, runs) for cls, counts, median, runs in view.classes()}
        assert classes["pipe.Leaf"] == (
            {"waiting": 0, "ready": 0, "running": 0, "done": 2, "failed": 1}, 1.0, 2)
        assert classes["other.Sort"][0]["running"] == 1 and classes["other.Sort"][2] == 0
        assert view.run_classes() == ["pipe.Root", "pipe.Leaf"]  # most wall time first
        assert view.run_count() == 3 and view.run_count("pipe.Leaf") == 2
        wall = view.run_spread("wall", "pipe.Leaf")
        assert (wall.low, wall.median, wall.mean, wall.high, wall.total) == (1.0, 2.0, 2.0,
                                                                             3.0, 4.0)
        assert view.run_spread("memory").median == 30.0
        assert view.run_spread("cpu", "other.Sort").median is None
        with pytest.raises(ValueError):
            view.run_spread("pickle")
    finally:
        view.close()


def test_issued_messages_and_timeline_rows(index: TreePaths) -> None:
    view = TreeIndex.open(index)
    try:
        with view.snapshot():
            issued = view.issued_summary()
            counts = view.counts()
        assert (issued.running, issued.queued, issued.oldest_start) == (1, 0, 131.0)
        assert counts[JobState.DONE] == 2 and counts[JobState.RAN] == 1 and counts[JobState.ISSUED] == 1
        assert [text for _, _, text in view.latest_messages(1)] == ["world"]
        assert [m[1:] for m in view.latest_messages(5)] == [("Root()", "hello"),
                                                            ("Root()", "world")]
        assert sorted(r[0] for r in view.run_times()) == [1, 2, 3]
        assert [(r[0], r[1], r[4], r[5]) for r in view.failed_attempt_times()] == [
            (4, 1, 121.0, 125.0), (4, 2, 122.0, 126.0)]
    finally:
        view.close()


def test_peek_reads_what_it_can(index: TreePaths, tmp_path: Path) -> None:
    found = jobstore.peek(index)
    assert found is not None and (found.tree_id, found.done, found.total) == ("abc123", 2, 5)
    store = JobStore.open(index)
    store.set_meta("tree_id", 12)
    store.close()
    found = jobstore.peek(index)
    assert found is not None and found.tree_id is None and found.done == 2
    broken = TreePaths(str(tmp_path / "broken"))
    Path(broken.root).mkdir()
    Path(broken.db).write_text("not a database")
    assert jobstore.peek(broken) is None


def _code(path: Path) -> str:
    """The module's text without its docstrings and comments (roughly)."""
    text = re.sub(r'"""(.|\n)*?"""', "", path.read_text())
    return re.sub(r"#.*", "", text)


def test_no_sql_outside_the_job_store() -> None:
    sql = re.compile(r"\b(SELECT\s.+\sFROM|UPDATE\s+\w+\s+SET|INSERT\s+(OR\s+\w+\s+)?INTO|"
                     r"DELETE\s+FROM|PRAGMA)\b|\bstate\s*=\s*(\?|\d)|\bstate\s+IN\s*\(|execute\(")
    #: modules that only catch an index error while writing it (the master's run)
    allowed_sqlite = {"tree.py"}
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] == "jobstore":
            continue
        code = _code(path)
        if sql.search(code):
            found.append(f"{relative}: {sql.search(code).group(0)!r}")  # type: ignore[union-attr]
        if "sqlite3" in code and str(relative) not in allowed_sqlite:
            found.append(f"{relative}: sqlite3")
    assert found == []


def test_the_package_reexports_what_callers_import() -> None:
    for name in ("FORMAT_VERSION", "JobId", "JobRow", "JobState", "JobStore", "NewJob",
                 "Settled", "Step", "TreeIndex"):
        assert hasattr(jobstore, name), name
    assert json.loads(json.dumps(jobstore.FORMAT_VERSION)) == 7
