"""Functions run as targets by real workers in the batch-system conformance suite.

They are pickled by reference (``jobtree.testing.targets.NAME``), so the
worker imports this module, as it can wherever jobtree is installed.
"""

from __future__ import annotations

import subprocess
import sys
import time

from .job import record


def sleep_recording(path: str, seconds: float) -> None:
    """Writes the worker's pid record, then sleeps."""
    record(path)
    time.sleep(seconds)


def spawn_child_and_sleep(path: str, seconds: float) -> None:
    """Starts ``sleep`` as a child, writes both pids, then sleeps."""
    child = subprocess.Popen(["sleep", str(int(seconds))])
    record(path, child=child.pid)
    time.sleep(seconds)


def say(text: str) -> None:
    """Writes ``text`` to standard output and standard error."""
    print(f"{text}-stdout", flush=True)
    print(f"{text}-stderr", file=sys.stderr, flush=True)


def fail() -> None:
    """Raises, so the worker exits non-zero."""
    raise RuntimeError("conformance: this target fails on purpose")


def run_out_of_memory() -> None:
    """Raises MemoryError, so the worker exits with EXIT_MEMORY."""
    raise MemoryError("conformance: pretend the target ran out of memory")


def touch_memory(megabytes: int, hold: float) -> None:
    """Fills ``megabytes`` MiB (so they are resident, not only reserved), then
    holds them up to ``hold`` seconds, for a scheduler that samples memory to
    see it and kill the job; returns if none does."""
    data = b"x" * (megabytes * 1024 ** 2)
    deadline = time.monotonic() + hold
    while time.monotonic() < deadline:
        time.sleep(0.2)
    print(f"held {len(data)} bytes for {hold}s and was not stopped", flush=True)
