"""allocation: runs the tree's targets inside the allocation (the salloc,
sbatch, qsub or bsub job) the master already runs in.

The nodes and the cores (and, on Slurm, the memory) the job holds come from
the scheduler's environment (:mod:`.hosts`). One slot account per node keeps
what runs on it within what the allocation holds there, not within the
node's total. A target placed on the master's own node runs as on
singleMachine (the fork server of :mod:`.local`, with that node's share as its
limits); one placed on another node is started through the scheduler's
launcher (``srun``, ``pbsdsh``, ``qrsh -inherit``, ``blaunch``, or ssh). A
target asking ``nodes``/``processes`` gets that many nodes held for it and
runs on the first, with ``JOBTREE_MPI_RUN`` (the start of the command that
runs an MPI program on them) and ``JOBTREE_MPI_HOSTFILE`` in its environment.

Every job ends with the master: the fork server stops its children, and each
launcher process gets SIGTERM when the master dies (Linux), which ``srun``,
``qrsh``, ``pbsdsh`` and ``blaunch`` hand on to the work they started.
"""

from __future__ import annotations

import collections
import ctypes
import dataclasses
import logging
import os
import pickle
import queue
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Callable, Mapping, Sequence

from ..paths import TreePaths, write_atomic
from ..resources import Resources, format_bytes
from .base import (EXIT_MEMORY, BatchJobId, BatchSystem, ExitReason, JobSpec, Update,
                   over_time_limit)
from .hosts import (LAUNCHER_COMMANDS, Grant, GrantError, Launcher, Node, launch_argv,
                    machinefile, mpi_prefix, read_grant)
from .local import SingleMachine, machine_memory
from .supervise import KILL_GRACE, Stopping, stop_all

logger = logging.getLogger(__name__)

__all__ = ["Allocation", "NotInAllocationError", "choose_launcher", "create"]

#: longest wait for a launched job's end while the master's node has jobs too
_SLICE = 0.02
#: the variable that chooses ssh over the scheduler's launcher (``ssh``)
LAUNCHER_VARIABLE = "JOBTREE_ALLOCATION_LAUNCHER"
#: the variable that, set to ``all``, starts every job through the launcher,
#: also on the master's node (on Slurm: every target a job step of its own)
STEPS_VARIABLE = "JOBTREE_ALLOCATION_STEPS"
#: what a process started on another node is given of the master's environment
_CARRIED = ("PYTHONPATH", "LD_LIBRARY_PATH", "VIRTUAL_ENV", "CONDA_PREFIX")


class NotInAllocationError(GrantError):
    """--batchSystem allocation was asked for outside any allocation."""


def _not_in_allocation() -> NotInAllocationError:
    return NotInAllocationError(
        "--batchSystem allocation runs the targets inside the scheduler allocation the "
        "master runs in, but this process is in none (no SLURM_JOB_NODELIST, PBS_NODEFILE, "
        "PE_HOSTFILE or LSB_MCPU_HOSTS in its environment). Run the pipeline inside one "
        "(for example `salloc -N2 -c8 python pipeline.py ...`, `sbatch --wrap '...'`, "
        "`qsub -pe smp 8 ...` or `bsub -n 8 ...`), or use --batchSystem singleMachine to "
        "run on this machine, or a cluster batch system (slurm, gridEngine, ...) to submit "
        "each target as a job of its own.")


def _this_host(grant: Grant) -> str | None:
    """The node of the grant this process runs on, if any."""
    if grant.this_node is not None:
        return grant.this_node
    names = {socket.gethostname(), socket.gethostname().split(".")[0], "localhost"}
    try:
        names.add(socket.getfqdn())
    except OSError:
        pass
    for node in grant.nodes:
        if node.host in names or node.host.split(".")[0] in names:
            return node.host
    return None


def _address_space_limit() -> int | None:
    """The address-space limit of this process (Grid Engine's ``h_vmem``), if set."""
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    return None if soft == resource.RLIM_INFINITY else soft


