"""A Pool's worker output on the caller's terminal: on singleMachine, what a
chunk prints goes to its log, as any target's, and also to the caller's
``sys.stdout``/``sys.stderr``, as with multiprocessing, whose workers share
the caller's terminal.

The pool holds two pipes and a thread that copies what comes through them to
its own ``sys.stdout`` and ``sys.stderr``; a chunk opens their write ends
through ``/proc/<pool's pid>/fd/<n>`` (its process is forked by the fork
server, not by the pool) and writes what it prints to both places.
"""

from __future__ import annotations

import codecs
import os
import select
import stat
import sys
import threading
from typing import Any, Callable, TextIO

#: bytes read at once from a pipe
_READ = 65536


class Echo:
    """The pool's end: copies the chunks' output to this process's streams."""

    def __init__(self) -> None:
        self._out = os.pipe()
        self._err = os.pipe()
        for read_end, _ in (self._out, self._err):
            os.set_blocking(read_end, False)
        self._decoders = {self._out[0]: codecs.getincrementaldecoder("utf-8")("replace"),
                          self._err[0]: codecs.getincrementaldecoder("utf-8")("replace")}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.address = (os.getpid(), self._out[1], self._err[1])
        self._thread = threading.Thread(target=self._copy, name="jobtree-pool-echo",
                                        daemon=True)
        self._thread.start()

    def _copy(self) -> None:
        reads = [self._out[0], self._err[0]]
        while not self._stopping.is_set():
            try:
                ready, _, _ = select.select(reads, [], [], 0.2)
            except (OSError, ValueError):
                return
            if ready:
                self.drain()

    def drain(self) -> None:
        """Copies what the pipes hold now (before a call's result is handed
        over, so that what its chunks printed comes first)."""
        with self._lock:
            for read_end, stream in ((self._out[0], sys.stdout), (self._err[0], sys.stderr)):
                text = []
                while True:
                    try:
                        data = os.read(read_end, _READ)
                    except (BlockingIOError, OSError):
                        break
                    if not data:
                        break
                    text.append(self._decoders[read_end].decode(data))
                if text and stream is not None:
                    try:
                        stream.write("".join(text))
                        stream.flush()
                    except (OSError, ValueError):
                        pass

    def close(self) -> None:
        self._stopping.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(5)
        self.drain()
        for pair in (self._out, self._err):
            for fd in pair:
                try:
                    os.close(fd)
                except OSError:
                    pass


class _Tee:
    """A text stream that writes to the log and to the pool's pipe."""

    def __init__(self, log: TextIO, pipe: TextIO) -> None:
        self._log = log
        self._pipe: TextIO | None = pipe

    def write(self, text: str) -> int:
        written = self._log.write(text)
        if self._pipe is not None:
            try:
                self._pipe.write(text)
            except (OSError, ValueError):
                self._pipe = None  # the pool is gone: the log still has it
        return written

    def flush(self) -> None:
        self._log.flush()
        if self._pipe is not None:
            try:
                self._pipe.flush()
            except (OSError, ValueError):
                self._pipe = None

    def close_pipe(self) -> None:
        """Flushes both, and closes the pipe."""
        self.flush()
        if self._pipe is not None:
            try:
                self._pipe.close()
            except (OSError, ValueError):
                pass
            self._pipe = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._log, name)


def tee(address: tuple[int, int, int]) -> Callable[[], None]:
    """In a chunk's process: sends what it prints to the pool's pipes too.
    Returns what puts the streams back (jobtree's own report of a failure
    goes to the log only: the caller gets the exception)."""
    pid, out_fd, err_fd = address
    before = sys.stdout, sys.stderr
    for name, fd in (("stdout", out_fd), ("stderr", err_fd)):
        path = f"/proc/{pid}/fd/{fd}"
        try:
            if not stat.S_ISFIFO(os.stat(path).st_mode):
                continue  # not the pool's pipe (its process is gone)
            pipe = open(path, "w", buffering=1,  # noqa: SIM115
                        encoding="utf-8", errors="replace")
        except OSError:
            continue  # the pool is gone, or not on this machine: the log has it
        setattr(sys, name, _Tee(getattr(sys, name), pipe))

    def restore() -> None:
        for stream in (sys.stdout, sys.stderr):
            if isinstance(stream, _Tee):
                stream.close_pipe()
        sys.stdout, sys.stderr = before

    return restore
