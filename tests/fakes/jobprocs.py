"""What the fake schedulers share: a running job's processes and their memory.

A real scheduler enforces a job's memory limit over all the processes of the
job (Slurm's ``jobacct_gather`` and LSF's ``LSB_JOB_MEMLIMIT`` sample their
resident memory; the PBS MOM polls it; cgroups do it in the kernel) and kills
them all when the sum passes the limit. The fakes do the same: every
:data:`SAMPLE` seconds they sum the memory (PSS) of the job script and its
descendants (whatever session or process group they moved to), and kill them
all with SIGKILL when it is over the limit.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time

#: seconds between two samples of a job's memory
SAMPLE = 0.25
_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "m": 1024 ** 2, "mb": 1024 ** 2,
          "g": 1024 ** 3, "gb": 1024 ** 3, "t": 1024 ** 4, "tb": 1024 ** 4}


def size(text: str, unit: str = "") -> int | None:
    """``512mb``, ``1gb``, ``150M`` (or a bare number in ``unit``) as bytes; None
    if it is not a size."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    if match is None or match[2].lower() not in _UNITS:
        return None
    return int(float(match[1]) * _UNITS[match[2].lower() or unit.lower()])


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it, by their parents in /proc."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as handle:
                stat = handle.read().decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        children.setdefault(int(fields[1]), []).append(int(name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, ()))
    return found


def resident(pids: list[int]) -> int:
    """The memory of the processes, in bytes: the sum of their proportional
    set sizes (PSS: a page shared by N of them counts 1/N in each, as with
    Slurm's ``JobAcctGatherParams=UsePss``), so that a worker forked from the
    runner is not charged again for the pages it shares with it."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            with open(f"/proc/{pid}/smaps_rollup", "rb") as handle:
                for line in handle:
                    if line.startswith(b"Pss:"):
                        total += int(line.split()[1]) * 1024
                        break
    return total


def kill_all(pids: list[int]) -> None:
    """SIGKILL to every one of the processes."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


class MemoryWatch:
    """Samples a job's memory against its limit (None: no limit)."""

    def __init__(self, pid: int, limit: int | None) -> None:
        self.pid = pid
        self.limit = limit
        self._next = 0.0

    def over(self) -> int | None:
        """The job's memory if a sample due now finds it over the limit, after
        killing all its processes; else None."""
        now = time.monotonic()
        if self.limit is None or now < self._next:
            return None
        self._next = now + SAMPLE
        pids = descendants(self.pid)
        used = resident(pids)
        if used <= self.limit:
            return None
        kill_all(pids)
        return used