@dataclasses.dataclass
class _Slots:
    """What the allocation holds on one node (``total_*``), and what of it is
    free: cores and (when known) memory."""

    node: Node
    total_cores: float
    total_memory: int | None
    cores: float = 0.0
    memory: int | None = None

    def __post_init__(self) -> None:
        self.cores, self.memory = self.total_cores, self.total_memory

    def could_fit(self, cpu: float, memory: int) -> bool:
        """Whether the job fits the node when nothing else runs there."""
        return (cpu <= self.total_cores + 1e-9
                and (self.total_memory is None or memory <= self.total_memory))

    def fits(self, cpu: float, memory: int) -> bool:
        return (cpu <= self.cores + 1e-9
                and (self.memory is None or memory <= self.memory))

    def take(self, cpu: float, memory: int, sign: int = 1) -> None:
        self.cores -= sign * cpu
        if self.memory is not None:
            self.memory -= sign * memory


@dataclasses.dataclass
class _Job:
    """One issued job: where it went and what it holds."""

    spec: JobSpec
    hosts: tuple[str, ...] = ()
    cpu: float = 1.0  # cores held on each of its hosts
    memory: int = 0  # bytes held on each of its hosts
    local_id: BatchJobId | None = None  # its id in the master's node's SingleMachine
    process: subprocess.Popen[bytes] | None = None  # its launcher or local process
    started: float = 0.0
    killed: bool = False
    over_limit: bool = False
    input_file: str | None = None  # the job input file written for it, removed at its end


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec function that asks the kernel to SIGTERM the child when the
    master dies (Linux), or None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None

    def preexec() -> None:
        libc.prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG

    return preexec


