"""A pilot job's side: ``python -m jobtree.batch.pilot_runner MANIFEST``.

A pilot (see :mod:`jobtree.batch.pilots`) is one scheduler job on one node.
It imports the worker, the tree's worker config and the pipeline's script
once (each target is then a fork of it, as on singleMachine's fork server) and runs ``pilot_cores`` *slots*: one process
each (forked, when there are several), each a :class:`PilotSlot` that reads
the queue file the master appends to and claims entries from it one after
another, highest priority first and in the order they were written within a
priority, with the same exclusive start markers
and exit files as a packed array task (:class:`jobtree.batch.runner.Runner`).
So each target keeps its own process, log, exit status and kill request, and
runs once however many slots and pilots read the queue.

A slot takes an entry only if the wall time it asked for fits in what is left
of the pilot's, and stops claiming when no entry came for ``pilot_idle``
seconds, when the master closed the queue (``QUEUE.closed``), or on the
scheduler's warning (SIGUSR1, ``warn_before`` seconds before the wall time
ends: the running target goes on). A pilot that stops for either of the first two reasons leaves
``exit/SUB.ended``, so that the master counts it ended at once (an earlier
start of a requeued pilot that left it claims nothing); it also stops
claiming when the master leaves ``exit/SUB.stop`` (it took the pilot for
ended, or is cancelling it). SIGTERM stops the
running target; its exit
file then says ``pilot`` (the pilot was cancelled or preempted: the master
runs it again without counting a try) or ``timeout`` (at the pilot's wall
time). A pilot the scheduler requeued first gives up the entries an earlier
start of it claimed and left without an exit file, as a requeued task does.
"""

from __future__ import annotations

import heapq
import json
import os
import signal
import sys
import time
from typing import Any

from .runner import Runner, restarted
from .wire import claim, marker, queue_entry, queue_lines

#: the longest pause between two looks at a queue with nothing to claim
MAX_PAUSE = 0.25


def read_lines(path: str, offset: int) -> tuple[list[dict[str, Any]], int]:
    """The complete entries of a queue file from ``offset`` on, and the
    offset after the last complete line."""
    lines, end = _raw_lines(path, offset)
    return [item for line in lines if (item := queue_entry(line)) is not None], end


def _raw_lines(path: str, offset: int) -> tuple[list[bytes], int]:
    """The complete lines of a queue file from ``offset`` on, unparsed, and
    the offset after the last."""
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            data = handle.read()
    except OSError:
        return [], offset
    lines, end = queue_lines(data)
    return lines, offset + end


def queue_start(queue: str) -> int:
    """The offset in ``queue`` before which every entry is settled (0 if
    the master has not said)."""
    try:
        with open(queue + ".start", "rb") as handle:
            return max(0, int(handle.read().strip() or 0))
    except (OSError, ValueError):
        return 0


