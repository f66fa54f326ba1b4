"""The one road to start or continue a tree (jobtree.start) and the placement
rules it shares with the master (jobtree.placement), in-process."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

import jobtree.batch
from jobtree import ResourceError, Target
from jobtree.batch import BatchSystem
from jobtree.jobstore import JobStore
from jobtree.master import Master
from jobtree.options import default_options, resolve
from jobtree.paths import TreePaths
from jobtree.placement import default_resources, route, too_big
from jobtree.resources import Resources
from jobtree.start import Pipeline, root_job, start_tree
from jobtree.tree import batch_workdir

HERE = Path(__file__).resolve().parent
G = 1024 ** 3


class Root(Target):
    def __init__(self, **resources: Any) -> None:
        Target.__init__(self, **resources)

    def run(self) -> None:
        pass


class Limited:
    """A stand-in batch system with limits (only what placement looks at)."""

    def __init__(self, name: str, cpu: float | None, memory: int | None) -> None:
        self.name = name
        self._limits = Resources(cpu=cpu, memory=memory)

    def limits(self) -> Resources:
        return self._limits


def _config(**options: Any) -> Any:
    namespace = default_options()
    namespace.jobTree = os.devnull
    for key, value in options.items():
        setattr(namespace, key, value)
    return resolve(namespace)[0]


def test_a_new_tree_on_a_cluster_creates_its_batch_systems_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The root is checked against the batch systems that then run the tree:
    the cluster config is read and the scheduler's commands are looked for
    once per start, new tree or continued."""
    monkeypatch.setenv("PATH", f"{HERE / 'fakes' / 'lsf'}{os.pathsep}{os.environ['PATH']}")
    config = tmp_path / "cluster.ini"
    config.write_text("[lsf]\nqueue = normal\n")
    created: list[BatchSystem] = []
    real_create = jobtree.batch.create

    def create(*args: Any, **kwargs: Any) -> BatchSystem:
        created.append(real_create(*args, **kwargs))
        return created[-1]

    ran: list[tuple[dict[str, BatchSystem], dict[str, Any]]] = []

    def run(master: Master) -> int:  # what the master was given; nothing is submitted
        ran.append((dict(master.batches), master.meta))
        return 0

    monkeypatch.setattr(jobtree.batch, "create", create)
    monkeypatch.setattr(Master, "run", run)
    options = default_options()
    options.jobTree = str(tmp_path / "jt")
    options.batchSystem = "lsf"
    options.clusterConfig = str(config)
    paths = TreePaths(options.jobTree)

    assert start_tree(paths, options, Pipeline.of(Root(memory="1G"))) == 0
    assert len(created) == 1 and len(ran) == 1
    batches, meta = ran[0]
    assert batches == {"main": created[0]}
    settings = created[0].settings  # type: ignore[attr-defined]
    assert settings.tree_id == meta["tree_id"] and settings.queue == "normal"
    assert settings.workdir == batch_workdir(paths, "main", "lsf")

    again = default_options()
    again.jobTree = options.jobTree  # lsf and the config are the tree's stored options
    assert start_tree(paths, again, Pipeline.of(Root())) == 0
    assert len(created) == 2 and ran[1][0] == {"main": created[1]}
    assert created[1].settings.tree_id == meta["tree_id"]  # type: ignore[attr-defined]


def test_a_root_that_fits_nowhere_creates_no_tree(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    closed: list[str] = []
    real_create = jobtree.batch.create

    def create(*args: Any, **kwargs: Any) -> BatchSystem:
        batch = real_create(*args, **kwargs)
        close = batch.close
        batch.close = lambda: (closed.append(batch.name), close())[1]  # type: ignore[method-assign]
        return batch

    monkeypatch.setattr(jobtree.batch, "create", create)
    options = default_options()
    options.jobTree = str(tmp_path / "jt")
    options.maxMemory = "1G"
    with pytest.raises(ResourceError, match="asks for 2.0 GiB of memory"):
        start_tree(TreePaths(options.jobTree), options, Pipeline.of(Root(memory="2G")))
    assert not os.path.exists(options.jobTree)
    assert closed == ["singleMachine"]


def test_jobTreeRun_needs_a_tree(tmp_path: Path) -> None:
    options = default_options()
    options.jobTree = str(tmp_path / "none")
    with pytest.raises(jobtree.TreeError, match="There is no job tree"):
        start_tree(TreePaths(options.jobTree), options)


def test_routing_to_the_big_batch_system() -> None:
    config = _config(bigMemoryThreshold="4G", bigCpuThreshold="8")
    both = {"main": None, "big": None}
    assert route(config, Resources(cpu=1, memory=G), both) == "main"
    assert route(config, Resources(cpu=1, memory=4 * G), both) == "big"
    assert route(config, Resources(cpu=8, memory=G), both) == "big"
    assert route(config, Resources(cpu=8, memory=8 * G), {"main": None}) == "main"
    assert route(_config(), Resources(cpu=64, memory=64 * G), both) == "main"


def test_the_root_is_checked_against_the_batch_system_it_goes_to() -> None:
    config = _config(bigMemoryThreshold="4G", defaultMemory="2G")
    main, big = Limited("main", 4, 3 * G), Limited("big", 32, 64 * G)
    batches: Any = {"main": main, "big": big}
    root_job(Root(memory="8G"), config, batches)  # routed to big, where it fits
    root_job(Root(), config, batches)  # the default 2G fits main
    with pytest.raises(ResourceError, match=r"more than main \(--maxCpus/--maxMemory\)"):
        root_job(Root(cpu=6), config, batches)
    with pytest.raises(ResourceError, match="more than main"):
        root_job(Root(memory="8G"), config, {"main": main})
    assert default_resources(config) == Resources(cpu=1, memory=2 * G, memory_retry_factor=2,
                                                  time_retry_factor=2)
    assert too_big(Resources(cpu=6), main) == (  # type: ignore[arg-type]
        "it asks for 6 cores; main gives at most 4 (--maxCpus)")
    assert too_big(Resources(cpu=4, memory=3 * G), main) is None  # type: ignore[arg-type]


def test_a_continued_tree_keeps_its_stored_options(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Master, "run", lambda master: 0)
    options = default_options()
    options.jobTree = str(tmp_path / "jt")
    options.retryCount = "5"
    paths = TreePaths(options.jobTree)
    assert start_tree(paths, options, Pipeline.of(Root())) == 0
    again = default_options()
    again.jobTree = options.jobTree
    assert start_tree(paths, again) == 0  # as jobTreeRun
    store = JobStore.open(paths, readonly=True)
    try:
        assert store.meta()["options"]["retryCount"] == 5
    finally:
        store.close()
