"""singleMachine: runs jobs as processes on this machine within cpu, memory
and thread limits."""

from __future__ import annotations

import collections
import logging
import os
import queue
import signal
import subprocess
import threading
import time
from typing import Sequence

from ..resources import Resources
from .base import BatchJobId, BatchSystem, ExitReason, JobSpec, Update

logger = logging.getLogger(__name__)

#: seconds between SIGTERM and SIGKILL when a job is killed
KILL_GRACE = 5.0
#: exit status the worker uses when the target ran out of memory
EXIT_MEMORY = 3


def machine_cpus() -> int:
    """Cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def machine_memory() -> int:
    """Physical memory in bytes."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


class _Running:
    """A started job."""

    def __init__(self, spec: JobSpec, process: subprocess.Popen[bytes], started: float) -> None:
        self.spec = spec
        self.process = process
        self.started = started
        self.killed_at: float | None = None


class SingleMachine(BatchSystem):
    """Runs each job as a process group of its own on this machine.

    Args:
        max_threads: most jobs at once.
        max_cpus: most cores in use at once (default: all usable cores).
        max_memory: most memory in use at once (default: physical memory).
    """

    name = "singleMachine"
    local = True

    def __init__(self, max_threads: int | None = None, max_cpus: float | None = None,
                 max_memory: int | None = None) -> None:
        cpus = machine_cpus()
        self._max_threads = max_threads or cpus
        self._max_cpus = min(max_cpus, cpus) if max_cpus else cpus
        memory = machine_memory()
        self._max_memory = min(max_memory, memory) if max_memory else memory
        self._waiting: collections.OrderedDict[BatchJobId, JobSpec] = collections.OrderedDict()
        self._running: dict[BatchJobId, _Running] = {}
        self._ended: queue.Queue[Update] = queue.Queue()
        self._cpu_used = 0.0
        self._memory_used = 0
        self._counter = 0

    def limits(self) -> Resources:
        return Resources(cpu=self._max_cpus, memory=self._max_memory)

    def capacity(self) -> int:
        return self._max_threads * 2

    def issue(self, spec: JobSpec) -> BatchJobId:
        self._counter += 1
        batch_id = BatchJobId(f"local-{os.getpid()}-{self._counter}")
        self._waiting[batch_id] = spec
        self._start_what_fits()
        return batch_id

    def _fits(self, spec: JobSpec) -> bool:
        cpu = float(spec.resources.cpu or 1)
        memory = int(spec.resources.memory or 0)
        if not self._running:
            return True  # never starve a job that fits the limits on its own
        return (len(self._running) < self._max_threads
                and self._cpu_used + cpu <= self._max_cpus + 1e-9
                and self._memory_used + memory <= self._max_memory)

    def _start_what_fits(self) -> None:
        for batch_id, spec in list(self._waiting.items()):
            if len(self._running) >= self._max_threads:
                return
            if self._fits(spec):
                del self._waiting[batch_id]
                self._start(batch_id, spec)

    def _start(self, batch_id: BatchJobId, spec: JobSpec) -> None:
        env = dict(os.environ, JOBTREE_MASTER_PID=str(os.getpid()))
        with open(spec.log_path, "ab") as log:
            try:
                process = subprocess.Popen(
                    list(spec.argv), stdin=subprocess.DEVNULL, stdout=log,
                    stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
                    env=env)
            except OSError as err:
                log.write(f"jobtree: cannot start the worker {spec.argv[0]}: {err}\n".encode())
                self._ended.put(Update(batch_id, None, ExitReason.FAILED))
                return
        logger.debug("started job %s (pid %d): %s", batch_id, process.pid, spec.argv)
        running = _Running(spec, process, time.time())
        self._running[batch_id] = running
        self._cpu_used += float(spec.resources.cpu or 1)
        self._memory_used += int(spec.resources.memory or 0)
        threading.Thread(target=self._wait, args=(batch_id, running), daemon=True,
                         name=f"wait-{batch_id}").start()

    def _wait(self, batch_id: BatchJobId, running: _Running) -> None:
        _, status, usage = os.wait4(running.process.pid, 0)
        running.process.returncode = os.waitstatus_to_exitcode(status)
        code = running.process.returncode
        wall = time.time() - running.started
        if code == 0:
            reason = ExitReason.FINISHED
        elif running.killed_at is not None:
            reason = ExitReason.KILLED
        elif code == EXIT_MEMORY:
            reason = ExitReason.MEMLIMIT
        else:
            reason = ExitReason.FAILED
        self._ended.put(Update(batch_id, code, reason, wall, usage.ru_maxrss * 1024))

    def kill(self, ids: Sequence[BatchJobId]) -> None:
        now = time.time()
        for batch_id in ids:
            if self._waiting.pop(batch_id, None) is not None:
                self._ended.put(Update(batch_id, None, ExitReason.KILLED))
                continue
            running = self._running.get(batch_id)
            if running is not None and running.killed_at is None:
                running.killed_at = now
                _signal_group(running.process.pid, signal.SIGTERM)

    def issued(self) -> set[BatchJobId]:
        return set(self._waiting) | set(self._running)

    def running(self) -> dict[BatchJobId, float]:
        now = time.time()
        return {i: now - r.started for i, r in self._running.items()}

    def next_update(self, timeout: float) -> Update | None:
        self._escalate_kills()
        try:
            update = self._ended.get(timeout=max(timeout, 0))
        except queue.Empty:
            return None
        running = self._running.pop(update.batch_id, None)
        if running is not None:
            self._cpu_used -= float(running.spec.resources.cpu or 1)
            self._memory_used -= int(running.spec.resources.memory or 0)
            _signal_group(running.process.pid, signal.SIGKILL)  # leftovers of the job
        self._start_what_fits()
        return update

    def _escalate_kills(self) -> None:
        now = time.time()
        for running in self._running.values():
            if running.killed_at is not None and now - running.killed_at > KILL_GRACE:
                _signal_group(running.process.pid, signal.SIGKILL)

    def close(self) -> None:
        self._waiting.clear()
        for running in self._running.values():
            _signal_group(running.process.pid, signal.SIGTERM)
        deadline = time.time() + KILL_GRACE
        for running in self._running.values():
            while running.process.returncode is None and time.time() < deadline:
                time.sleep(0.05)
            _signal_group(running.process.pid, signal.SIGKILL)


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
