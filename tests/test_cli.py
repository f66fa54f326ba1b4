"""The commands jobTreeStatus, jobTreeKill, jobTreeStats and jobTreeClean, run as
real processes on trees made by tests/pipelines/cli_pipeline.py.

Each tree is a small pipeline (a root, three children, a follow-on) run on
singleMachine with two threads, so the file runs in a few seconds.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest
from conftest import PIPELINES, run_command, run_script

COMMANDS = ("status", "kill", "stats", "clean")
SCRIPTS = {"status": "jobTreeStatus", "kill": "jobTreeKill", "stats": "jobTreeStats",
           "clean": "jobTreeClean"}


def make_tree(path: Path, *args: str, expect: int = 0) -> Path:
    """Runs the test pipeline into ``path`` and checks its exit status."""
    process = run_script("cli_pipeline.py", "--jobTree", str(path), "--maxThreads", "2",
                         *args, timeout=120)
    assert process.returncode == expect, process.stderr
    return path


def tree_id(path: Path) -> str:
    """The id of a tree (names its local temp root)."""
    import sqlite3
    db = sqlite3.connect(f"file:{path / 'tree.db'}?mode=ro", uri=True)
    try:
        return str(json.loads(db.execute(
            "SELECT value FROM meta WHERE key = 'tree_id'").fetchone()[0]))
    finally:
        db.close()


def one_error_line(process: subprocess.CompletedProcess[str]) -> str:
    """Checks that a command printed exactly one line, an error without a traceback."""
    output = (process.stdout + process.stderr).strip()
    assert "Traceback" not in output, output
    assert len(output.splitlines()) == 1, output
    assert output.startswith("jobtree: "), output
    return output


@pytest.fixture(scope="module")
def finished_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tree that finished, run with --stats (shared: tests only read it)."""
    return make_tree(tmp_path_factory.mktemp("finished") / "jobTree", "--stats")


