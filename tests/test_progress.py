"""The master's progress: one self-updating line on a terminal (checked under a
pseudo-terminal), plain log lines now and then elsewhere, and what the line
says (with a fake clock)."""

from __future__ import annotations

import io
import os
import pty
import re
import subprocess
import sys
import time
from pathlib import Path

from conftest import PIPELINES

from jobtree import progress as progress_module
from jobtree.progress import Progress


def _run_on_a_terminal(tree: Path, *args: str) -> str:
    """Runs sleepy.py with its stderr on a pseudo-terminal; returns what it showed."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, str(PIPELINES / "sleepy.py"), "--jobTree", str(tree), *args],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=follower,
        env=dict(os.environ, TERM="xterm"))
    os.close(follower)
    shown = b""
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the other end closed: the run is over
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    assert process.wait(timeout=60) == 0, shown
    return shown.decode()


def test_a_terminal_gets_one_line_that_updates_itself(tmp_path: Path) -> None:
    shown = _run_on_a_terminal(tmp_path / "jt", "--count", "16", "--seconds", "0.3",
                               "--maxThreads", "2")
    drawn = re.findall(r"\r(jobtree: [^\r\n\x1b]*)\x1b\[K", shown)
    assert len(drawn) >= 2, shown  # it was redrawn as the run went on
    assert all(" of ≥ " in line and " done · " in line and "running" in line
               for line in drawn), drawn
    assert all(a != b for a, b in zip(drawn, drawn[1:])), "a line was drawn twice"
    assert any(re.search(r"\d+(\.\d)?/s", line) for line in drawn), drawn
    # the log lines are written on a clean line: the progress line is cleared
    # first (\r and clear to the end of the line), then put back
    finished = shown.index("the tree finished")
    cleared = shown.rfind("\r\x1b[K", 0, finished) + len("\r\x1b[K")
    assert re.fullmatch(r"[-\d]+ [:\d]+ jobtree INFO: ", shown[cleared:finished]), \
        repr(shown[cleared - 80:finished])
    # and nothing is drawn after the end
    assert "\rjobtree: " not in shown[finished:]


def test_without_a_terminal_progress_is_a_log_line_now_and_then(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(PIPELINES / "sleepy.py"), "--jobTree", str(tmp_path / "jt"),
         "--count", "12", "--seconds", "0.3", "--maxThreads", "2"],
        capture_output=True, text=True, timeout=120,
        env=dict(os.environ, JOBTREE_PROGRESS_SECONDS="0.5"))
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if "progress:" in line]
    assert len(lines) >= 3, done.stderr
    assert "\r" not in done.stderr and "\x1b" not in done.stderr
    assert re.search(r"jobtree INFO: progress: \d+ of ≥ \d+ done · ", lines[-1]), lines


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_estimate_waits_for_the_total_to_settle() -> None:
    clock = Clock()
    stream = io.StringIO()
    shown = Progress(stream, live=True, clock=clock)
    assert shown.due()
    first = shown.update(done=0, running=2, ready=98, waiting=0, failed=0)
    assert first.startswith("0 of ≥ 100 done · 2 running · 98 ready · 0 waiting · 0 failed")
    assert not shown.due()
    clock.now += 1
    assert shown.due()
    second = shown.update(done=50, running=2, ready=48, waiting=0, failed=0)
    assert "50/s" in second and "left" not in second  # the total only just settled
    clock.now += progress_module.SETTLED_AFTER
    third = shown.update(done=90, running=2, ready=8, waiting=0, failed=0)
    assert "about 0:00 left" in third, third
    clock.now += 1
    grown = shown.update(done=95, running=2, ready=103, waiting=0, failed=0)
    assert "of ≥ 200 done" in grown and "left" not in grown  # it grew: no estimate
    assert stream.getvalue().count("\r") == 4
    shown.finish()
    assert stream.getvalue().endswith("\r\x1b[K")


def test_a_slow_count_is_not_repeated_every_second() -> None:
    clock = Clock()
    shown = Progress(io.StringIO(), live=True, clock=clock)
    shown.update(done=0, running=0, ready=1, waiting=0, failed=0)
    shown.cost = 0.2  # counting a huge index took 0.2 s
    clock.now += 2
    assert not shown.due()
    clock.now += 2.5
    assert shown.due()
