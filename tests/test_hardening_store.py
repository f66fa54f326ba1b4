"""The index against damage and misuse (issue 14): a lost write-ahead log, a
query that never ends, a read-only tree, a damaged tree.db, a deleted logs/
folder, a copied tree's failure logs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import run_command, run_script

#: a pipeline whose root adds five children; the child "kill" SIGKILLs the
#: master (read from master.json) once the others have been committed, unless
#: the file "spare" is in the output folder; the child "fail" raises "boom in
#: fail" unless the file "fixed" is there; the child "rmlogs" removes logs/
PIPELINE = textwrap.dedent('''
    import argparse, json, os, signal, sys
    from jobtree import Stack, Target

    class Child(Target):
        def __init__(self, out, name):
            Target.__init__(self)
            self.out, self.name = out, name

        def run(self):
            if self.name == "kill" and not os.path.exists(os.path.join(self.out, "spare")):
                tree = os.environ["TREE"]
                with open(os.path.join(tree, "master.json")) as handle:
                    os.kill(json.load(handle)["pid"], signal.SIGKILL)
            if self.name == "rmlogs":
                import shutil
                shutil.rmtree(os.path.join(os.environ["TREE"], "logs"))
            if self.name == "fail" and not os.path.exists(os.path.join(self.out, "fixed")):
                raise RuntimeError("boom in fail")
            open(os.path.join(self.out, self.name), "w").close()

    class Root(Target):
        def __init__(self, out, names):
            Target.__init__(self)
            self.out, self.names = out, names

        def run(self):
            for name in self.names[:-1]:
                self.addChildTarget(Child(self.out, name))
            self.setFollowOnTarget(Child(self.out, self.names[-1]))

    if __name__ == "__main__":
        parser = argparse.ArgumentParser()
        parser.add_argument("--out", required=True)
        parser.add_argument("--names", default="a,b,c,d")
        Stack.addJobTreeOptions(parser)
        options = parser.parse_args()
        os.makedirs(options.out, exist_ok=True)
        root = Root(options.out, options.names.split(","))
        raise SystemExit(1 if Stack(root).startJobTree(options) else 0)
''')


def _pipeline(tmp_path: Path, tree: Path, names: str, *args: str,
              ) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "pipe.py"
    script.write_text(PIPELINE)
    env = dict(os.environ, TREE=str(tree))
    return run_script(script, "--jobTree", str(tree), "--out", str(tmp_path / "out"),
                      "--names", names, "--maxThreads", "1", "--retryCount", "0", *args,
                      timeout=180, env=env)


def _finished(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    done = _pipeline(tmp_path, tree, "a,b,c")
    assert done.returncode == 0, done.stderr
    return tree


def _no_traceback(process: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in process.stderr, process.stderr
    assert process.returncode == 2, (process.returncode, process.stdout, process.stderr)
    return process.stderr


def _status(tree: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return run_command("status", "--jobTree", str(tree), *args, timeout=timeout)


# ------------------------------------------------------------------- 14.5
def test_status_leaves_no_wal_files_on_a_finished_tree(tmp_path: Path) -> None:
    tree = _finished(tmp_path)
    assert not (tree / "tree.db-wal").exists()
    for args in ([], ["--json"], ["--verbose"], ["--select", "id > 1"], ["--classes"],
                 ["--check"]):
        process = _status(tree, *args)
        assert process.returncode == 0, process.stderr
        left = sorted(p.name for p in tree.iterdir() if p.name.startswith("tree.db-"))
        assert left == [], (args, left)


def _crashed(tmp_path: Path) -> Path:
    """A tree whose master was SIGKILLed after committing some children."""
    tree = tmp_path / "tree"
    crashed = _pipeline(tmp_path, tree, "a,b,kill,c")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert (tree / "tree.db-wal").stat().st_size > 0
    return tree


def test_a_lost_wal_after_a_crash_is_refused(tmp_path: Path) -> None:
    tree = _crashed(tmp_path)
    (tmp_path / "out" / "spare").touch()
    kept = tmp_path / "kept-wal"
    shutil.copy(tree / "tree.db-wal", kept)
    for name in ("tree.db-wal", "tree.db-shm"):
        (tree / name).unlink(missing_ok=True)
    for process in (run_command("run", "--jobTree", str(tree), timeout=120),
                    _status(tree), _status(tree, "--json")):
        message = _no_traceback(process)
        assert "older than the tree" in message and "tree.db-wal" in message, message
    # nothing ran again from the rolled-back index
    assert not (tmp_path / "out" / "c").exists()
    # the write-ahead log put back: the tree continues from where it was
    shutil.copy(kept, tree / "tree.db-wal")
    done = run_command("run", "--jobTree", str(tree), timeout=180)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "c").exists()


def test_a_rollback_across_a_restart_of_the_machine_only_warns(tmp_path: Path) -> None:
    tree = _crashed(tmp_path)
    (tmp_path / "out" / "spare").touch()
    for name in ("tree.db-wal", "tree.db-shm"):
        (tree / name).unlink(missing_ok=True)
    mark = json.loads((tree / "commits.json").read_text())
    mark["boot"] = "another-boot"  # as after a power loss and a reboot
    (tree / "commits.json").write_text(json.dumps(mark))
    done = run_command("run", "--jobTree", str(tree), timeout=180)
    assert done.returncode == 0, done.stderr
    assert "restarted" in done.stderr
    assert (tmp_path / "out" / "c").exists()


# ------------------------------------------------------------------- 14.7
ENDLESS = ("id IN (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
           "SELECT x FROM c)")


def test_a_select_that_never_ends_is_stopped_at_its_time_limit(tmp_path: Path) -> None:
    tree = _finished(tmp_path)
    message = _no_traceback(_status(tree, "--select", ENDLESS, "--selectTimeout", "1"))
    assert "--selectTimeout 1 seconds" in message, message


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_ctrl_c_stops_a_select_that_never_ends(tmp_path: Path) -> None:
    tree = _finished(tmp_path)
    process = subprocess.Popen(
        [sys.executable, "-m", "jobtree.cli.status", "--jobTree", str(tree), "--select",
         ENDLESS], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # starting takes far less than 2 s of CPU: past that, it is in the query
        while process.poll() is None and _cpu_seconds(process.pid) < 2.0:
            try:
                process.wait(timeout=0.1)
            except subprocess.TimeoutExpired:
                pass
        assert process.poll() is None, process.communicate()
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)  # well within --selectTimeout's 60 s
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err, err


# ------------------------------------------------------------------- 14.8
def _read_only(tree: Path, *command: str) -> subprocess.CompletedProcess[str]:
    """Runs ``command`` with the tree read-only for real: as root (whom
    permissions do not stop) through a read-only bind mount in a mount
    namespace of its own; otherwise with every write permission removed."""
    if os.geteuid() != 0:
        subprocess.run(["chmod", "-R", "a-w", str(tree)], check=True)
        try:
            return subprocess.run(list(command), capture_output=True, text=True, timeout=120)
        finally:
            subprocess.run(["chmod", "-R", "u+w", str(tree)], check=True)
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1) to mount the tree read-only as root")
    probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a mount namespace here: {probe.stderr!r}")
    quoted = " ".join(f"'{part}'" for part in command)
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c",
         f"mount --bind '{tree}' '{tree}' && mount -o remount,bind,ro '{tree}' && "
         f"touch '{tree}/probe' 2>/dev/null && exit 99; exec {quoted}"],
        capture_output=True, text=True, timeout=120)


def test_a_read_only_tree_is_read_and_not_called_damaged(tmp_path: Path) -> None:
    tree = _finished(tmp_path)
    status = _read_only(tree, sys.executable, "-m", "jobtree.cli.status", "--jobTree",
                        str(tree))
    assert status.returncode == 0, status.stderr
    assert "The tree finished" in status.stdout
    listing = _read_only(tree, sys.executable, "-m", "jobtree.cli.status", "--jobTree",
                         str(tree), "--state", "done")
    assert listing.returncode == 0 and len(listing.stdout.splitlines()) == 4, listing
    run = _read_only(tree, sys.executable, "-m", "jobtree.cli.run", "--jobTree", str(tree))
    message = _no_traceback(run)
    assert "read-only" in message and "intact" in message, message
    assert "jobTreeClean" not in message and "damaged" not in message, message


# ------------------------------------------------------------------- 14.9
def _damage(tree: Path) -> None:
    """Two pages of garbage where the jobs table starts."""
    with sqlite3.connect(tree / "tree.db") as db:
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        root = db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'jobs'").fetchone()[0]
    with open(tree / "tree.db", "r+b") as handle:
        handle.seek((root - 1) * page_size)
        handle.write(bytes(range(256)) * (2 * page_size // 256))


@pytest.mark.parametrize("args", [[], ["--json"], ["--state", "done"], ["--check"],
                                  ["--verbose"], ["--select", "attempts > 0"]])
def test_a_damaged_index_gives_the_documented_message(tmp_path: Path, args: list[str]) -> None:
    tree = _finished(tmp_path)
    _damage(tree)
    message = _no_traceback(_status(tree, *args))
    assert "is damaged" in message and "new --jobTree" in message, message


def test_continuing_a_damaged_index_gives_the_documented_message(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    failed = _pipeline(tmp_path, tree, "a,fail,c")
    assert failed.returncode == 1, failed.stderr
    _damage(tree)
    message = _no_traceback(run_command("run", "--jobTree", str(tree), timeout=120))
    assert "is damaged" in message and "disk full" not in message, message


# ------------------------------------------------------------------ 14.11
def test_a_deleted_logs_folder_is_made_again(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    failed = _pipeline(tmp_path, tree, "a,fail,c")
    assert failed.returncode == 1, failed.stderr
    shutil.rmtree(tree / "logs")
    (tmp_path / "out" / "fixed").touch()
    done = run_command("run", "--jobTree", str(tree), timeout=180)
    assert done.returncode == 0, done.stderr
    assert (tree / "logs").is_dir() and (tmp_path / "out" / "c").exists()


def test_a_logs_folder_removed_while_the_tree_runs_is_made_again(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    done = _pipeline(tmp_path, tree, "rmlogs,b,c,d")
    assert done.returncode == 0, done.stderr
    assert all((tmp_path / "out" / name).exists() for name in "bcd")


# ------------------------------------------------------------------ 14.12
def _failed_log_lines(tree: Path) -> list[str]:
    status = _status(tree, "--verbose")
    assert status.returncode == 0, status.stderr
    return [line.strip() for line in status.stdout.splitlines()
            if line.strip().startswith(("log:", "|"))]


def test_a_copied_tree_shows_its_own_logs(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    failed = _pipeline(tmp_path, tree, "a,fail,c")
    assert failed.returncode == 1, failed.stderr
    with sqlite3.connect(tree / "tree.db") as db:
        (stored,) = db.execute("SELECT log FROM failures").fetchone()
    assert not os.path.isabs(stored) and stored.startswith("logs/"), stored
    copy = tmp_path / "copy"
    shutil.copytree(tree, copy, symlinks=True)
    shutil.rmtree(tree)
    lines = _failed_log_lines(copy)
    assert lines[0] == f"log: {copy / stored}", lines
    assert any("boom in fail" in line for line in lines[1:]), lines


def test_an_older_trees_absolute_log_paths_are_read_and_upgraded(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    failed = _pipeline(tmp_path, tree, "a,fail,c")
    assert failed.returncode == 1, failed.stderr
    with sqlite3.connect(tree / "tree.db") as db:  # as format 5 wrote it, elsewhere
        job, attempt, stored = db.execute("SELECT job, attempt, log FROM failures").fetchone()
        old = f"/old/place/tree/{stored}"
        db.execute("UPDATE failures SET log = ?", (old,))
        db.execute("UPDATE meta SET value = '5' WHERE key = 'format_version'")
    lines = _failed_log_lines(tree)
    assert lines[0] == f"log: {tree / 'logs' / f'{job}.{attempt}.log'}", lines
    assert any("boom in fail" in line for line in lines[1:]), lines
    again = run_command("run", "--jobTree", str(tree), timeout=180)  # fails again: upgraded
    assert again.returncode == 1, again.stderr
    with sqlite3.connect(tree / "tree.db") as db:
        assert db.execute("SELECT log FROM failures WHERE attempt = ?",
                          (attempt,)).fetchone()[0] == stored
        assert json.loads(db.execute(
            "SELECT value FROM meta WHERE key = 'format_version'").fetchone()[0]) == 7
