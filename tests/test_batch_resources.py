"""Memory, cores and disk as every adapter asks them of its scheduler: pure
tests of the rendered directives, from a target's resources through
:func:`jobtree.batch.plan.request_for` to the job script's lines.

Memory and cores are guarantees: what is asked is never below what the
target asked, nor below what a worker needs to start (``memory_floor``,
and on Grid Engine ``vmem_allowance`` on top, divided per slot). Disk is
asked only as the resource the cluster config names (``disk_resource``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from jobtree.batch.adapter import SchedulerDialect
from jobtree.batch.gridengine import GridEngine
from jobtree.batch.lsf import LSF
from jobtree.batch.native import Submission
from jobtree.batch.pbspro import PBSPro
from jobtree.batch.plan import request_for, scheduler_memory
from jobtree.batch.settings import MEMORY_FLOOR, VMEM_ALLOWANCE, ClusterSettings, cluster_settings
from jobtree.batch.slurm import Slurm
from jobtree.batch.torque import Torque
from jobtree.errors import BadOptionError
from jobtree.resources import Resources

MiB = 1024 ** 2
GiB = 1024 ** 3
SETTINGS = ClusterSettings(job_name="jt-test")
FLOOR_MIB = MEMORY_FLOOR // MiB
ALLOWANCE_MIB = VMEM_ALLOWANCE // MiB


def render(dialect: SchedulerDialect, resources: Resources,
           settings: ClusterSettings = SETTINGS, tasks: int = 1) -> list[str]:
    """The directive lines of a job for ``resources`` (without their prefix)."""
    request = request_for(resources, settings, dialect)
    job = Submission(settings.job_name, "/tree/batch/subs/1.sh", "/tree/batch/out/1", tasks,
                     request, "/tree/batch")
    prefix = dialect.directive_prefix + " "
    return [line[len(prefix):] for line in dialect.directives(job)]


#: per adapter: the lines for (memory MiB, cores) of a one-process job
EXPECTED = {
    "slurm": (Slurm(), lambda mib, cores: {f"--mem={mib}M", f"--cpus-per-task={cores}"}),
    "torque": (Torque(), lambda mib, cores: {f"-l mem={mib}mb", f"-l nodes=1:ppn={cores}"}),
    "pbspro": (PBSPro(), lambda mib, cores: {
        f"-l select=1:ncpus={cores}:mpiprocs=1:ompthreads={cores}:mem={mib}mb"}),
    "lsf": (LSF(), lambda mib, cores: {
        f"-n {cores}", f'-R "span[hosts=1] rusage[mem={-(-mib // cores)}]"', f"-M {mib}"}),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_tiny_request_asks_at_least_the_floor(name: str) -> None:
    """A classic script's ``memory=1000000, cpu=1`` (bytes) asks the floor."""
    dialect, lines = EXPECTED[name]
    rendered = set(render(dialect, Resources(memory=1000000, cpu=1)))
    assert lines(FLOOR_MIB, 1) <= rendered, rendered


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_large_request_is_asked_as_given(name: str) -> None:
    dialect, lines = EXPECTED[name]
    rendered = set(render(dialect, Resources(memory=64 * GiB, cpu=16)))
    assert lines(64 * 1024, 16) <= rendered, rendered


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_cores_are_never_below_one_and_round_up(name: str) -> None:
    dialect, lines = EXPECTED[name]
    assert lines(4096, 1) <= set(render(dialect, Resources(memory=4 * GiB, cpu=0.25)))
    assert lines(4096, 3) <= set(render(dialect, Resources(memory=4 * GiB, cpu=2.5)))


def test_grid_engine_asks_virtual_memory_per_slot_with_the_allowance() -> None:
    """h_vmem is per slot and limits virtual memory: the floor plus the
    allowance, divided by the slots, rounded up to whole MiB."""
    sge = GridEngine()
    tiny = render(sge, Resources(memory=1000000, cpu=1))
    assert f"-l h_vmem={FLOOR_MIB + ALLOWANCE_MIB}M" in tiny and not any(
        line.startswith("-pe") for line in tiny)
    four = render(sge, Resources(memory=1000000, cpu=4))
    assert "-pe smp 4" in four
    assert f"-l h_vmem={-(-(FLOOR_MIB + ALLOWANCE_MIB) // 4)}M" in four
    large = render(sge, Resources(memory=64 * GiB, cpu=16))
    assert "-pe smp 16" in large
    assert f"-l h_vmem={-(-(64 * 1024 + ALLOWANCE_MIB) // 16)}M" in large
    odd = render(sge, Resources(memory=1000 * MiB + 1, cpu=3),
                 dataclasses.replace(SETTINGS, vmem_allowance=0))
    assert "-l h_vmem=334M" in odd  # ceil((1000 MiB + 1 B) / 3) in whole MiB
    mpi = render(sge, Resources(memory=8 * GiB, cpu=2, nodes=2, processes=4),
                 dataclasses.replace(SETTINGS, parallel_environment="mpi"))
    assert "-pe mpi 16" in mpi  # memory is per node: 8 slots share it there
    assert f"-l h_vmem={-(-(8 * 1024 + ALLOWANCE_MIB) // 8)}M" in mpi


