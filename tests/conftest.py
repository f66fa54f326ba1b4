"""Helpers shared by the tests: running pipeline scripts and the commands."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
PIPELINES = HERE / "pipelines"

# The tests of Ctrl-C send SIGINT to the processes they start, as a terminal
# does. A suite started in the background of a shell without job control
# (`(cmd &)`, nohup) inherits SIGINT ignored, and so would every process it
# starts, which then never sees the Ctrl-C. A handler of our own is reset to
# the default in the programs we start, so they get it as from a terminal.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def run_script(script: str | Path, *args: str, timeout: float = 300,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Runs a pipeline script (a file under tests/pipelines or a path) with Python."""
    path = Path(script)
    if not path.is_absolute():
        path = PIPELINES / path
    return subprocess.run([sys.executable, str(path), *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def run_command(name: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Runs one of the jobTree commands (jobtree.cli.<name>)."""
    return subprocess.run([sys.executable, "-m", f"jobtree.cli.{name}", *args],
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def tree_dir(tmp_path: Path) -> Path:
    """A --jobTree path that does not exist yet."""
    return tmp_path / "jobTree"


#: the command each real scheduler's tests need on PATH
SCHEDULER_COMMANDS = {"slurm": "sbatch", "gridEngine": "qsub", "drmaa": "qsub"}


def require_scheduler(name: str) -> None:
    """Skips the test when the real scheduler ``name`` is not running here,
    except in CI, which starts every scheduler: there it fails the test."""
    import shutil

    command = SCHEDULER_COMMANDS.get(name)
    missing = None
    if name == "drmaa":
        _drmaa_environment()
        import importlib.util

        if importlib.util.find_spec("drmaa") is None:
            missing = "the drmaa package is not installed (pip install -e '.[test]')"
        elif not os.path.exists(os.environ["DRMAA_LIBRARY_PATH"]):
            missing = (f"there is no DRMAA library at {os.environ['DRMAA_LIBRARY_PATH']} "
                       f"(../shared/cluster/start-sge.sh installs Grid Engine's)")
    if missing is None and (command is None or shutil.which(command) is not None):
        return
    message = missing or (f"{name} is not running here ({command} is not on PATH); start "
                          f"it with ../shared/cluster/start-*.sh")
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


#: what a DRMAA session needs here: Grid Engine's DRMAA library and settings
DRMAA_ENV = {"DRMAA_LIBRARY_PATH": "/usr/lib/gridengine-drmaa/lib/libdrmaa.so.1.0",
             "SGE_ROOT": "/var/lib/gridengine", "SGE_CELL": "default"}


def _drmaa_environment() -> None:
    """Points DRMAA at Grid Engine's library (unless the environment does),
    for this process and the pipelines it starts."""
    for key, value in DRMAA_ENV.items():
        os.environ.setdefault(key, value)


def memory_cgroups() -> Path:
    """Where a test may make memory cgroups (v1, as root) to have the kernel's
    OOM killer stop a process over a limit; skips elsewhere, but fails in CI,
    whose machines have them."""
    folder = Path("/sys/fs/cgroup/memory")
    if os.geteuid() == 0 and (folder / "cgroup.procs").exists() and os.access(folder, os.W_OK):
        return folder
    message = "no writable cgroup v1 memory controller here (it needs root)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def quick_cluster_config(folder: Path) -> Path:
    """A cluster config file that polls often, for quick tests."""
    config = folder / "cluster.ini"
    config.write_text("[cluster]\npoll_interval = 1\nexit_grace = 3\nsubmit_rate = 50\n"
                      "command_timeout = 30\n")
    return config


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
