"""Stopping jobs' process groups: SIGTERM, a grace period, SIGKILL, reaping.

One supervisor for the three places that stop jobs: the fork server, the
cluster node runner and singleMachine without a fork server. Every job runs
in a process group of its own (led by the job's process), so a signal reaches
whatever the job started too.

It imports nothing of jobtree: the fork server and the node runner start as
processes of their own, and their start-up time matters.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Callable, Collection

#: seconds between SIGTERM and SIGKILL when a job is stopped
KILL_GRACE = 5.0


def alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host (perhaps another user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def signal_group(pid: int, sig: int) -> None:
    """Sends ``sig`` to the process group led by ``pid``, if it is still there."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class Stopping:
    """Process groups sent SIGTERM, each sent SIGKILL once its grace is over.

    Args:
        grace: seconds between SIGTERM and SIGKILL.
        clock: the time, in seconds (injectable, for tests).
    """

    def __init__(self, grace: float = KILL_GRACE,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.grace = grace
        self._clock = clock
        self._deadlines: dict[int, float] = {}  # pid: when it gets SIGKILL

    def __contains__(self, pid: object) -> bool:
        return pid in self._deadlines

    def __len__(self) -> int:
        return len(self._deadlines)

    def term(self, pid: int) -> None:
        """SIGTERMs the group of ``pid``, which gets SIGKILL after the grace
        (unless it ends first); a group already stopping is left as it is."""
        if pid in self._deadlines:
            return
        signal_group(pid, signal.SIGTERM)
        self._deadlines[pid] = self._clock() + self.grace

    def escalate(self) -> float | None:
        """SIGKILLs the groups whose grace is over.

        Returns:
            the seconds until the next group's grace is over; None if no
            group is stopping any more.
        """
        now = self._clock()
        for pid, deadline in list(self._deadlines.items()):
            if now >= deadline:
                signal_group(pid, signal.SIGKILL)
                del self._deadlines[pid]
        return min((deadline - now for deadline in self._deadlines.values()), default=None)

    def forget(self, pid: int) -> None:
        """Drops a group whose job ended (it needs no SIGKILL)."""
        self._deadlines.pop(pid, None)


def stop_all(pids: Callable[[], Collection[int]], wait: Callable[[], object], grace: float, *,
             left: Callable[[], bool] | None = None, wait_after_kill: bool = True,
             clock: Callable[[], float] = time.time) -> None:
    """Stops every job at once: SIGTERM to each group ``pids()`` lists, then
    ``wait()`` (which reaps what ended, waiting a moment) until none is left or
    ``grace`` seconds passed, then SIGKILL to each group still listed and (if
    ``wait_after_kill``) the same wait again.

    Args:
        pids: the leaders of the groups still running.
        wait: reaps the jobs that ended, waiting a moment for one.
        grace: seconds to wait after each signal.
        left: whether any job is left (default: whether ``pids()`` lists any).
        wait_after_kill: whether to wait for the jobs after SIGKILL too.
        clock: the time, in seconds (injectable, for tests).
    """
    running = left if left is not None else (lambda: bool(pids()))
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in list(pids()):
            signal_group(pid, sig)
        if sig == signal.SIGKILL and not wait_after_kill:
            return
        deadline = clock() + grace
        while running() and clock() < deadline:
            wait()


def oom_kills() -> int | None:
    """How many processes the kernel's out-of-memory killer has killed on this
    machine since boot (``oom_kill`` of /proc/vmstat, Linux 4.13 and later; it
    counts kills within a cgroup's limit too), or None."""
    try:
        with open("/proc/vmstat", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("oom_kill "):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None
