"""What an allocation holds, read from its scheduler's environment, and the
command lines that start work on its nodes (all pure).

A job of Slurm, PBS (Torque, PBS Pro), Grid Engine or LSF tells its
processes which nodes it was given, and how many cores on each, through its
environment: :func:`read_grant` reads it. :func:`launch_argv` builds the
command that starts one process on one node through the scheduler's own
launcher (or ssh), and :func:`mpi_prefix` the start of the command that
starts an MPI program on several nodes.
"""

from __future__ import annotations

import dataclasses
import enum
import re
import shlex
from typing import Callable, Mapping, Sequence

from ..errors import BatchSystemError

__all__ = ["Grant", "GrantError", "Launcher", "Node", "expand_hostlist", "expand_counts",
           "launch_argv", "mpi_prefix", "machinefile", "read_grant"]

_MIB = 1024 ** 2


class GrantError(BatchSystemError):
    """The scheduler's description of the allocation cannot be read."""


class Launcher(enum.Enum):
    """How work is started on another node of the allocation."""

    SLURM = "slurm"
    """``srun`` (a job step of one task, on one node)."""
    PBS = "pbs"
    """``pbsdsh -h HOST`` (Torque, PBS Pro)."""
    GRID_ENGINE = "gridEngine"
    """``qrsh -inherit HOST`` (the parallel environment needs ``control_slaves TRUE``)."""
    LSF = "lsf"
    """``blaunch HOST``."""
    SSH = "ssh"
    """``ssh HOST`` (where the scheduler's launcher is missing or not wanted)."""


#: the command each launcher needs on PATH
LAUNCHER_COMMANDS = {Launcher.SLURM: "srun", Launcher.PBS: "pbsdsh",
                     Launcher.GRID_ENGINE: "qrsh", Launcher.LSF: "blaunch",
                     Launcher.SSH: "ssh"}


@dataclasses.dataclass(frozen=True)
class Node:
    """One node of an allocation and what of it the allocation holds.

    Attributes:
        host: the node's name as the scheduler gives it.
        cores: the cores (slots) the allocation holds on it.
        memory: the bytes it holds on it; None when the scheduler does not say.
    """

    host: str
    cores: int
    memory: int | None = None


@dataclasses.dataclass(frozen=True)
class Grant:
    """An allocation: the nodes a scheduler gave the job the master runs in.

    Attributes:
        scheduler: whose environment described it (and whose launcher starts
            work on its other nodes).
        job_id: the scheduler's id of the job, if it says.
        nodes: its nodes, in the scheduler's order (the first is the job's
            first node).
        this_node: the host of the node this process runs on, if it is one
            of them (an ``salloc`` shell on a login node is not).
    """

    scheduler: Launcher
    job_id: str | None
    nodes: tuple[Node, ...]
    this_node: str | None = None

    def describe(self) -> str:
        """A short text such as ``slurm job 12: vm (2 cores, 512.0 MiB)``."""
        parts = []
        for node in self.nodes:
            memory = f", {node.memory / _MIB:.0f} MiB" if node.memory is not None else ""
            parts.append(f"{node.host} ({node.cores} cores{memory})")
        job = f" job {self.job_id}" if self.job_id else ""
        return f"{self.scheduler.value}{job}: {', '.join(parts)}"


# ------------------------------------------------------ Slurm's host lists
def _split_top(text: str) -> list[str]:
    """Splits at the commas outside brackets."""
    items, depth, start = [], 0, 0
    for index, char in enumerate(text):
        if char == "[":
            depth += 1
            if depth > 1:
                raise ValueError("nested brackets")
        elif char == "]":
            depth -= 1
            if depth < 0:
                raise ValueError("unbalanced brackets")
        elif char == "," and depth == 0:
            items.append(text[start:index])
            start = index + 1
    if depth:
        raise ValueError("unbalanced brackets")
    items.append(text[start:])
    return [item.strip() for item in items if item.strip()]


def _expand_range(text: str) -> list[str]:
    """``01-03,07`` -> ``01 02 03 07`` (keeping the zero padding of each range)."""
    values = []
    for part in text.split(","):
        low, sep, high = part.strip().partition("-")
        if not low.isdigit() or (sep and not high.isdigit()):
            raise ValueError(f"bad range {part!r}")
        if not sep:
            values.append(low)
            continue
        if int(high) < int(low):
            raise ValueError(f"bad range {part!r}")
        width = len(low)
        values.extend(f"{number:0{width}d}" for number in range(int(low), int(high) + 1))
    return values


def _expand_one(item: str) -> list[str]:
    match = re.search(r"\[([^\]]*)\]", item)
    if match is None:
        return [item]
    head, tail = item[:match.start()], item[match.end():]
    return [head + value + rest for value in _expand_range(match.group(1))
            for rest in _expand_one(tail)]