class Allocation(BatchSystem):
    """Runs jobs on the nodes of the allocation the master runs in.

    Args:
        grant: the allocation (see :func:`.hosts.read_grant`).
        max_threads: most jobs at once (default: the allocation's cores).
        max_cpus: the most cores one job may ask, and the most used on a node.
        max_memory: the most memory one job may ask, and the most used on a node.
        workdir: where machine files for MPI targets are written.
        launcher: how work starts on the other nodes (default: the scheduler's
            launcher, or ssh where that is not on PATH).
        this_host: the node the master runs on (default: found from the
            grant and the host name; None if it is not one of them).
        launch_all: start every job through the launcher, on the master's
            node too (on Slurm, every target is then a job step of its own,
            listed by sacct), instead of as singleMachine does there.
    """

    name = "allocation"

    def __init__(self, grant: Grant, max_threads: int | None = None,
                 max_cpus: float | None = None, max_memory: int | None = None, *,
                 workdir: str | None = None, launcher: Launcher | None = None,
                 this_host: str | None = "", launch_all: bool = False) -> None:
        self.grant = grant
        self._here = _this_host(grant) if this_host == "" else this_host
        self._launcher = launcher or choose_launcher(grant, {}, launch_all)
        self._launch_all = launch_all
        self._workdir = workdir
        self._slots: dict[str, _Slots] = {}
        for node in grant.nodes:
            cores: float = node.cores if max_cpus is None else min(node.cores, max_cpus)
            memory = node.memory
            if node.host == self._here and memory is None:
                memory = machine_memory()
                limit = _address_space_limit()
                if limit is not None and grant.scheduler is Launcher.GRID_ENGINE:
                    memory = min(memory, limit)
            if max_memory is not None:
                memory = max_memory if memory is None else min(memory, max_memory)
            self._slots[node.host] = _Slots(node, cores, memory)
        total = sum(int(s.total_cores) or 1 for s in self._slots.values())
        self._max_threads = max_threads or total
        here = self._slots.get(self._here) if self._here is not None else None
        self._local = (SingleMachine(max_threads=self._max_threads, max_cpus=here.total_cores,
                                     max_memory=here.total_memory)
                       if here is not None and not launch_all else None)
        # one node, the master's: job inputs are handed over in memory as on singleMachine
        self.local = len(self._slots) == 1 and here is not None and not launch_all
        self.takes_input = self.local and self._local is not None and self._local.takes_input
        self._jobs: dict[BatchJobId, _Job] = {}
        self._waiting: collections.OrderedDict[BatchJobId, _Job] = collections.OrderedDict()
        self._by_local: dict[BatchJobId, BatchJobId] = {}
        self._ended: queue.Queue[tuple[BatchJobId, int | None]] = queue.Queue()
        self._synthetic: collections.deque[Update] = collections.deque()
        self._stopping = Stopping(KILL_GRACE)
        self._preexec = _die_with_parent()
        self._counter = 0

    # ---------------------------------------------------------- the contract
    def limits(self) -> Resources:
        cores = max(s.total_cores for s in self._slots.values())
        memories = [s.total_memory for s in self._slots.values()]
        return Resources(cpu=cores, memory=None if None in memories else max(
            m for m in memories if m is not None))

    def capacity(self) -> int:
        return self._max_threads * 2

    def issue(self, spec: JobSpec) -> BatchJobId:
        if not self._counter:
            logger.info("allocation: %s; the master runs on %s; %s starts work on %s",
                        self.grant.describe(), self._here or "none of its nodes",
                        LAUNCHER_COMMANDS[self._launcher],
                        "every node" if self._launch_all else "the other nodes")
        self._counter += 1
        batch_id = BatchJobId(f"alloc-{os.getpid()}-{self._counter}")
        job = _Job(spec, cpu=float(spec.resources.cpu or 1),
                   memory=int(spec.resources.memory or 0))
        nodes = spec.resources.nodes or 1
        if spec.resources.nodes or spec.resources.processes:
            job.cpu = float(max(1, -(-float(spec.resources.cpu or 1) // 1))
                            * (spec.resources.processes or 1))
        self._jobs[batch_id] = job
        problem = self._cannot_fit(job, nodes)
        if problem is not None:
            del self._jobs[batch_id]
            self._synthetic.append(Update(batch_id, None, ExitReason.FAILED, message=problem,
                                          permanent=True))
            return batch_id
        self._waiting[batch_id] = job
        self._place()
        return batch_id

    def _cannot_fit(self, job: _Job, nodes: int) -> str | None:
        """Why the job can never run in this allocation, or None."""
        fitting = [s for s in self._slots.values() if s.could_fit(job.cpu, job.memory)]
        if len(fitting) >= nodes:
            return None
        what = (f"{nodes} nodes with {job.cpu:g} cores and {format_bytes(job.memory)} each"
                if nodes > 1 else f"{job.cpu:g} cores and {format_bytes(job.memory)}")
        return (f"it asks for {what}, and the allocation it runs in "
                f"({self.grant.describe()}) holds {len(fitting)} such nodes; ask the "
                f"scheduler for a larger allocation, or ask for less")

    def _place(self) -> None:
        """Starts the waiting jobs that fit somewhere now, oldest first."""
        for batch_id, job in list(self._waiting.items()):
            if self._running_count() >= self._max_threads:
                return
            hosts = self._hosts_for(job)
            if hosts is None:
                continue
            del self._waiting[batch_id]
            job.hosts = hosts
            for host in hosts:
                self._slots[host].take(job.cpu, job.memory)
            self._start(batch_id, job)

    def _running_count(self) -> int:
        return len(self._jobs) - len(self._waiting)

    def _hosts_for(self, job: _Job) -> tuple[str, ...] | None:
        """The nodes the job would run on now (the master's first), or None."""
        wanted = job.spec.resources.nodes or 1
        order = sorted(self._slots.values(), key=lambda s: s.node.host != self._here)
        fitting = [s.node.host for s in order if s.fits(job.cpu, job.memory)]
        return tuple(fitting[:wanted]) if len(fitting) >= wanted else None

    def _start(self, batch_id: BatchJobId, job: _Job) -> None:
        spec = job.spec
        job.started = time.time()
        mpi = bool(spec.resources.nodes or spec.resources.processes)
        if not mpi and job.hosts[0] == self._here and self._local is not None:
            job.local_id = self._local.issue(spec)
            self._by_local[job.local_id] = batch_id
            return
        environ = self._mpi_environ(batch_id, job) if mpi else {}
        if spec.worker is not None and spec.job is not None:
            # handed over in memory, but this worker runs outside the fork server
            job.input_file = TreePaths(spec.worker.tree).job_input(spec.worker.job)
            write_atomic(job.input_file, pickle.dumps(spec.job, 5), sync=False)
        if job.hosts[0] == self._here and not self._launch_all:
            argv = list(spec.argv)
            env = dict(os.environ, **environ, JOBTREE_MASTER_PID=str(os.getpid()))
        else:
            carried = {k: os.environ[k] for k in _CARRIED if os.environ.get(k)}
            # memory is said to srun only where Slurm counts it
            memory = job.memory if self._slots[job.hosts[0]].node.memory is not None else None
            argv = launch_argv(self._launcher, job.hosts[0], spec.argv,
                               cores=int(-(-job.cpu // 1)), memory=memory,
                               name=spec.name, environ={**carried, **environ})
            env = dict(os.environ, **environ)
            if self._launcher is Launcher.SLURM and memory is not None:
                # the step's --mem, not the job's, holds for it
                for name in ("SLURM_MEM_PER_CPU", "SLURM_MEM_PER_GPU", "SLURM_MEM_PER_NODE"):
                    env.pop(name, None)
        self._popen(batch_id, job, argv, env)

    def _mpi_environ(self, batch_id: BatchJobId, job: _Job) -> dict[str, str]:
        """What a multi-node target finds in its environment to start its MPI program."""
        resources = job.spec.resources
        processes = resources.processes or 1
        hostfile = None
        if self._workdir is not None:
            folder = os.path.join(self._workdir, "hosts")
            os.makedirs(folder, exist_ok=True)
            hostfile = os.path.join(folder, f"{batch_id}.hosts")
            with open(hostfile, "w", encoding="utf-8") as handle:
                handle.write(machinefile(job.hosts, processes))
        launcher = (Launcher.SLURM if self.grant.scheduler is Launcher.SLURM
                    and self._launcher is Launcher.SLURM else self._launcher)
        prefix = mpi_prefix(launcher, job.hosts, processes,
                            cores=int(max(1, -(-float(resources.cpu or 1) // 1))),
                            memory=job.memory if self._slots[job.hosts[0]].node.memory
                            is not None else None, hostfile=hostfile,
                            overlap=self._here in job.hosts)
        environ = {"JOBTREE_MPI_RUN": shlex.join(prefix),
                   "JOBTREE_MPI_HOSTS": ",".join(job.hosts),
                   "JOBTREE_MPI_NP": str(len(job.hosts) * processes)}
        if hostfile is not None:
            environ["JOBTREE_MPI_HOSTFILE"] = hostfile
        return environ

    def _popen(self, batch_id: BatchJobId, job: _Job, argv: list[str],
               env: Mapping[str, str]) -> None:
        with open(job.spec.log_path, "ab") as log:
            try:
                process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                           stderr=subprocess.STDOUT, start_new_session=True,
                                           close_fds=True, env=dict(env),
                                           preexec_fn=self._preexec)
            except OSError as err:
                log.write(f"jobtree: cannot start {argv[0]}: {err}\n".encode())
                self._ended.put((batch_id, 127))
                return
        job.process = process
        logger.debug("started job %s on %s: %s", batch_id, ",".join(job.hosts), argv)

        def wait() -> None:
            self._ended.put((batch_id, process.wait()))

        threading.Thread(target=wait, daemon=True, name=f"wait-{batch_id}").start()

    def kill(self, ids: Sequence[BatchJobId]) -> None:
        for batch_id in ids:
            job = self._jobs.get(batch_id)
            if job is None or job.killed:
                continue
            job.killed = True
            if self._waiting.pop(batch_id, None) is not None:
                del self._jobs[batch_id]
                self._synthetic.append(Update(batch_id, None, ExitReason.KILLED))
            elif job.local_id is not None and self._local is not None:
                self._local.kill([job.local_id])
            elif job.process is not None:
                self._stopping.term(job.process.pid)

    def issued(self) -> set[BatchJobId]:
        return set(self._jobs) | {update.batch_id for update in self._synthetic}

    def running(self) -> dict[BatchJobId, float]:
        now = time.time()
        ran = {}
        if self._local is not None:
            for local_id, seconds in self._local.running().items():
                if local_id in self._by_local:
                    ran[self._by_local[local_id]] = seconds
        for batch_id, job in self._jobs.items():
            if job.process is not None:
                ran[batch_id] = now - job.started
        return ran

    def next_update(self, timeout: float) -> Update | None:
        deadline = time.time() + max(timeout, 0)
        while True:
            self._stop_over_limit()
            self._stopping.escalate()
            if self._synthetic:
                return self._synthetic.popleft()
            try:
                update = self._finish(*self._ended.get_nowait())
            except queue.Empty:
                update = None
            else:
                if update is not None:
                    return update
                continue
            remaining = max(deadline - time.time(), 0)
            if self._local is not None and self._by_local:
                launched = any(job.process is not None for job in self._jobs.values())
                local = self._local.next_update(min(remaining, _SLICE) if launched
                                                else remaining)
                if local is not None and local.batch_id in self._by_local:
                    return self._from_local(local)
            else:
                try:
                    update = self._finish(*self._ended.get(timeout=min(remaining, 0.2)))
                except queue.Empty:
                    pass
                else:
                    if update is not None:
                        return update
            if time.time() >= deadline:
                return None

    def _release(self, batch_id: BatchJobId) -> _Job | None:
        job = self._jobs.pop(batch_id, None)
        if job is not None:
            for host in job.hosts:
                self._slots[host].take(job.cpu, job.memory, sign=-1)
            self._place()
        return job

    def _from_local(self, update: Update) -> Update:
        batch_id = self._by_local.pop(update.batch_id)
        self._release(batch_id)
        return dataclasses.replace(update, batch_id=batch_id)

    def _finish(self, batch_id: BatchJobId, code: int | None) -> Update | None:
        job = self._jobs.get(batch_id)
        if job is None:
            return None
        if job.process is not None:
            self._stopping.forget(job.process.pid)
        if job.input_file is not None:
            try:
                os.unlink(job.input_file)
            except OSError:
                pass
        self._release(batch_id)
        message = None
        if code == 0:
            reason = ExitReason.FINISHED
        elif job.over_limit:
            reason = ExitReason.TIMEOUT
            message = over_time_limit(job.spec.resources.time_limit)
        elif job.killed:
            reason = ExitReason.KILLED
        elif code == EXIT_MEMORY and job.spec.worker is not None:
            reason = ExitReason.MEMLIMIT
        else:
            reason = ExitReason.FAILED
        return Update(batch_id, code, reason, time.time() - job.started, None,
                      message=message)

    def _stop_over_limit(self) -> None:
        """Stops the launched jobs that ran past their timeLimit (the master's
        node's SingleMachine stops its own)."""
        now = time.time()
        for job in self._jobs.values():
            limit = job.spec.resources.time_limit
            if (limit is not None and job.process is not None and not job.killed
                    and now - job.started > limit):
                job.over_limit = job.killed = True
                self._stopping.term(job.process.pid)

    def close(self) -> None:
        self._waiting.clear()
        if self._local is not None:
            self._local.close()

        def pids() -> list[int]:
            return [j.process.pid for j in self._jobs.values()
                    if j.process is not None and j.process.poll() is None]

        stop_all(pids, lambda: time.sleep(0.05), KILL_GRACE)


def choose_launcher(grant: Grant, environ: Mapping[str, str], launch_all: bool) -> Launcher:
    """The scheduler's launcher; ssh if ``environ`` asks for it, or if the
    launcher is not on PATH (a warning says so when it would be used)."""
    if environ.get(LAUNCHER_VARIABLE, "").lower() == "ssh":
        return Launcher.SSH
    command = LAUNCHER_COMMANDS[grant.scheduler]
    if shutil.which(command) is None:
        if len(grant.nodes) > 1 or launch_all:
            logger.warning("%s is not on PATH: the allocation's other nodes are reached "
                           "with ssh", command)
        return Launcher.SSH
    return grant.scheduler


def create(max_threads: int | None = None, max_cpus: float | None = None,
           max_memory: int | None = None, *, workdir: str | None = None,
           environ: Mapping[str, str] | None = None) -> Allocation:
    """The allocation batch system of the allocation this process runs in.

    Raises:
        NotInAllocationError: this process runs in no allocation.
        GrantError: the scheduler's description of it cannot be read.
    """
    environ = os.environ if environ is None else environ
    grant = read_grant(environ)
    if grant is None:
        raise _not_in_allocation()
    launch_all = environ.get(STEPS_VARIABLE, "").lower() == "all"
    return Allocation(grant, max_threads, max_cpus, max_memory, workdir=workdir,
                      launcher=choose_launcher(grant, environ, launch_all),
                      launch_all=launch_all)