def test_the_floor_is_capped_by_max_memory_but_never_cuts_a_request() -> None:
    settings = dataclasses.replace(SETTINGS, memory_floor=GiB, max_memory=512 * MiB)
    assert scheduler_memory(1000000, settings) == 512 * MiB
    assert scheduler_memory(2 * GiB, settings) == 2 * GiB
    assert scheduler_memory(None, settings) is None
    assert scheduler_memory(0, SETTINGS) == MEMORY_FLOOR
    no_floor = dataclasses.replace(SETTINGS, memory_floor=0, vmem_allowance=0)
    assert "--mem=1M" in render(Slurm(), Resources(memory=1000000), no_floor)
    assert "-l h_vmem=1M" in render(GridEngine(), Resources(memory=1000000), no_floor)


def test_the_targets_own_request_is_left_alone() -> None:
    """The floor is what the scheduler is asked; the target's resources (what
    the index, jobTreeStatus and the worker's chaining see) keep its own."""
    resources = Resources(memory=1000000, cpu=0.5, disk=10 * GiB)
    request = request_for(resources, SETTINGS, Slurm())
    assert request.memory == MEMORY_FLOOR and request.cores == 1 and request.disk is None
    assert (resources.memory, resources.cpu, resources.disk) == (1000000, 0.5, 10 * GiB)


ALL = {"slurm": Slurm(), "gridEngine": GridEngine(), "torque": Torque(), "pbspro": PBSPro(),
       "lsf": LSF()}


@pytest.mark.parametrize("name", sorted(ALL))
def test_disk_is_not_asked_unless_the_site_names_its_resource(name: str) -> None:
    lines = render(ALL[name], Resources(memory=GiB, disk=50 * GiB))
    text = "\n".join(lines)
    assert "51200" not in text and "file=" not in text and "tmp" not in text, text


#: per adapter: (disk_resource, the line or part of it that asks 50 GiB on 2 cores)
DISK = {
    "slurm": ("tmp", "--tmp=51200M"),
    "gridEngine": ("tmp_free", "-l tmp_free=51200M"),
    "torque": ("scratch", "-l scratch=51200mb"),
    "pbspro": ("scratch", ":mem=1024mb:scratch=51200mb"),
    "lsf": ("tmp", "rusage[mem=512,tmp=25600]"),
}


@pytest.mark.parametrize("name", sorted(DISK))
def test_disk_is_asked_as_the_named_resource(name: str) -> None:
    resource, expected = DISK[name]
    settings = dataclasses.replace(SETTINGS, disk_resource=resource)
    text = "\n".join(render(ALL[name], Resources(memory=GiB, cpu=2, disk=50 * GiB), settings))
    assert expected in text and "file=" not in text, text


def test_slurm_asks_another_disk_resource_as_a_generic_resource() -> None:
    settings = dataclasses.replace(SETTINGS, disk_resource="lscratch")
    assert "--gres=lscratch:10240M" in render(Slurm(), Resources(disk=10 * GiB), settings)


#: per adapter: the warning lines of a job asking an hour with warn_before 120 s
#: (PBS has no standard warning before the wall time: none)
WARNING = {
    "slurm": ["--signal=B:USR1@120"],
    "gridEngine": ["-l s_rt=00:58:00"],
    "lsf": ["-wa USR1", "-wt 2"],
    "torque": [],
    "pbspro": [],
}


@pytest.mark.parametrize("name", sorted(WARNING))
def test_the_wall_time_warning(name: str) -> None:
    hour = Resources(time=3600)
    settings = dataclasses.replace(SETTINGS, warn_before=120.0, walltime_factor=1.0)
    lines = render(ALL[name], hour, settings)
    warned = [line for line in lines if "USR1" in line or "s_rt" in line or "-wt" in line]
    assert warned == WARNING[name], lines
    assert not [line for line in render(ALL[name], hour, dataclasses.replace(
        settings, warn_before=0)) if "USR1" in line or "s_rt" in line]


def test_the_warning_is_at_most_half_the_wall_time() -> None:
    settings = dataclasses.replace(SETTINGS, warn_before=600.0, walltime_floor=60,
                                   walltime_factor=1.0)
    assert "--signal=B:USR1@30" in render(Slurm(), Resources(time=10), settings)


def test_the_config_keys(tmp_path: Path) -> None:
    config = tmp_path / "cluster.ini"
    config.write_text("[cluster]\nmemory_floor = 512M\ndisk_resource = scratch\n"
                      "[gridEngine]\nvmem_allowance = 1G\ndisk_resource = tmp_free\n")
    options = type("Options", (), {"clusterConfig": str(config)})()
    slurm = cluster_settings("slurm", options, None, None, None, None, None)
    assert (slurm.memory_floor, slurm.vmem_allowance, slurm.disk_resource) == (
        512 * MiB, VMEM_ALLOWANCE, "scratch")
    sge = cluster_settings("gridEngine", options, None, None, None, None, None)
    assert (sge.vmem_allowance, sge.disk_resource) == (GiB, "tmp_free")
    config.write_text("[cluster]\ndisk_resource = tmp free\n")
    with pytest.raises(BadOptionError, match="disk_resource"):
        cluster_settings("slurm", options, None, None, None, None, None)
    config.write_text("[cluster]\nmemory_floor = lots\n")
    with pytest.raises(BadOptionError, match="memory_floor"):
        cluster_settings("slurm", options, None, None, None, None, None)