def expand_hostlist(text: str) -> list[str]:
    """Expands Slurm's compressed host list: ``node[01-03,07],gpu1`` is
    ``node01 node02 node03 node07 gpu1`` (several bracket groups in one name
    combine: ``r[1-2]n[1-2]`` is ``r1n1 r1n2 r2n1 r2n2``).

    Raises:
        GrantError: the list is malformed.
    """
    try:
        hosts = [host for item in _split_top(text.strip()) for host in _expand_one(item)]
    except ValueError as err:
        raise GrantError(
            f"The host list {text!r} (SLURM_JOB_NODELIST) cannot be read ({err}). Run "
            f"jobtree inside an unchanged salloc or sbatch environment.") from None
    if not hosts:
        raise GrantError("SLURM_JOB_NODELIST is empty: run jobtree inside an salloc or "
                         "sbatch allocation.")
    return hosts


def expand_counts(text: str) -> list[int]:
    """Expands Slurm's compressed counts: ``2(x3),4`` is ``2 2 2 4``.

    Raises:
        GrantError: the text is malformed.
    """
    counts: list[int] = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)(?:\(x(\d+)\))?\s*", part)
        if match is None:
            raise GrantError(f"The core counts {text!r} (SLURM_JOB_CPUS_PER_NODE) cannot "
                             f"be read. Run jobtree inside an unchanged salloc or sbatch "
                             f"environment.")
        counts.extend([int(match.group(1))] * int(match.group(2) or 1))
    return counts


# ----------------------------------------------------- reading a grant
def _slurm(environ: Mapping[str, str], read: Callable[[str], str]) -> Grant:
    hosts = expand_hostlist(environ.get("SLURM_JOB_NODELIST") or environ["SLURM_NODELIST"])
    per_node = environ.get("SLURM_JOB_CPUS_PER_NODE")
    if per_node:
        counts = expand_counts(per_node)
    else:
        counts = [int(environ.get("SLURM_CPUS_ON_NODE") or 1)] * len(hosts)
    if len(counts) == 1:
        counts *= len(hosts)
    if len(counts) != len(hosts):
        raise GrantError(
            f"SLURM_JOB_NODELIST names {len(hosts)} nodes but SLURM_JOB_CPUS_PER_NODE "
            f"({per_node}) gives {len(counts)} core counts. Run jobtree inside an unchanged "
            f"salloc or sbatch environment.")
    here = environ.get("SLURMD_NODENAME")
    if here and here in hosts and environ.get("SLURM_CPUS_ON_NODE"):
        counts[hosts.index(here)] = int(environ["SLURM_CPUS_ON_NODE"])

    def memory(cores: int) -> int | None:
        if environ.get("SLURM_MEM_PER_NODE"):
            return int(environ["SLURM_MEM_PER_NODE"]) * _MIB
        if environ.get("SLURM_MEM_PER_CPU"):
            return int(environ["SLURM_MEM_PER_CPU"]) * cores * _MIB
        return None

    nodes = tuple(Node(host, cores, memory(cores)) for host, cores in zip(hosts, counts))
    return Grant(Launcher.SLURM, environ.get("SLURM_JOB_ID") or environ.get("SLURM_JOBID"),
                 nodes, here if here in hosts else None)


def _count_lines(hosts: Sequence[tuple[str, int]]) -> tuple[Node, ...]:
    """Nodes from (host, cores) pairs, a host named twice getting the sum."""
    cores: dict[str, int] = {}
    for host, count in hosts:
        cores[host] = cores.get(host, 0) + count
    return tuple(Node(host, count) for host, count in cores.items())


def _pbs(environ: Mapping[str, str], read: Callable[[str], str]) -> Grant:
    lines = [line.strip() for line in read(environ["PBS_NODEFILE"]).splitlines()]
    return Grant(Launcher.PBS, environ.get("PBS_JOBID"),
                 _count_lines([(line, 1) for line in lines if line]))


def _grid_engine(environ: Mapping[str, str], read: Callable[[str], str]) -> Grant:
    pairs = []
    for line in read(environ["PE_HOSTFILE"]).splitlines():
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 2 or not fields[1].isdigit():
            raise GrantError(f"The line {line!r} of PE_HOSTFILE ({environ['PE_HOSTFILE']}) "
                             f"is not 'host slots queue processors'.")
        pairs.append((fields[0], int(fields[1])))
    return Grant(Launcher.GRID_ENGINE, environ.get("JOB_ID"), _count_lines(pairs))


def _lsf(environ: Mapping[str, str], read: Callable[[str], str]) -> Grant:
    fields = environ["LSB_MCPU_HOSTS"].split()
    if len(fields) % 2 or not all(count.isdigit() for count in fields[1::2]):
        raise GrantError(f"LSB_MCPU_HOSTS ({environ['LSB_MCPU_HOSTS']!r}) is not "
                         f"'host1 cores1 host2 cores2 ...'.")
    return Grant(Launcher.LSF, environ.get("LSB_JOBID"),
                 _count_lines([(h, int(c)) for h, c in zip(fields[::2], fields[1::2])]))


