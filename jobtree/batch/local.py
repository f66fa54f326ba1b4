"""singleMachine: runs jobs as processes on this machine within cpu, memory
and thread limits, and stops a job that runs past its ``timeLimit``.

On Linux every job goes to a fork server (see :mod:`.forkserver`), which
keeps the jobs until they fit, forks a ready-imported worker in about a
millisecond, and execs any other command; elsewhere jobs are started with
subprocess. Every job is a process group of its own, killed whole.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from typing import IO, Any, Sequence

from ..resources import Resources
from . import wire
from .base import (EXIT_MEMORY, BatchJobId, BatchSystem, ExitReason, JobSpec, Update,
                   over_time_limit)
from .supervise import KILL_GRACE, Stopping, oom_kills, signal_group, stop_all

logger = logging.getLogger(__name__)

#: longest wait in next_update before it looks after kills again
_SLICE = 0.2

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
    """A job handed to the fork server (which may still hold it) or started."""

    def __init__(self, spec: JobSpec, started: float) -> None:
        self.spec = spec
        self.started = started
        self.pid: int | None = None
        self.killed_at: float | None = None
        self.over_limit = False  # stopped for running past its timeLimit
        self.server: int | None = None  # the generation of the fork server that has it


_SERVER = [sys.executable, "-c", "from jobtree.batch.forkserver import main; main()"]
#: a fork server started ahead of need (see prestart_fork_server)
_prestarted: list[subprocess.Popen[bytes]] = []


def prestart_fork_server(script: str | None = None, sys_path: Sequence[str] = ()) -> None:
    """Starts a fork server now, so that it starts up while this process
    builds the tree; the next singleMachine batch system uses it.

    Args:
        script: the pipeline's script for the server to import at once (only
            for a new tree, whose environment is this process's); None to
            import it when the first job comes.
        sys_path: the tree's ``sys.path``, for that import.
    """
    if sys.platform.startswith("linux") and not _prestarted:
        _prestarted.append(_start_server(
            [script, json.dumps(list(sys_path))] if script else []))


def _start_server(args: Sequence[str] = ()) -> subprocess.Popen[bytes]:
    # the jobs see this process's sys.argv as their own, as multiprocessing's spawn gives
    env = {**os.environ, wire.PARENT_ARGV: json.dumps(sys.argv)}
    return subprocess.Popen([*_SERVER, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            env=env, close_fds=True)


def _server_process() -> subprocess.Popen[bytes]:
    """The prestarted fork server if it is still there, else a new one."""
    while _prestarted:
        process = _prestarted.pop()
        if process.poll() is None:
            return process
    return _start_server()


class _ForkServer:
    """The master's end of the fork server: sends spawns, reads exits."""

    def __init__(self, generation: int,
                 ended: queue.Queue[tuple[BatchJobId, int | None, int | None]],
                 started: queue.Queue[tuple[BatchJobId, int, float]]) -> None:
        self.generation = generation
        self.process = _server_process()
        self._ended = ended
        self._started = started
        self.alive = True
        self._reader = threading.Thread(target=self._read, args=(self.process.stdout,),
                                        daemon=True, name="jobtree-forkserver")
        self._reader.start()

    def send(self, request: dict[str, Any]) -> None:
        """Hands a request to the server (see :mod:`.forkserver`)."""
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(wire.frame(request))
            self.process.stdin.flush()
        except OSError:
            pass  # the server is gone: the reader thread reports it

    def _read(self, stream: IO[bytes] | None) -> None:
        assert stream is not None
        for line in stream:
            message = json.loads(line)
            if "started" in message:
                self._started.put((BatchJobId(message["started"]), int(message["pid"]),
                                   float(message["at"])))
            else:
                self._ended.put((BatchJobId(message["exited"]), message["code"],
                                 message["maxrss"]))
        self.alive = False
        # tell the master which server is gone (its jobs are lost)
        self._ended.put((BatchJobId(""), self.generation, None))

    def close(self) -> None:
        if self.process.stdin is not None:
            try:
                self.process.stdin.close()
            except OSError:
                pass
        try:
            self.process.wait(timeout=KILL_GRACE * 2 + 5)
        except subprocess.TimeoutExpired:
            self.process.kill()
        # the reader ends with the server's output; then its pipe is closed
        self._reader.join(timeout=5)
        if self.process.stdout is not None and not self._reader.is_alive():
            self.process.stdout.close()


