"""What the conformance suite is made of: the batch system under test
(:class:`BatchCase`), the jobs it runs (:class:`Jobs`: plain commands and
real workers on a small tree built by hand), and the checks it repeats
(:func:`collect` and friends). Imports nothing of pytest.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import logging
import os
import pickle
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .. import batch as batch_systems
from .. import serialize
from ..batch import BatchJobId, BatchSystem, JobSpec, Update
from ..batch.base import WorkerJob
from ..paths import TreePaths
from ..resources import Resources
from ..target import FunctionWrappingTarget

#: the plain job (:mod:`jobtree.testing.job`), run as a script
JOB = str(Path(__file__).resolve().parent / "job.py")
#: seconds for anything that should be quick (a job starting, a kill of a polite job)
QUICK = 15.0
#: the cluster config of the batch systems :func:`by_name` makes: they poll often
QUICK_CONFIG = ("[cluster]\npoll_interval = 1\nexit_grace = 3\nsubmit_rate = 50\n"
                "command_timeout = 30\n")

# ----------------------------------------------------------------- the cases


@dataclasses.dataclass(frozen=True)
class BatchCase:
    """One batch system under test.

    Attributes:
        name: the --batchSystem name (the test id).
        make: creates a fresh one from (max_threads, max_cpus, max_memory, folder).
        kill_grace: the most seconds a job that ignores SIGTERM lives after kill().
        latency: extra seconds to allow for a job to start or its end to be seen.
        path: a folder to put first on PATH (the fake scheduler's commands).
        directives: texts that the job script of a job asking 2 cores, 512 MiB
            and 10 minutes holds (a cluster's directives for them); none to check.
        config: more lines for the ``[cluster]`` section of its config file
            (``pilots = 3``, say).
    """

    name: str
    make: Callable[[int | None, float | None, int | None, Path], BatchSystem]
    kill_grace: float
    latency: float = 0.0
    path: str | None = None
    directives: tuple[str, ...] = ()
    config: str = ""

    @property
    def id(self) -> str:
        """The test id: the name, and ``-pilots`` for a case with pilots."""
        return f"{self.name}-pilots" if "pilots" in self.config else self.name


def cluster_files(folder: Path, more: str = "") -> tuple[str, str, str]:
    """The config file (with the lines ``more``), job folder and tree id of
    the cluster batch system in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "cluster.ini"
    config.write_text(QUICK_CONFIG + more)
    return str(config), str(folder / "batch"), f"c{abs(hash(str(folder))) % 10**9}"


def by_name(name: str, more: str = ""
            ) -> Callable[[int | None, float | None, int | None, Path], BatchSystem]:
    """The ``make`` of a :class:`BatchCase`: ``--batchSystem NAME`` (jobtree's
    own, or a plugin), with a cluster config that polls often and a job folder
    in the test's folder."""
    def make(threads: int | None, cpus: float | None, memory: int | None,
             folder: Path) -> BatchSystem:
        config, workdir, tree_id = cluster_files(folder, more)
        options = argparse.Namespace(clusterConfig=config)
        return batch_systems.create(name, threads, cpus, memory, options=options,
                                    workdir=workdir, tree_id=tree_id)
    return make


# ------------------------------------------------------------------ the jobs


class Jobs:
    """Builds JobSpecs for plain commands and for real workers under ``root``.

    Worker jobs need a tree as the worker reads it: ``config.json`` (as
    ``placement.worker_config`` makes it) and the job's input file (as
    ``Master._hand_over`` writes it). The worker never reads the index, so
    there is none.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.paths = TreePaths(str(root / "tree"))
        self._ids = itertools.count(1)
        self._tree_made = False

    def path(self, name: str) -> str:
        """A file under the test's folder (for records the jobs write)."""
        return str(self.root / name)

    def command(self, argv: Sequence[str], cpu: float = 1, name: str = "conformance",
                memory: int | None = None, time: float | None = None,
                time_limit: float | None = None) -> JobSpec:
        """A plain command."""
        job_id = next(self._ids)
        log = self.root / "logs" / f"{job_id}.log"
        log.parent.mkdir(exist_ok=True)
        return JobSpec(job_id=job_id, attempt=1, argv=list(argv),
                       resources=Resources(cpu=cpu, memory=memory, time=time,
                                           time_limit=time_limit),
                       name=f"{name}{job_id}", log_path=str(log))

    def script(self, *args: str, cpu: float = 1, memory: int | None = None,
               time: float | None = None, time_limit: float | None = None) -> JobSpec:
        """``python jobtree/testing/job.py ARGS`` (:mod:`jobtree.testing.job`)."""
        return self.command([sys.executable, JOB, *args], cpu=cpu, memory=memory, time=time,
                            time_limit=time_limit)

    def worker(self, fn: Callable[..., Any], *args: Any, cpu: float = 1,
               attempt: int = 1, memory: int | None = None) -> JobSpec:
        """A real worker running ``fn(*args)`` as its target."""
        self._make_tree()
        job_id = next(self._ids)
        resources = Resources(cpu=cpu, memory=memory)
        target = FunctionWrappingTarget(fn, args, cpu=cpu, memory=memory)
        job = {"pickle": serialize.dump_target(target), "chain": job_id,
               "resources": resources.to_dict(), "description": f"{fn.__name__}{args!r}",
               "issued_at": time.time()}
        Path(self.paths.job_input(job_id)).write_bytes(pickle.dumps(job, 5))
        worker = WorkerJob(self.paths.root, job_id, attempt)
        return JobSpec(job_id=job_id, attempt=attempt, argv=worker.argv(), worker=worker,
                       resources=resources, name=f"jt{job_id}.{attempt}",
                       log_path=self.paths.log(job_id, attempt))

    def result(self, spec: JobSpec) -> dict[str, Any] | None:
        """The result file a worker left, or None."""
        try:
            data = Path(self.paths.result(spec.job_id, spec.attempt)).read_bytes()
        except FileNotFoundError:
            return None
        return pickle.loads(data)  # type: ignore[no-any-return]

    def _make_tree(self) -> None:
        if self._tree_made:
            return
        for folder in self.paths.folders():
            os.makedirs(folder, exist_ok=True)
        sys_path = [os.path.abspath(p) for p in sys.path if p and os.path.isdir(p)]
        config = {"tree_id": f"conformance-{os.getpid()}-{id(self)}",
                  "environ": dict(os.environ), "sys_path": sys_path, "cwd": str(self.root),
                  "defaults": Resources(cpu=1).to_dict(),
                  "limits": {"cpu": None, "memory": None}, "job_time": 0.0,
                  "stats": False, "log_level": logging.INFO}
        Path(self.paths.config).write_text(json.dumps(config), encoding="utf-8")
        self._tree_made = True


# ------------------------------------------------------------------ helpers


def log_of(spec: JobSpec) -> str:
    try:
        return Path(spec.log_path).read_text(errors="replace")
    except FileNotFoundError:
        return "<no log file>"


def wait_for_record(spec: JobSpec, path: str, timeout: float) -> dict[str, Any]:
    """Waits for the JSON record a job writes when it has started."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return json.loads(Path(path).read_text())  # type: ignore[no-any-return]
        except (FileNotFoundError, ValueError):
            time.sleep(0.02)
    raise AssertionError(f"job {spec.name} did not start within {timeout:g}s; log:\n"
                         f"{log_of(spec)}")


def collect(batch: BatchSystem, ids: Sequence[BatchJobId], timeout: float,
            check_issued: bool = True) -> dict[BatchJobId, Update]:
    """Polls next_update (as the master does) until every id is reported.

    Checks along the way that each id is reported once, that no other id is
    reported, and (with ``check_issued``) that issued() lists exactly the ids
    not yet reported.
    """
    pending = set(ids)
    updates: dict[BatchJobId, Update] = {}
    deadline = time.monotonic() + timeout
    while pending:
        left = deadline - time.monotonic()
        assert left > 0, f"no update within {timeout:g}s for {sorted(pending)}"
        if check_issued:
            assert pending <= batch.issued(), (
                f"jobs not yet reported are missing from issued(): {pending - batch.issued()}")
        update = batch.next_update(min(left, 1.0))
        if update is None:
            continue
        assert update.batch_id not in updates, f"{update.batch_id} was reported twice"
        assert update.batch_id in pending, f"update for a job not waited for: {update}"
        pending.discard(update.batch_id)
        updates[update.batch_id] = update
        assert update.batch_id not in batch.issued(), f"{update.batch_id} reported, still issued"
    return updates


def only(updates: dict[BatchJobId, Update]) -> Update:
    """The one update of a one-job collect()."""
    (update,) = updates.values()
    return update


def assert_quiet(batch: BatchSystem) -> None:
    """Nothing is issued any more and no further update comes."""
    assert batch.issued() == set()
    assert batch.next_update(0.2) is None


def alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in the process group ``pgid``."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry))
    return members


def assert_gone(batch: BatchSystem, pids: Sequence[int], pgids: Sequence[int] = (),
                timeout: float = 3.0) -> None:
    """The processes (and process groups) are gone, for batch systems on this machine."""
    if not batch.local:
        return
    deadline = time.monotonic() + timeout
    while True:
        left = [p for p in pids if alive(p)] + [p for g in pgids for p in group_members(g)]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not left, f"processes left behind: {left}"
