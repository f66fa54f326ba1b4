"""Batch systems from other packages: the entry-point group
``jobtree.batch_systems``.

The example plugin of docs/plugins.md (``tests/data/plugin_example``) is
installed for real (``pip install --no-build-isolation --target``, from a
copy, so the source stays clean) and runs the sort example and the
conformance suite (:mod:`jobtree.testing`); the lookups and their errors are
checked in this process with entry points made by hand.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from jobtree import batch as batch_systems
from jobtree.batch.local import SingleMachine
from jobtree.errors import BatchSystemError

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PLUGIN = HERE / "data" / "plugin_example"


# ------------------------------------------------ lookups, in this process


class Made(SingleMachine):
    """A plugin's class that takes every argument jobtree may give."""

    name = "madeHere"

    def __init__(self, max_threads: int | None = None, max_cpus: float | None = None,
                 max_memory: int | None = None, *, workdir: str | None = None,
                 tree_id: str | None = None) -> None:
        super().__init__(max_threads=max_threads, max_cpus=max_cpus, max_memory=max_memory)
        self.workdir, self.tree_id = workdir, tree_id


def not_a_batch_system(**kwargs: Any) -> object:
    return object()


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> None:
    """Three plugins as if installed: a good one, one that cannot load, one
    that makes no batch system; and one named like a batch system of jobtree's."""
    points = [metadata.EntryPoint("madeHere", f"{__name__}:Made", batch_systems.PLUGIN_GROUP),
              metadata.EntryPoint("broken", "no_such_module_xyz:Thing",
                                  batch_systems.PLUGIN_GROUP),
              metadata.EntryPoint("notOne", f"{__name__}:not_a_batch_system",
                                  batch_systems.PLUGIN_GROUP),
              metadata.EntryPoint("slurm", f"{__name__}:Made", batch_systems.PLUGIN_GROUP)]

    def entry_points(**selection: Any) -> list[metadata.EntryPoint]:
        assert selection == {"group": batch_systems.PLUGIN_GROUP}
        return points

    monkeypatch.setattr(batch_systems.metadata, "entry_points", entry_points)


def test_a_plugin_is_found_by_its_name(registered: None) -> None:
    assert batch_systems.canonical_name("madehere") == "madeHere"
    assert "madeHere" in batch_systems.known_names()
    system = batch_systems.create("madeHere", 2, 1, None, options=object(),
                                  workdir="/tmp/w", tree_id="t1")
    try:
        assert isinstance(system, Made)
        # what its __init__ names, and nothing else (it takes no options)
        assert (system.workdir, system.tree_id) == ("/tmp/w", "t1")
        assert system.limits().cpu == 1
    finally:
        system.close()


def test_a_plugin_cannot_take_a_name_of_jobtree_s_own(registered: None) -> None:
    assert "slurm" not in batch_systems.plugins()
    assert batch_systems.canonical_name("slurm") == "slurm"


def test_an_unknown_name_lists_the_installed_plugins(registered: None) -> None:
    with pytest.raises(BatchSystemError) as err:
        batch_systems.canonical_name("nosuch")
    assert "Installed plugins: broken, madeHere, notOne." in str(err.value)
    assert "drmaa" in str(err.value)


def test_an_unknown_name_says_how_plugins_come(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batch_systems.metadata, "entry_points", lambda **kw: [])
    with pytest.raises(BatchSystemError, match="jobtree.batch_systems"):
        batch_systems.canonical_name("nosuch")


def test_a_broken_plugin_is_a_clear_error(registered: None) -> None:
    with pytest.raises(BatchSystemError, match="'broken' .* cannot be loaded: "
                                               "ModuleNotFoundError"):
        batch_systems.create("broken")
    with pytest.raises(BatchSystemError, match="not a jobtree.batch.base.BatchSystem"):
        batch_systems.create("notOne")


# ------------------------------------------- the example plugin, installed


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example plugin, installed with pip into a folder of its own."""
    if importlib.util.find_spec("wheel") is None or importlib.util.find_spec(
            "setuptools") is None:
        message = "installing the example plugin needs setuptools and wheel (the test extra)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    folder = tmp_path_factory.mktemp("plugin")
    source = folder / "source"
    shutil.copytree(PLUGIN, source)
    site = folder / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                           "--no-build-isolation", "--no-index", "--target", str(site),
                           str(source)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return site


def environment(site: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(site), str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def test_the_installed_plugin_runs_the_sort_example(installed: Path, tmp_path: Path) -> None:
    to_sort = tmp_path / "input.txt"
    lines = [f"{(i * 7919) % 1000:04d} line\n".encode() for i in range(1000)]
    to_sort.write_bytes(b"".join(lines))
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "sort.py"), "--fileToSort", str(to_sort),
         "--N", "2000", "--jobTree", str(tmp_path / "jobTree"), "--batchSystem",
         "exampleLocal"], cwd=tmp_path, env=environment(installed), capture_output=True,
        text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-3000:]
    assert to_sort.read_bytes() == b"".join(sorted(lines))


def test_an_unknown_name_names_the_installed_plugin(installed: Path, tmp_path: Path) -> None:
    (tmp_path / "input.txt").write_text("b\na\n")
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "sort.py"), "--fileToSort",
         str(tmp_path / "input.txt"), "--jobTree", str(tmp_path / "jobTree"),
         "--batchSystem", "exampleLocl"], env=environment(installed), capture_output=True,
        text=True, timeout=120)
    assert done.returncode != 0, done.stderr
    assert "Installed plugins: exampleLocal." in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_the_conformance_suite_runs_against_the_plugin(installed: Path,
                                                        tmp_path: Path) -> None:
    """What the plugin's authors run: jobtree.testing's suite, by their case
    (a few of its tests, to keep this quick; the plugin is singleMachine's
    subclass, which passes them all above)."""
    shutil.copy(PLUGIN / "check_conformance.py", tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "check_conformance.py",
         "-k", "exit_codes or kill_a_running_job or worker_writes or adopts"],
        cwd=tmp_path, env=environment(installed), capture_output=True, text=True,
        timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "5 passed" in done.stdout, done.stdout[-2000:]