class SingleMachine(BatchSystem):
    """Runs each job as a process group of its own on this machine.

    On Linux every job goes to the fork server, which also holds the jobs
    that wait for room; elsewhere this object starts them with subprocess.

    Args:
        max_threads: most jobs at once.
        max_cpus: most cores in use at once (default: all usable cores).
        max_memory: most memory in use at once (default: physical memory).
    """

    name = "singleMachine"
    local = True
    takes_input = sys.platform.startswith("linux")  # the fork server hands it over

    def __init__(self, max_threads: int | None = None, max_cpus: float | None = None,
                 max_memory: int | None = None) -> None:
        cpus = machine_cpus()
        self._max_threads = max_threads or cpus
        self._max_cpus = min(max_cpus, cpus) if max_cpus else cpus
        memory = machine_memory()
        self._max_memory = min(max_memory, memory) if max_memory else memory
        self._use_server = sys.platform.startswith("linux")
        # without a fork server: the jobs waiting for room, and what is in use
        self._waiting: collections.OrderedDict[BatchJobId, JobSpec] = collections.OrderedDict()
        self._cpu_used = 0.0
        self._memory_used = 0
        self._running: dict[BatchJobId, _Running] = {}
        self._stopping = Stopping(KILL_GRACE)  # without a fork server: the jobs killed
        self._ended: queue.Queue[tuple[BatchJobId, int | None, int | None]] = queue.Queue()
        self._started: queue.Queue[tuple[BatchJobId, int, float]] = queue.Queue()
        self._server: _ForkServer | None = None
        self._generation = 0
        self._synthetic: collections.deque[Update] = collections.deque()
        self._limited: dict[BatchJobId, float] = {}  # issued jobs with a timeLimit: seconds
        self._counter = 0
        self._closing = False
        self._oom_kills = oom_kills()  # the kernel's count when last looked at

    def limits(self) -> Resources:
        return Resources(cpu=self._max_cpus, memory=self._max_memory)

    def capacity(self) -> int:
        return self._max_threads * 2

    def issue(self, spec: JobSpec) -> BatchJobId:
        self._counter += 1
        batch_id = BatchJobId(f"local-{os.getpid()}-{self._counter}")
        if spec.resources.time_limit is not None:
            self._limited[batch_id] = spec.resources.time_limit
        if self._use_server:
            running = _Running(spec, time.time())
            self._running[batch_id] = running
            self._hand_to_server(batch_id, running)
        else:
            self._waiting[batch_id] = spec
            self._start_what_fits()
        return batch_id

    # ------------------------------------------------------ with a fork server
    def _hand_to_server(self, batch_id: BatchJobId, running: _Running) -> None:
        if self._server is None or not self._server.alive:
            self._generation += 1
            self._server = _ForkServer(self._generation, self._ended, self._started)
            self._server.send({"limits": [self._max_threads, self._max_cpus,
                                          self._max_memory]})
        running.server = self._server.generation
        spec = running.spec
        worker = spec.worker
        self._server.send({
            "spawn": batch_id, "argv": worker.args() if worker is not None else list(spec.argv),
            "log": spec.log_path, "job": spec.job, "worker": worker is not None,
            "cpu": float(spec.resources.cpu or 1), "memory": int(spec.resources.memory or 0)})
        logger.debug("handed job %s to the fork server: %s", batch_id, spec.argv)

    def _server_died(self, generation: int | None) -> None:
        """A fork server is gone: the jobs it ran are lost (the master retries
        them); those it had not started go to a new one."""
        self._note_starts()
        mine = [(i, r) for i, r in self._running.items() if r.server == generation]
        lost = [i for i, r in mine
                if r.pid is not None or r.killed_at is not None or self._closing]
        if lost:
            logger.warning("the singleMachine fork server exited; %d jobs are lost", len(lost))
        for batch_id in lost:
            self._ended.put((batch_id, None, None))
        if self._server is not None and self._server.generation == generation:
            self._server = None
        for batch_id, running in mine:
            if batch_id not in lost:
                self._hand_to_server(batch_id, running)

    # --------------------------------------------------- without a fork server
    def _fits(self, spec: JobSpec) -> bool:
        if not self._running:
            return True  # a job within the limits always gets to run alone
        return (len(self._running) < self._max_threads
                and self._cpu_used + float(spec.resources.cpu or 1) <= self._max_cpus + 1e-9
                and self._memory_used + int(spec.resources.memory or 0) <= self._max_memory)

    def _start_what_fits(self) -> None:
        for batch_id, spec in list(self._waiting.items()):
            if len(self._running) >= self._max_threads:
                return
            if self._fits(spec):
                del self._waiting[batch_id]
                self._popen(batch_id, spec)

    def _popen(self, batch_id: BatchJobId, spec: JobSpec) -> None:
        running = _Running(spec, time.time())
        self._running[batch_id] = running
        self._cpu_used += float(spec.resources.cpu or 1)
        self._memory_used += int(spec.resources.memory or 0)
        argv = list(spec.argv)
        env = dict(os.environ, JOBTREE_MASTER_PID=str(os.getpid()))
        with open(spec.log_path, "ab") as log:
            try:
                process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                           stderr=subprocess.STDOUT, start_new_session=True,
                                           close_fds=True, env=env)
            except OSError as err:
                log.write(f"jobtree: cannot start {argv[0]}: {err}\n".encode())
                self._ended.put((batch_id, 127, None))
                return
        running.pid = process.pid

        def wait() -> None:
            _, status, usage = os.wait4(process.pid, 0)
            process.returncode = os.waitstatus_to_exitcode(status)
            self._ended.put((batch_id, process.returncode, usage.ru_maxrss * 1024))

        threading.Thread(target=wait, daemon=True, name=f"wait-{batch_id}").start()
        logger.debug("started job %s: %s", batch_id, argv)

    # ------------------------------------------------------------ both ways
    def kill(self, ids: Sequence[BatchJobId]) -> None:
        now = time.time()
        self._note_starts()
        for batch_id in ids:
            if self._waiting.pop(batch_id, None) is not None:
                self._synthetic.append(Update(batch_id, None, ExitReason.KILLED))
                continue
            running = self._running.get(batch_id)
            if running is None or running.killed_at is not None:
                continue
            running.killed_at = now
            if running.server is not None:
                if self._server is not None and self._server.generation == running.server:
                    self._server.send({"kill": batch_id})  # it escalates to SIGKILL
            elif running.pid is not None:
                self._stopping.term(running.pid)

    def issued(self) -> set[BatchJobId]:
        return (set(self._waiting) | set(self._running)
                | {update.batch_id for update in self._synthetic})

    def running(self) -> dict[BatchJobId, float]:
        self._note_starts()
        now = time.time()
        return {i: now - r.started for i, r in self._running.items() if r.pid is not None}

    def _stop_over_limit(self) -> None:
        """Stops the started jobs that have run past their timeLimit."""
        if not self._limited:
            return
        now = time.time()
        over = []
        for batch_id, limit in list(self._limited.items()):
            running = self._running.get(batch_id)
            if running is None:
                if batch_id not in self._waiting:
                    del self._limited[batch_id]
            elif running.pid is not None and now - running.started > limit:
                del self._limited[batch_id]
                if running.killed_at is None:
                    running.over_limit = True
                    over.append(batch_id)
        if over:
            self.kill(over)

    def _note_starts(self) -> None:
        while True:
            try:
                batch_id, pid, at = self._started.get_nowait()
            except queue.Empty:
                return
            running = self._running.get(batch_id)
            if running is not None:
                running.pid = pid
                running.started = at  # it may have waited in the server

    def next_update(self, timeout: float) -> Update | None:
        deadline = time.time() + max(timeout, 0)
        while True:
            # kills wait for a grace period: look after them every slice
            self._note_starts()
            self._stop_over_limit()
            if not self._use_server:
                self._stopping.escalate()
            if self._synthetic:
                return self._synthetic.popleft()
            try:
                batch_id, code, maxrss = self._ended.get(
                    timeout=min(max(deadline - time.time(), 0), _SLICE))
            except queue.Empty:
                if time.time() >= deadline:
                    return None
                continue
            if batch_id == "":
                self._server_died(code)
                continue
            update = self._finish(batch_id, code, maxrss)
            if update is not None:
                return update

    def _finish(self, batch_id: BatchJobId, code: int | None,
                maxrss: int | None) -> Update | None:
        self._note_starts()
        running = self._running.pop(batch_id, None)
        if running is None:
            return None
        if running.server is None:  # the fork server does all this for its jobs
            self._cpu_used -= float(running.spec.resources.cpu or 1)
            self._memory_used -= int(running.spec.resources.memory or 0)
            if running.pid is not None:
                self._stopping.forget(running.pid)
                signal_group(running.pid, signal.SIGKILL)  # whatever the job left behind
            self._start_what_fits()
        self._limited.pop(batch_id, None)
        message = None
        if code == 0:
            reason = ExitReason.FINISHED
        elif running.over_limit:
            reason = ExitReason.TIMEOUT
            message = over_time_limit(running.spec.resources.time_limit)
        elif running.killed_at is not None:
            reason = ExitReason.KILLED
        elif code is None:
            reason = ExitReason.LOST
        elif code == EXIT_MEMORY and running.spec.worker is not None:
            reason = ExitReason.MEMLIMIT
        elif code == -signal.SIGKILL and self._oom_killed():
            reason = ExitReason.MEMLIMIT
            message = ("the kernel's out-of-memory killer stopped it (SIGKILL, and the "
                       "kernel counted an OOM kill meanwhile); give it more memory")
        else:
            reason = ExitReason.FAILED
        return Update(batch_id, code, reason, time.time() - running.started, maxrss,
                      message=message)

    def _oom_killed(self) -> bool:
        """Whether the kernel's OOM killer killed a process since the last look:
        a job that died of a SIGKILL jobtree did not send is then its victim."""
        seen, self._oom_kills = self._oom_kills, oom_kills()
        return seen is not None and self._oom_kills is not None and self._oom_kills > seen

    def close(self) -> None:
        self._closing = True
        self._waiting.clear()
        self._note_starts()
        if self._server is not None:
            self._server.close()  # stops (TERM, then KILL) the jobs it has
            self._server = None
        # without a fork server: TERM, then KILL, the jobs this object started
        stop_all(self._pids, self._drain, KILL_GRACE, left=lambda: bool(self._running),
                 wait_after_kill=False)

    def _pids(self) -> list[int]:
        return [running.pid for running in self._running.values() if running.pid is not None]

    def _drain(self) -> None:
        """Takes the updates of jobs that ended, waiting a moment for one (in close)."""
        if self.next_update(0.05) is None and self._ended.empty():
            self._note_starts()
