"""The job side of cluster batch systems (jobtree.batch.runner), run here
without a scheduler: claiming entries, exit files, kill requests, the hard
time limit, and the cleaning of stale local temp dirs."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from conftest import memory_cgroups

from jobtree.batch import runner, wire
from jobtree.batch.base import ExitReason
from jobtree.batch.jobfiles import Entry, update_from_exit


def _manifest(tmp_path: Path, entries: list[dict[str, Any]], **extra: Any) -> Path:
    exit_dir = tmp_path / "exit"
    exit_dir.mkdir(exist_ok=True)
    manifest = {"entries": entries, "exit_dir": str(exit_dir), "index_variable": "TASK",
                "pack": True, "pack_time": 60, "tree_id": None, **extra}
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(manifest))
    return path


def _entry(tmp_path: Path, key: str, script: str, time_limit: float | None = None
           ) -> dict[str, Any]:
    return {"key": key, "argv": ["/bin/sh", "-c", script], "log": str(tmp_path / f"{key}.log"),
            "time_limit": time_limit, "worker": False}


def _run_tasks(manifest: Path, tasks: int) -> None:
    processes = [subprocess.Popen([sys.executable, "-m", "jobtree.batch.runner", str(manifest)],
                                  env=dict(os.environ, TASK=str(i))) for i in range(1, tasks + 1)]
    for process in processes:
        assert process.wait(timeout=60) == 0


def _exit(tmp_path: Path, key: str) -> dict[str, Any]:
    record = wire.read_marker(str(tmp_path / "exit" / f"{key}.exit"))
    assert record is not None
    return record


def test_packing_tasks_run_every_entry_once(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    entries = [_entry(tmp_path, f"{i}.1", f"echo $$ > {runs}/{i}.$$; exit {i % 3}")
               for i in range(12)]
    _run_tasks(_manifest(tmp_path, entries), tasks=3)
    for i in range(12):
        assert len(list(runs.glob(f"{i}.*"))) == 1, f"entry {i} ran {list(runs.glob(f'{i}.*'))}"
        record = _exit(tmp_path, f"{i}.1")
        assert record["code"] == i % 3 and record["task"] in (1, 2, 3)
        claimed = wire.read_marker(str(tmp_path / "exit" / f"{i}.1.run"))
        assert claimed["task"] == record["task"]


def test_an_entry_claimed_by_a_kill_does_not_run(tmp_path: Path) -> None:
    entries = [_entry(tmp_path, "1.1", f"touch {tmp_path}/ran")]
    manifest = _manifest(tmp_path, entries, pack=False)
    assert wire.claim(str(tmp_path / "exit"), "1.1", {"killed": True})
    _run_tasks(manifest, tasks=1)
    assert not (tmp_path / "ran").exists()
    assert not (tmp_path / "exit" / "1.1.exit").exists()


def test_kill_requests_and_the_time_limit_stop_an_entry(tmp_path: Path) -> None:
    entries = [_entry(tmp_path, "1.1", "sleep 30"), _entry(tmp_path, "2.1", "sleep 30", 1.0)]
    manifest = _manifest(tmp_path, entries, pack=False)
    (tmp_path / "exit" / "1.1.kill").write_text("kill")
    began = time.monotonic()
    _run_tasks(manifest, tasks=2)
    assert time.monotonic() - began < 15
    assert _exit(tmp_path, "1.1")["reason"] == "killed"
    timed_out = _exit(tmp_path, "2.1")
    assert timed_out["reason"] == "time_limit" and timed_out["code"] != 0
    assert timed_out["limit"] == 1.0


def test_an_old_manifest_walltime_is_an_estimate_and_stops_nothing(tmp_path: Path) -> None:
    """A manifest written before timeLimit existed gave the estimate as
    ``walltime``: the runner no longer stops an entry at it."""
    entry = {**_entry(tmp_path, "1.1", "sleep 2; exit 3"), "walltime": 0.5}
    del entry["time_limit"]
    _run_tasks(_manifest(tmp_path, [entry], pack=False), tasks=1)
    record = _exit(tmp_path, "1.1")
    assert record["code"] == 3 and record["reason"] is None, record


def test_a_command_that_cannot_start_exits_127(tmp_path: Path) -> None:
    entry = {"key": "1.1", "argv": [str(tmp_path / "missing")], "log": str(tmp_path / "l"),
             "time_limit": None, "worker": False}
    _run_tasks(_manifest(tmp_path, [entry], pack=False), tasks=1)
    assert _exit(tmp_path, "1.1")["code"] == 127
    assert "cannot start" in (tmp_path / "l").read_text()


def test_stale_local_temp_dirs_are_cleaned(tmp_path: Path) -> None:
    root = tmp_path / "local"
    stale, fresh, held = (root / n for n in ("1.1", "2.1", "3.1"))
    for folder in (stale, fresh, held):
        (folder / "0").mkdir(parents=True)
    old = time.time() - 2 * runner.STALE_AFTER
    os.utime(stale, (old, old))
    os.utime(held, (old, old))
    fd = os.open(held, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # a worker of another task on this node runs
    try:
        # flock locks are per open file: the cleaner, in another process, must see it
        subprocess.run([sys.executable, "-c", "import sys; from jobtree.batch.runner import "
                        "clean_stale; clean_stale(sys.argv[1])", str(root)], check=True)
    finally:
        os.close(fd)
    assert not stale.exists() and fresh.exists() and held.exists()


def _wait_for(path: Path) -> None:
    """Waits (bounded) for a file to appear: the entry has started."""
    for _ in range(600):
        if path.exists():
            return
        time.sleep(0.05)
    raise AssertionError(f"{path} never appeared")


def test_the_wall_time_warning_stops_claiming_but_not_the_running_entry(
        tmp_path: Path) -> None:
    # the entry sends its runner what --signal=B:USR1@N sends, then goes on:
    # the runner handles it before it sees the entry end
    entries = [_entry(tmp_path, "1.1", "kill -USR1 $PPID; sleep 0.2; exit 3"),
               _entry(tmp_path, "2.1", "exit 0")]
    _run_tasks(_manifest(tmp_path, entries), tasks=1)
    record = _exit(tmp_path, "1.1")
    assert record["code"] == 3 and record.get("reason") is None  # it ran to its end
    assert not (tmp_path / "exit" / "2.1.run").exists()  # nothing claimed after the warning


def test_a_stop_records_what_the_task_output_said(tmp_path: Path) -> None:
    out = tmp_path / "task.out"
    entries = [_entry(tmp_path, "1.1", f": > {tmp_path}/started; sleep 30")]
    with open(out, "w") as handle:
        handle.write("slurmstepd: error: *** JOB 7 ON n1 CANCELLED AT 2026-12-03T16:23:32 "
                     "DUE TO JOB REQUEUE ***\n")
        handle.flush()
        process = subprocess.Popen([sys.executable, "-m", "jobtree.batch.runner",
                                    str(_manifest(tmp_path, entries))],
                                   env=dict(os.environ, TASK="1"), stdout=handle)
        _wait_for(tmp_path / "started")
        process.terminate()
        assert process.wait(timeout=60) == 0
    record = _exit(tmp_path, "1.1")
    assert record["reason"] == "killed" and "DUE TO JOB REQUEUE" in record["said"]


def test_a_requeued_task_gives_up_what_an_earlier_incarnation_claimed(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    entries = [_entry(tmp_path, f"{i}.1", f": > {runs}/{i}") for i in range(4)]
    manifest = _manifest(tmp_path, entries)
    exit_dir = str(tmp_path / "exit")
    # the first incarnation of task 2 finished 0.1, claimed 1.1 and died with
    # its node; task 1 claimed 2.1 and still runs it
    for key, task in (("0.1", 2), ("1.1", 2), ("2.1", 1)):
        assert wire.claim(exit_dir, key, {"task": task, "host": "old", "started": 1.0})
    (tmp_path / "exit" / "0.1.exit").write_text(json.dumps({"code": 0}))
    process = subprocess.run([sys.executable, "-m", "jobtree.batch.runner", str(manifest)],
                             env=dict(os.environ, TASK="2", SLURM_RESTART_COUNT="1"))
    assert process.returncode == 0
    assert _exit(tmp_path, "0.1") == {"code": 0}  # its own outcome stays
    given_up = _exit(tmp_path, "1.1")
    assert given_up["reason"] == "requeued" and given_up["claimed_on"] == "old"
    assert not (tmp_path / "exit" / "2.1.exit").exists()  # another task's: left alone
    assert sorted(p.name for p in runs.iterdir()) == ["3"]  # only the unclaimed one ran
    # a first start (no restart count) gives up nothing
    assert not runner.restarted({"SLURM_RESTART_COUNT": "0"})
    assert runner.restarted({"LSB_RESTART": "Y"}) and runner.restarted({"RESTARTED": "1"})


def test_an_entry_the_kernel_oom_kills_is_out_of_memory(tmp_path: Path) -> None:
    """As on a cluster that enforces memory with cgroups: the kernel's OOM
    killer SIGKILLs the target (here, in a memory cgroup of 64 MiB) and the
    runner lives on; its exit file says so, and the update is out of memory."""
    group = memory_cgroups() / f"jobtree-test-runner-{os.getpid()}"
    script = (f"mkdir -p {group} && echo {64 * 2 ** 20} > {group}/memory.limit_in_bytes && "
              f"echo $$ > {group}/cgroup.procs && exec {sys.executable} -c "
              f"'b = bytearray(256 * 2 ** 20); b[::4096] = bytes(len(b[::4096]))'")
    try:
        _run_tasks(_manifest(tmp_path, [_entry(tmp_path, "1.1", script)]), tasks=1)
    finally:
        group.rmdir()
    record = _exit(tmp_path, "1.1")
    assert (record["code"], record["reason"]) == (-signal.SIGKILL, "memory"), record
    entry = Entry("1.1", "1.1", [], "log", None, None, True)  # type: ignore[arg-type]
    update = update_from_exit(entry, record, "42")
    assert update.reason is ExitReason.MEMLIMIT and "out-of-memory killer" in (update.message or "")
