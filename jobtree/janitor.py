"""Removing and trimming files off the master's critical path."""

from __future__ import annotations

import os
import queue
import shutil
import threading

from .paths import write_atomic


def trim_log(path: str, limit: int) -> None:
    """Cuts a kept log to its last ``limit`` bytes (the end says what went wrong)."""
    try:
        if os.path.getsize(path) <= limit:
            return
        with open(path, "rb") as handle:
            handle.seek(-limit, os.SEEK_END)
            tail = handle.read()
    except OSError:
        return
    note = b"[jobtree: the start of this log was cut to keep it under --maxLogFileSize]\n"
    write_atomic(path, note + tail[tail.find(b"\n") + 1:], sync=False)


class Janitor:
    """Removes files in a background thread, off the master's critical path.

    A file the master no longer needs but that survives a crash is removed by
    the next start's recovery.
    """

    def __init__(self) -> None:
        self._paths: queue.SimpleQueue[list[str] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, daemon=True, name="jobtree-janitor")
        self._thread.start()

    def remove(self, paths: list[str]) -> None:
        """Queues ``paths`` for removal and empties the list."""
        if paths:
            self._paths.put(list(paths))  # one hand-over: the thread wakes once
            paths.clear()

    def _work(self) -> None:
        while True:
            paths = self._paths.get()
            if paths is None:
                return
            for path in paths:
                remove(path)

    def close(self) -> None:
        """Finishes the queued removals."""
        self._paths.put(None)
        self._thread.join()


def remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except IsADirectoryError:
        shutil.rmtree(path, ignore_errors=True)
