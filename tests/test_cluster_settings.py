"""The cluster config file, the options that override it, and the job
environment: pure tests, no scheduler."""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

import pytest

from jobtree import batch as batch_systems
from jobtree.batch.jobfiles import environment_script
from jobtree.batch.settings import cluster_settings
from jobtree.errors import BadOptionError, BatchSystemError


def _options(**given: object) -> argparse.Namespace:
    values = {"clusterConfig": None, "queue": None, "account": None, "maxJobs": None,
              "submitRate": None, "packTime": None}
    values.update(given)
    return argparse.Namespace(**values)


def test_config_sections_and_options_layer(tmp_path: Path) -> None:
    config = tmp_path / "cluster.ini"
    config.write_text("[cluster]\nqueue = general\naccount = lab\nmax_jobs = 300\n"
                      "extra = --constraint=avx2\n  --qos=normal\n"
                      "prologue = module load python\nmax_memory = 64G\npack_time = 2m\n"
                      "[slurm]\npartition = short\n[gridEngine]\nparallel_environment = mpi\n")
    slurm = cluster_settings("slurm", _options(clusterConfig=str(config), maxJobs=50),
                             "/w", "abcdef0123456789", None, None, None)
    assert (slurm.queue, slurm.account, slurm.max_jobs) == ("short", "lab", 50)
    assert slurm.extra == ("--constraint=avx2", "--qos=normal")
    assert slurm.prologue == ("module load python",)
    assert slurm.max_memory == 64 * 2**30 and slurm.pack_time == 120
    assert slurm.job_name == "jt-abcdef0123" and slurm.workdir == "/w"
    sge = cluster_settings("gridEngine", _options(clusterConfig=str(config), queue="all.q"),
                           None, None, 4, None, None)
    assert (sge.queue, sge.parallel_environment, sge.max_jobs) == ("all.q", "mpi", 4)


@pytest.mark.parametrize("text,words", [
    ("[cluster]\nqueu = x\n", ["unknown key 'queu'", "Known keys"]),
    ("[cluster]\nmax_jobs = none\n", ["max_jobs", "'none'"]),
    ("[cluster]\narrays = maybe\n", ["arrays", "yes or no"]),
    ("not ini at all\n", ["not a valid INI file"]),
])
def test_a_bad_config_file_is_a_clear_error(tmp_path: Path, text: str,
                                            words: list[str]) -> None:
    config = tmp_path / "cluster.ini"
    config.write_text(text)
    with pytest.raises(BadOptionError) as caught:
        cluster_settings("slurm", _options(clusterConfig=str(config)), None, None, None,
                         None, None)
    assert all(word in str(caught.value) for word in words), caught.value
    assert str(config) in str(caught.value)


def test_a_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BadOptionError, match="cannot be read"):
        cluster_settings("lsf", _options(clusterConfig=str(tmp_path / "none.ini")), None,
                         None, None, None, None)


def test_batch_system_names_and_aliases() -> None:
    for alias, name in [("sge", "gridEngine"), ("PBS", "torque"), ("openpbs", "pbspro"),
                        ("Slurm", "slurm"), ("lsf", "lsf"), ("single_machine", "singleMachine")]:
        assert batch_systems.canonical_name(alias) == name
    with pytest.raises(BatchSystemError, match="slurm, gridEngine, torque, pbspro, lsf"):
        batch_systems.canonical_name("condor")


def test_the_job_environment_script_keeps_values_exactly(tmp_path: Path) -> None:
    environ = {"PLAIN": "a b", "QUOTES": "it's \"x\" $HOME `date`", "NEWLINE": "1\n2",
               "SLURM_JOB_ID": "7", "TMPDIR": "/node", "BASH_FUNC_f%%": "() { :; }",
               "PWD": "/elsewhere"}
    script = tmp_path / "env.sh"
    script.write_text(environment_script(environ))
    shown = subprocess.run(["/bin/sh", "-c", f". {script}; env"], capture_output=True,
                           text=True, env={"PATH": "/usr/bin:/bin"}, check=True).stdout
    assert "PLAIN=a b\n" in shown and "QUOTES=it's \"x\" $HOME `date`\n" in shown
    assert "NEWLINE=1\n2\n" in shown
    assert "SLURM_JOB_ID" not in shown and "TMPDIR=/node" not in shown
    assert "/elsewhere" not in shown


@pytest.mark.parametrize("name,command", [("slurm", "squeue"), ("gridEngine", "qstat"),
                                          ("torque", "qstat"), ("pbspro", "qstat"),
                                          ("lsf", "bjobs")])
def test_a_scheduler_whose_commands_are_missing_is_a_clear_error(
        name: str, command: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(BatchSystemError) as caught:
        batch_systems.create(name, options=_options())
    assert f"{command} is not on PATH" in str(caught.value) and "login node" in str(caught.value)