def _read_text(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as handle:
        return handle.read()


def read_grant(environ: Mapping[str, str],
               read: Callable[[str], str] = _read_text) -> Grant | None:
    """The allocation this process runs in, from its scheduler's environment
    (Slurm, then PBS, Grid Engine and LSF); None outside any.

    Args:
        environ: the environment (``os.environ``).
        read: reads a host file (PBS_NODEFILE, PE_HOSTFILE) as text.

    Raises:
        GrantError: the scheduler's description cannot be read.
    """
    readers = (("SLURM_JOB_NODELIST", _slurm), ("SLURM_NODELIST", _slurm),
               ("PBS_NODEFILE", _pbs), ("PE_HOSTFILE", _grid_engine),
               ("LSB_MCPU_HOSTS", _lsf))
    for variable, reader in readers:
        if environ.get(variable):
            try:
                grant = reader(environ, read)
            except OSError as err:
                raise GrantError(f"The host file {environ[variable]} ({variable}) cannot be "
                                 f"read: {err.strerror or err}.") from None
            if not grant.nodes or any(node.cores < 1 for node in grant.nodes):
                raise GrantError(f"The allocation described by {variable} holds no cores: "
                                 f"{grant.describe()}.")
            return grant
    return None


# ----------------------------------------------------- the command lines
def _mebibytes(memory: int) -> int:
    return max(1, -(-memory // _MIB))


def launch_argv(launcher: Launcher, host: str, argv: Sequence[str], *, cores: int = 1,
                memory: int | None = None, name: str = "jobtree",
                environ: Mapping[str, str] | None = None) -> list[str]:
    """The command that runs ``argv`` on ``host``, one process, in the
    allocation.

    Args:
        launcher: how.
        host: the node.
        argv: the command to run there.
        cores: the cores it may use (Slurm makes a step of exactly these).
        memory: the bytes it may use (Slurm's step ``--mem``; None: not said).
        name: the step's name.
        environ: variables to set for the command, for the launchers that
            start it with a bare environment (set with ``env`` on the node).
            ``srun`` hands on its own whole environment: give them to it.
    """
    extra = dict(environ or {})
    if launcher is Launcher.SLURM:
        command = ["srun", "--nodes=1", "--ntasks=1", f"--cpus-per-task={max(1, cores)}",
                   "-w", host, "--exact", f"--job-name={name}", "--quiet"]
        if memory is not None:
            command.append(f"--mem={_mebibytes(memory)}M")
        return [*command, "--", *argv]
    bare = ["env", *(f"{k}={v}" for k, v in extra.items()), *argv] if extra else list(argv)
    if launcher is Launcher.PBS:
        return ["pbsdsh", "-h", host, "--", *bare]
    if launcher is Launcher.GRID_ENGINE:
        return ["qrsh", "-inherit", "-nostdin", host, *bare]
    if launcher is Launcher.LSF:
        return ["blaunch", host, *bare]
    return ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=accept-new", host,
            shlex.join(bare)]


def mpi_prefix(launcher: Launcher, hosts: Sequence[str], processes: int, *, cores: int = 1,
               memory: int | None = None, hostfile: str | None = None,
               overlap: bool = False) -> list[str]:
    """The start of the command that runs an MPI program on ``hosts``,
    ``processes`` ranks on each (the program and its arguments follow).

    On Slurm it is a job step (``srun``) of exactly those nodes, ranks and
    cores; elsewhere ``mpirun`` with a machine file (:func:`machinefile`).

    Args:
        launcher: whose allocation.
        hosts: the nodes, the first the one the target runs on.
        processes: ranks per node.
        cores: cores of each rank.
        memory: bytes on each node (Slurm's ``--mem``; None: not said).
        hostfile: the machine file's path (for ``mpirun``).
        overlap: on Slurm, let the step share its cores with the steps
            already on them (the master's own node runs work outside steps).
    """
    total = len(hosts) * processes
    if launcher is Launcher.SLURM:
        command = ["srun", f"--nodes={len(hosts)}", f"--ntasks={total}",
                   f"--ntasks-per-node={processes}", f"--cpus-per-task={max(1, cores)}",
                   "-w", ",".join(hosts), "--exact"]
        if overlap:
            command.append("--overlap")
        if memory is not None:
            command.append(f"--mem={_mebibytes(memory)}M")
        return command
    return ["mpirun", "-np", str(total), "-machinefile", hostfile or "hosts"]


def machinefile(hosts: Sequence[str], processes: int) -> str:
    """A machine file with one line per rank (read alike by Open MPI and MPICH)."""
    return "".join(f"{host}\n" * processes for host in hosts)
