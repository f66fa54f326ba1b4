"""Failures, retries and restarts: a failed target does not stop its
siblings, a fixed script continues with jobTreeRun, finished work never runs
again, and a worker killed by a signal is retried."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import run_command, run_script

PIPELINE = '''
import argparse, os, signal
from jobtree import Stack, Target

BUG = {bug}

class Item(Target):
    def __init__(self, i, runs):
        Target.__init__(self)
        self.i = i
        self.runs = runs

    def run(self):
        with open(os.path.join(self.runs, "item%d.%d" % (self.i, os.getpid())), "w"):
            pass
        if BUG and self.i == 3:
            raise RuntimeError("item 3 is broken")
        if self.i == 5 and not os.path.exists(os.path.join(self.runs, "killed")):
            open(os.path.join(self.runs, "killed"), "w").close()
            os.kill(os.getpid(), signal.SIGKILL)


class Done(Target):
    def __init__(self, runs):
        Target.__init__(self)
        self.runs = runs

    def run(self):
        open(os.path.join(self.runs, "done.%d" % os.getpid()), "w").close()


class Root(Target):
    def __init__(self, runs):
        Target.__init__(self)
        self.runs = runs

    def run(self):
        open(os.path.join(self.runs, "root.%d" % os.getpid()), "w").close()
        for i in range(8):
            self.addChildTarget(Item(i, self.runs))
        self.setFollowOnTarget(Done(self.runs))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", required=True)
    Stack.addJobTreeOptions(parser)
    options = parser.parse_args()
    raise SystemExit(1 if Stack(Root(options.runs)).startJobTree(options) else 0)
'''


def _runs(folder: Path, prefix: str) -> int:
    return len([n for n in os.listdir(folder) if n.startswith(prefix + ".")])


def test_failure_then_fix_then_jobTreeRun(tmp_path: Path) -> None:
    script = tmp_path / "pipeline.py"
    script.write_text(PIPELINE.format(bug=True))
    runs = tmp_path / "runs"
    runs.mkdir()
    tree = tmp_path / "jt"
    first = run_script(script, "--runs", str(runs), "--jobTree", str(tree), "--retryCount", "1")
    assert first.returncode == 1
    # the failure report names the target, the error, the log and how to continue
    assert "1 target failed" in first.stderr
    assert "Item(i=3" in first.stderr
    assert "item 3 is broken" in first.stderr
    assert f"jobTreeRun --jobTree {tree}" in first.stderr
    assert "Traceback" not in first.stderr.split("1 target failed")[1].split("log:")[0]
    assert _runs(runs, "item3") == 2  # tried twice (--retryCount 1)
    for i in (0, 1, 2, 4, 6, 7):
        assert _runs(runs, f"item{i}") == 1  # siblings finished
    assert _runs(runs, "item5") == 2  # SIGKILLed once, retried
    assert _runs(runs, "done") == 0  # the follow-on waits for every child
    logs = sorted(os.listdir(tree / "logs"))
    assert len(logs) == 3 and all(name.endswith(".log") for name in logs)

    status = run_command("status", "--jobTree", str(tree), "--failIfNotComplete")
    assert status.returncode != 0

    script.write_text(PIPELINE.format(bug=False))  # the user fixes the script
    # a result a pilot left and never published (it was killed first)
    (tree / "results" / ".pending-999.1").write_bytes(b"torn")
    second = subprocess.run([sys.executable, "-m", "jobtree.cli.run", "--jobTree", str(tree)],
                            capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    assert _runs(runs, "item3") == 3  # the fixed code ran
    assert not (tree / "results" / ".pending-999.1").exists()
    assert _runs(runs, "root") == 1  # nothing finished ran again
    for i in (0, 1, 2, 4, 6, 7):
        assert _runs(runs, f"item{i}") == 1
    assert _runs(runs, "item5") == 2
    assert _runs(runs, "done") == 1
    status = run_command("status", "--jobTree", str(tree), "--failIfNotComplete")
    assert status.returncode == 0, status.stdout + status.stderr


def test_worker_killed_by_signal_is_retried(tmp_path: Path) -> None:
    script = tmp_path / "pipeline.py"
    script.write_text(PIPELINE.format(bug=False))
    runs = tmp_path / "runs"
    runs.mkdir()
    done = run_script(script, "--runs", str(runs), "--jobTree", str(tmp_path / "jt"))
    assert done.returncode == 0, done.stderr
    assert _runs(runs, "item5") == 2
    assert "killed by signal 9" in done.stderr
    assert _runs(runs, "done") == 1


def test_kept_logs_are_cut_to_maxLogFileSize(tmp_path: Path) -> None:
    script = tmp_path / "noisy.py"
    script.write_text(
        "import sys\n"
        "from jobtree import Stack, Target\n"
        "class Noisy(Target):\n"
        "    def run(self):\n"
        "        for i in range(20000):\n"
        "            print('line', i, 'x' * 40)\n"
        "        raise ValueError('noisy failure')\n"
        "if __name__ == '__main__':\n"
        "    import argparse\n"
        "    p = argparse.ArgumentParser(); Stack.addJobTreeOptions(p)\n"
        "    sys.exit(1 if Stack(Noisy()).startJobTree(p.parse_args()) else 0)\n")
    tree = tmp_path / "jt"
    done = run_script(script, "--jobTree", str(tree), "--retryCount", "0",
                      "--maxLogFileSize", "10K")
    assert done.returncode == 1
    (log,) = (tree / "logs").iterdir()
    text = log.read_text()
    assert len(text) <= 10 * 1024 + 200
    assert text.startswith("[jobtree: the start of this log was cut")
    assert "ValueError: noisy failure" in text


def _start_sleeper(tree: Path, ignore_hup: bool) -> subprocess.Popen[str]:
    def preexec() -> None:
        # as nohup does, or the default (whatever the test run itself inherited)
        signal.signal(signal.SIGHUP, signal.SIG_IGN if ignore_hup else signal.SIG_DFL)

    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).parent / "pipelines" / "bad.py"), "sleeper",
         "--jobTree", str(tree)], stderr=subprocess.PIPE, text=True, preexec_fn=preexec)
    deadline = time.time() + 30
    while not (tree / "logs").is_dir() or not list((tree / "logs").glob("*.log")):
        assert time.time() < deadline, "the sleeper never started"
        time.sleep(0.1)
    return process


def test_sighup_stops_the_master_gracefully_unless_ignored(tmp_path: Path) -> None:
    tree = tmp_path / "jt"
    process = _start_sleeper(tree, ignore_hup=False)
    process.send_signal(signal.SIGHUP)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 1
    assert "The master was stopped (received SIGHUP)" in err and "Traceback" not in err
    status = run_command("status", "--jobTree", str(tree))
    assert "ready    1" in status.stdout  # interrupted, ready to run again

    nohup_tree = tmp_path / "nohup"
    process = _start_sleeper(nohup_tree, ignore_hup=True)
    try:
        process.send_signal(signal.SIGHUP)
        time.sleep(3)
        assert process.poll() is None  # nohup: the run goes on
    finally:
        process.kill()
        process.wait()