def resident(pid: int) -> int:
    """The resident memory, in bytes, of a process and its descendants (0 if gone)."""
    total = 0
    todo = [pid]
    while todo:
        current = todo.pop()
        try:
            with open(f"/proc/{current}/status", "rb") as handle:
                for line in handle:
                    if line.startswith(b"VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
            with open(f"/proc/{current}/task/{current}/children", "rb") as handle:
                todo.extend(int(child) for child in handle.read().split())
        except (OSError, ValueError):
            continue
    return total


class PilotSlot(Runner):
    """One slot of a pilot: claims and runs entries from the queue, one at a time.

    Args:
        manifest: the pilot's manifest (its ``pilot`` part names the queue).
        slot: the slot's number (1 to ``pilot_cores``).
        began: when the pilot started (its wall time counts from there).
    """

    def __init__(self, manifest: dict[str, Any], slot: int, began: float) -> None:
        super().__init__(manifest, 1)
        pilot = manifest["pilot"]
        self.began = began
        self.slot = slot
        self.sub_id = str(pilot["sub_id"])
        self.queue = str(pilot["queue"])
        self.idle = float(pilot.get("idle") or 60.0)
        self.walltime = manifest.get("task_walltime")
        # the master took this pilot for ended (or cancels it): claim nothing more
        self._stop = marker(self.exit_dir, self.sub_id, "stop")
        # where the lines of targets not all settled begin (the master keeps
        # it, as it removes claims folders): a late pilot skips the rest
        self._offset = queue_start(self.queue)
        # the entries read and not yet claimed, as a heap: the most important
        # first, then the first written; each as its key and its line, unparsed
        # (a slot forks a worker per target, and its memory is what each fork
        # copies the page tables of: 10,000 parsed entries would double it)
        self._waiting: list[tuple[int, int, str, bytes]] = []
        self._read = 0

    def prepare(self) -> None:
        super().prepare()
        self._preload()

    def _entries(self) -> list[dict[str, Any]]:
        return read_lines(self.queue, queue_start(self.queue))[0]

    def _mine(self, record: dict[str, Any]) -> bool:
        return record.get("pilot") == self.sub_id

    def _fits(self, entry: dict[str, Any]) -> bool:
        """Whether the entry's wall time fits in what is left of the pilot's."""
        walltime = entry.get("walltime")
        if walltime is None or not self.walltime:
            return True
        return float(walltime) <= float(self.walltime) - (time.time() - self.began)

    def _try(self, entry: dict[str, Any]) -> bool:  # type: ignore[override]
        started = time.time()
        record = {"task": 1, "slot": self.slot, "pilot": self.sub_id, "host": self.host,
                  "pid": os.getpid(), "started": started}
        if not claim(self.exit_dir, entry["key"], record):
            return False
        self._run_entry(entry, started)
        return True

    def next(self) -> bool:
        """Claims and runs the most important waiting entry that fits (the
        first written, of those alike); False if none did."""
        lines, self._offset = _raw_lines(self.queue, self._offset)
        for line in lines:
            item = queue_entry(line)
            if item is not None:
                self._read += 1
                heapq.heappush(self._waiting, (-int(item.get("priority") or 0), self._read,
                                               str(item["key"]), line))
        unfit = []  # kept for later: they may fit another pilot, or never
        ran = False
        while self._waiting and not ran and not (self.stopping or self.draining):
            key = self._waiting[0][2]
            if os.path.exists(marker(self.exit_dir, key, "run")):
                heapq.heappop(self._waiting)  # claimed by another slot, or for no one
                continue
            entry = json.loads(self._waiting[0][3])  # a line read as an entry above
            if not self._fits(entry):
                unfit.append(heapq.heappop(self._waiting))
            elif os.path.exists(self._stop):
                self.draining = True
            else:
                heapq.heappop(self._waiting)
                ran = self._try(entry)
        for item in unfit:
            heapq.heappush(self._waiting, item)
        return ran

    def run(self) -> int:
        last = time.time()
        pause = 0.005
        try:
            while not (self.stopping or self.draining):
                if self.next():
                    last, pause = time.time(), 0.005
                    self._tick()
                    continue
                self.publish()  # nothing to run now: no result waits for more
                if time.time() - last >= self.idle or os.path.exists(self.queue + ".closed"):
                    break
                time.sleep(pause)
                pause = min(pause * 2, MAX_PAUSE)
        finally:
            self.publish()
        return 0

    def _over_memory(self, entry: dict[str, Any], pid: int) -> bool:
        """Whether the entry's processes use more memory (resident) than it
        asked for: targets share the pilot, so the pilot holds each to its
        request as the scheduler would hold a job of its own."""
        asked = entry.get("memory")
        if not asked:
            return False
        return resident(pid) > int(asked)

    def _wait(self, entry: dict[str, Any], pid: int, started: float) -> dict[str, Any]:
        outcome = super()._wait(entry, pid, started)
        if outcome.get("reason") == "memory" and entry.get("memory"):
            outcome["asked"] = entry["memory"]
        return outcome

    def _stop_reason(self) -> str:
        reason = super()._stop_reason()
        return "pilot" if reason == "killed" else reason


def _handle(slot: PilotSlot) -> None:
    def on_term(signum: int, frame: Any) -> None:
        slot.stopping = True

    def on_warning(signum: int, frame: Any) -> None:
        slot.draining = True

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR2):
        signal.signal(signum, on_term)
    signal.signal(signal.SIGUSR1, on_warning)


def main(argv: list[str] | None = None) -> int:
    """Entry point of a pilot's job script."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m jobtree.batch.pilot_runner MANIFEST", file=sys.stderr)
        return 2
    with open(args[0], encoding="utf-8") as handle:
        manifest = json.load(handle)
    began = time.time()
    first = PilotSlot(manifest, 1, began)
    ended = marker(first.exit_dir, first.sub_id, "ended")
    _handle(first)
    if restarted(os.environ):
        first.give_up_stranded()
    if os.path.exists(ended):
        return 0  # an earlier start of it said it was done: the master counts on that
    first.prepare()
    slots = max(1, int(manifest["pilot"].get("slots") or 1))
    if slots == 1:
        first.run()
        if not (first.stopping or first.draining):
            _say_ended(ended)
        return 0
    children: list[int] = []
    signalled: list[int] = []

    def forward(signum: int, frame: Any) -> None:
        signalled.append(signum)
        for pid in children:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(signum, forward)
    for number in range(1, slots + 1):
        pid = os.fork()
        if pid == 0:
            slot = PilotSlot(manifest, number, began)
            _handle(slot)
            code = 1
            try:
                code = slot.run()
            finally:
                os._exit(code)
        children.append(pid)
    for pid in children:
        while True:
            try:
                os.waitpid(pid, 0)
                break
            except ChildProcessError:
                break
            except InterruptedError:
                continue
    if not signalled:
        _say_ended(ended)
    return 0


def _say_ended(path: str) -> None:
    """Tells the master that this pilot claims nothing more (it went idle or
    its queue was closed), so that it need not wait for the scheduler's
    listing to submit another in its place."""
    try:
        with open(path, "w", encoding="utf-8"):
            pass
    except OSError:
        pass


if __name__ == "__main__":
    sys.exit(main())
