"""The process supervisor shared by the fork server, the node runner and
singleMachine's fallback: SIGTERM, a grace period, SIGKILL, with a fake clock
and recorded signals (no process is started)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from jobtree.batch import supervise


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """The (pid, signal) pairs sent to process groups."""
    signals: list[tuple[int, int]] = []
    monkeypatch.setattr(os, "killpg", lambda pid, sig: signals.append((pid, sig)))
    return signals


def test_term_then_kill_after_the_grace(sent: list[tuple[int, int]]) -> None:
    clock = Clock()
    stopping = supervise.Stopping(5.0, clock)
    stopping.term(11)
    assert sent == [(11, signal.SIGTERM)] and 11 in stopping
    clock.now += 2
    assert stopping.escalate() == pytest.approx(3.0)
    stopping.term(11)  # already stopping: no second SIGTERM, no new grace
    clock.now += 3
    assert stopping.escalate() is None
    assert sent == [(11, signal.SIGTERM), (11, signal.SIGKILL)] and 11 not in stopping


def test_a_group_that_ends_in_its_grace_gets_no_kill(sent: list[tuple[int, int]]) -> None:
    clock = Clock()
    stopping = supervise.Stopping(5.0, clock)
    stopping.term(11)
    clock.now += 1
    stopping.term(12)
    stopping.forget(11)
    clock.now += 10
    assert stopping.escalate() is None
    assert sent == [(11, signal.SIGTERM), (12, signal.SIGTERM), (12, signal.SIGKILL)]


def test_stop_all_waits_then_kills_what_is_left(sent: list[tuple[int, int]]) -> None:
    clock = Clock()
    alive = {1, 2}

    def wait() -> None:
        clock.now += 1
        alive.discard(1)  # 1 ends on SIGTERM; 2 ignores it

    supervise.stop_all(lambda: alive, wait, 3.0, clock=clock)
    assert sent == [(1, signal.SIGTERM), (2, signal.SIGTERM), (2, signal.SIGKILL)]
    assert clock.now == 106.0  # a full grace after each signal: 2 never ended


def test_stop_all_without_waiting_after_kill(sent: list[tuple[int, int]]) -> None:
    clock = Clock()
    waits: list[float] = []

    def wait() -> None:
        waits.append(clock.now)
        clock.now += 1

    supervise.stop_all(lambda: [7], wait, 2.0, wait_after_kill=False, clock=clock,
                       left=lambda: True)
    assert sent == [(7, signal.SIGTERM), (7, signal.SIGKILL)]
    assert waits == [100.0, 101.0]


def test_signal_group_ignores_a_group_that_is_gone() -> None:
    process = subprocess.Popen([sys.executable, "-c", "pass"], start_new_session=True)
    process.wait()
    supervise.signal_group(process.pid, signal.SIGTERM)  # no error


def test_a_real_group_is_killed_after_its_grace() -> None:
    # a shell that ignores SIGTERM, in a group of its own
    process = subprocess.Popen(["/bin/sh", "-c", "trap '' TERM; echo ready; sleep 30"],
                               stdout=subprocess.PIPE, start_new_session=True)
    assert process.stdout is not None
    assert process.stdout.readline() == b"ready\n"  # TERM is ignored from here on
    stopping = supervise.Stopping(0.3)
    stopping.term(process.pid)
    time.sleep(0.1)
    assert process.poll() is None
    deadline = time.monotonic() + 5
    while process.poll() is None and time.monotonic() < deadline:
        stopping.escalate()
        time.sleep(0.05)
    assert process.returncode == -signal.SIGKILL
    process.stdout.close()