@pytest.fixture(scope="module")
def failed_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tree whose second child raised, with no retries (shared: tests only read it)."""
    return make_tree(tmp_path_factory.mktemp("failed") / "jobTree", "--mode", "fail",
                     "--retryCount", "0", expect=1)


@pytest.fixture
def running_master(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[bytes]]]:
    """A master running a tree whose second child sleeps (until killed)."""
    path = tmp_path / "jobTree"
    marker = tmp_path / "sleeping"
    with open(tmp_path / "master.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(PIPELINES / "cli_pipeline.py"), "--jobTree", str(path),
             "--maxThreads", "2", "--mode", "sleep", "--marker", str(marker),
             "--seconds", "120"], stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert process.poll() is None, (tmp_path / "master.log").read_text()
            assert time.monotonic() < deadline, "the sleeping target never started"
            time.sleep(0.05)
        yield path, process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


# ------------------------------------------------------------------ status
def test_status_of_a_finished_tree(finished_tree: Path) -> None:
    process = run_command("status", "--jobTree", str(finished_tree), "--failIfNotComplete")
    assert process.returncode == 0, process.stderr
    out = process.stdout
    assert "5 of 5 targets done (100%)" in out
    assert re.search(r"^  done\s+5$", out, re.M)
    assert re.search(r"^  failed\s+0$", out, re.M)
    assert "Master: none is running" in out
    assert "The tree finished" in out


def test_status_of_a_failed_tree(failed_tree: Path) -> None:
    plain = run_command("status", "--jobTree", str(failed_tree))
    assert plain.returncode == 0, plain.stderr
    assert re.search(r"^  failed\s+1\b", plain.stdout, re.M)
    assert "jobTreeRun --jobTree" in plain.stdout

    verbose = run_command("status", "--jobTree", str(failed_tree), "--verbose",
                          "--failIfNotComplete")
    assert verbose.returncode == 1, verbose.stderr
    out = verbose.stdout
    assert "ValueError: child 1 failed on purpose" in out
    assert "Child(index=1" in out
    logs = re.findall(r"log: (\S+)", out)
    assert len(logs) == 1 and os.path.isfile(logs[0]), out
    assert os.path.samefile(os.path.dirname(logs[0]), failed_tree / "logs")
    assert "| ValueError: child 1 failed on purpose" in out  # the log's last lines
    assert "child 0 ran" in out  # logToMaster messages


def test_status_kill_and_restart_while_a_master_runs(
        running_master: tuple[Path, subprocess.Popen[bytes]]) -> None:
    path, master = running_master
    began = time.monotonic()
    status = run_command("status", "--jobTree", str(path), "--verbose", timeout=30)
    assert time.monotonic() - began < 10
    assert status.returncode == 0, status.stderr
    assert "Master: running" in status.stdout
    assert f"pid {master.pid}" in status.stdout
    assert re.search(r"^  issued\s+1\b", status.stdout, re.M)
    assert "Child(index=1" in status.stdout
    assert run_command("status", "--jobTree", str(path),
                       "--failIfNotComplete").returncode == 1

    clean = run_command("clean", "--jobTree", str(path))
    assert clean.returncode == 2
    message = one_error_line(clean)
    assert f"pid {master.pid}" in message and "jobTreeKill" in message
    assert (path / "tree.db").is_file()

    kill = run_command("kill", "--jobTree", str(path), "--timeout", "40", timeout=60)
    assert kill.returncode == 0, kill.stdout + kill.stderr
    assert "The master stopped" in kill.stdout
    master.wait(timeout=30)
    assert master.returncode != 0  # startJobTree raised TreeStopped

    after = run_command("status", "--jobTree", str(path))
    assert "Master: none is running" in after.stdout
    assert re.search(r"^  issued\s+0$", after.stdout, re.M)
    assert re.search(r"^  ready\s+1\b", after.stdout, re.M)
    assert run_command("kill", "--jobTree", str(path)).stdout.startswith("No master")

    rerun = run_command("run", "--jobTree", str(path), "--maxThreads", "2", timeout=60)
    assert rerun.returncode == 0, rerun.stderr
    final = run_command("status", "--jobTree", str(path), "--failIfNotComplete")
    assert final.returncode == 0, final.stdout
    assert "5 of 5 targets done" in final.stdout


# -------------------------------------------------------------------- kill
def test_kill_without_a_master(finished_tree: Path) -> None:
    process = run_command("kill", "--jobTree", str(finished_tree))
    assert process.returncode == 0, process.stderr
    assert "nothing to stop" in process.stdout
    assert not (finished_tree / "control" / "kill").exists()


def test_kill_times_out_on_a_master_that_does_not_stop(finished_tree: Path,
                                                       tmp_path: Path) -> None:
    path = tmp_path / "jobTree"
    shutil.copytree(finished_tree, path)
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import filelock, signal, sys, time\n"
         "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
         "lock = filelock.FileLock(sys.argv[1]); lock.acquire()\n"
         "print('locked', flush=True); time.sleep(60)\n", str(path / "master.lock")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        process = run_command("kill", "--jobTree", str(path), "--timeout", "1")
        assert process.returncode == 2
        assert "still holds the tree" in process.stderr
        assert "Traceback" not in process.stderr
        assert (path / "control" / "kill").exists()  # the request stays for the master
        assert holder.poll() is None
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()


# ------------------------------------------------------------------- stats
def test_stats_table_and_json(finished_tree: Path) -> None:
    process = run_command("stats", "--jobTree", str(finished_tree))
    assert process.returncode == 0, process.stderr
    out = process.stdout
    assert "statistics of 5 of 5 targets" in out
    assert re.search(r"^Child\s+3\s+wall time\s", out, re.M)
    assert re.search(r"^Root\s+1\s+wall time\s", out, re.M)
    assert re.search(r"^all targets\s+5\s+wall time\s", out, re.M)
    assert re.search(r"^\s+peak memory\s+[\d.]+ MiB", out, re.M)
    summaries = out.split("\n\n")[0]  # the requested-against-used table follows
    widths = {len(line) for line in summaries.splitlines()[1:] if line.startswith("-")}
    assert len(widths) == 1  # the rules line up with the table

    data = json.loads(run_command("stats", "--jobTree", str(finished_tree), "--json").stdout)
    assert data["total"]["count"] == 5
    assert {cls: s["count"] for cls, s in data["classes"].items()} == {
        "Root": 1, "Child": 3, "Finish": 1}
    for summary in [*data["classes"].values(), data["total"]]:
        for measure in ("wall", "cpu", "wait", "memory"):
            values = summary[measure]
            assert values["min"] <= values["median"] <= values["max"]
            assert values["min"] <= values["mean"] <= values["max"]
        assert summary["memory"]["min"] > 1024 ** 2
        assert summary["memory"]["total"] is None
    child_wall = data["classes"]["Child"]["wall"]
    assert child_wall["total"] == pytest.approx(3 * child_wall["mean"])


def test_stats_of_a_tree_run_without_stats(failed_tree: Path) -> None:
    process = run_command("stats", "--jobTree", str(failed_tree))
    assert process.returncode == 2
    message = one_error_line(process)
    assert "not run with --stats" in message
    assert f"jobTreeRun --jobTree {failed_tree} --stats" in message


# ------------------------------------------------------------------- clean
def test_clean_removes_a_finished_tree(tmp_path: Path) -> None:
    path = make_tree(tmp_path / "jobTree")
    local = Path(tempfile.gettempdir()) / f"jobtree-{os.getuid()}" / tree_id(path)
    local.mkdir(parents=True, exist_ok=True)
    (local / "leftover").write_text("x")
    process = run_command("clean", "--jobTree", str(path))
    assert process.returncode == 0, process.stderr
    assert "Removed the job tree" in process.stdout
    assert not path.exists()
    assert not local.exists()
    assert os.listdir(tmp_path) == []  # nothing renamed aside is left behind


def test_clean_refuses_a_directory_that_is_not_a_tree(tmp_path: Path) -> None:
    folder = tmp_path / "precious"
    (folder / "sub").mkdir(parents=True)
    (folder / "data.txt").write_text("keep me")
    process = run_command("clean", "--jobTree", str(folder))
    assert process.returncode == 2
    assert "not a job tree" in one_error_line(process)
    assert (folder / "data.txt").read_text() == "keep me"
    assert (folder / "sub").is_dir()


def test_clean_refuses_a_symbolic_link(finished_tree: Path, tmp_path: Path) -> None:
    link = tmp_path / "link"
    link.symlink_to(finished_tree)
    process = run_command("clean", "--jobTree", str(link))
    assert process.returncode == 2
    assert "symbolic link" in one_error_line(process)
    assert (finished_tree / "tree.db").is_file()


def test_clean_of_a_missing_directory_succeeds(tmp_path: Path) -> None:
    process = run_command("clean", "--jobTree", str(tmp_path / "absent"))
    assert process.returncode == 0
    assert "nothing to remove" in one_error_line(process)


# ---------------------------------------------------------- every command
@pytest.mark.parametrize("command", COMMANDS)
def test_missing_directory(command: str, tmp_path: Path) -> None:
    process = run_command(command, "--jobTree", str(tmp_path / "absent"))
    assert process.returncode == (0 if command == "clean" else 2)
    assert str(tmp_path / "absent") in one_error_line(process)


@pytest.mark.parametrize("command", COMMANDS)
def test_not_a_tree(command: str, tmp_path: Path) -> None:
    (tmp_path / "file.txt").write_text("keep me")
    process = run_command(command, "--jobTree", str(tmp_path))
    assert process.returncode == 2
    assert "not a job tree" in one_error_line(process)
    assert sorted(os.listdir(tmp_path)) == ["file.txt"]  # nothing created, nothing removed


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a tree to another user")
@pytest.mark.parametrize("command", COMMANDS)
def test_another_users_tree(command: str, finished_tree: Path, tmp_path: Path) -> None:
    path = tmp_path / "theirs"
    shutil.copytree(finished_tree, path)
    os.chown(path, 65534, 65534)
    process = run_command(command, "--jobTree", str(path))
    assert process.returncode == 2
    assert "belongs to another user" in one_error_line(process)
    assert (path / "tree.db").is_file()


@pytest.mark.parametrize("command", COMMANDS)
def test_console_scripts(command: str) -> None:
    script = shutil.which(SCRIPTS[command], path=os.path.dirname(sys.executable)) \
        or shutil.which(SCRIPTS[command])
    if script is None:
        pytest.skip(f"{SCRIPTS[command]} is not installed (pip install -e .)")
    process = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=30)
    assert process.returncode == 0
    assert "--jobTree" in process.stdout


def test_status_check_and_dot(tmp_path: Path) -> None:
    tree = tmp_path / "jt"
    done = subprocess.run([sys.executable, str(PIPELINES / "tree.py"), "--depth", "1",
                           "--fanout", "2", "--events", str(tmp_path / "ev"), "--jobTree",
                           str(tree)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    dot = tmp_path / "tree.dot"
    status = run_command("status", "--jobTree", str(tree), "--check", "--dot", str(dot))
    assert status.returncode == 0, status.stderr
    assert "Check: the tree is consistent." in status.stdout
    text = dot.read_text()
    assert text.startswith("digraph jobtree {") and text.count("->") == 3
    assert "style=dashed" in text
    # a huge tree is drawn by its top only, read from the index without the rest
    from jobtree import graph
    from jobtree.jobstore import JobStore
    from jobtree.paths import TreePaths

    store = JobStore.open(TreePaths(str(tree)), readonly=True)
    try:
        top = graph.build(store, limit=3)
    finally:
        store.close()
    assert sorted(top.nodes) == [1, 2, 3] and graph.to_dot(top).count("->") == 2


def test_a_format_1_tree_is_read_and_upgraded(tmp_path: Path) -> None:
    """A tree written before jobs.extra existed (format 1): jobTreeStatus reads
    it as it is, and a master upgrades it when it continues the tree."""
    import sqlite3

    from jobtree import jobstore

    path = make_tree(tmp_path / "old", "--mode", "fail", expect=1)
    db = sqlite3.connect(path / "tree.db")
    db.execute("DROP INDEX jobs_state")  # as format 1 made it: by state alone
    db.execute("ALTER TABLE jobs DROP COLUMN priority")
    db.execute("ALTER TABLE jobs DROP COLUMN pinned")
    db.execute("CREATE INDEX jobs_state ON jobs(state)")
    db.execute("ALTER TABLE jobs DROP COLUMN extra")
    db.execute("ALTER TABLE failures DROP COLUMN started")
    db.execute("ALTER TABLE jobs DROP COLUMN needs")
    db.execute("ALTER TABLE jobs DROP COLUMN asked")
    db.execute("ALTER TABLE failures DROP COLUMN asked")
    db.execute("DROP TABLE returned")
    db.execute("DROP TABLE promised")
    db.execute("UPDATE meta SET value = '1' WHERE key = 'format_version'")
    db.commit()
    db.close()
    status = run_command("status", "--jobTree", str(path), "--verbose")
    assert status.returncode == 0 and "failed" in status.stdout, status.stdout + status.stderr
    run_command("run", "--jobTree", str(path))
    db = sqlite3.connect(f"file:{path / 'tree.db'}?mode=ro", uri=True)
    columns = {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
    version = db.execute("SELECT value FROM meta WHERE key = 'format_version'").fetchone()[0]
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    db.close()
    assert "extra" in columns and "needs" in columns and "asked" in columns
    assert "priority" in columns and "pinned" in columns
    assert json.loads(version) == \
        jobstore.FORMAT_VERSION
    assert {"returned", "promised"} <= tables
