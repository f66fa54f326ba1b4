"""The remote side of a tree reached over ssh: start a master detached from the
ssh session, and follow what it prints.

``python -m jobtree.cli.agent`` is run by jobtree itself, through ssh, on the
machine where a remote tree lives (see :mod:`jobtree.remote`); users do not
call it. Each master it starts is one *run* of the tree, kept in
``DIR/remote/runs/``:

- ``N.json``: the run's command line, its supervisor's pid, when it started;
- ``N.log``: everything the master printed (its log and progress);
- ``N.exit``: its exit status, written when it ends.

The supervisor is a process in a session of its own, so a closed laptop or a
dropped connection stops nothing: it runs the master, waits for it and writes
``N.exit``. ``follow`` prints a run's log as it grows and exits with the
run's status; it stops as soon as the ssh session that asked goes away.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import select
import signal
import subprocess
import sys
import tarfile
import time
import traceback
from typing import Any

from .._version import __version__
from ..batch.supervise import alive as _alive
from ..paths import REMOTE_FOLDER, write_atomic
from ..remote import PYTHON_MARK, TREE_MARK

#: how often a follower looks for more output (seconds)
POLL = 0.2


def _runs(tree: str) -> str:
    return os.path.join(tree, REMOTE_FOLDER, "runs")


def _numbers(tree: str) -> list[int]:
    try:
        names = os.listdir(_runs(tree))
    except FileNotFoundError:
        return []
    return sorted(int(name[:-5]) for name in names
                  if name.endswith(".json") and name[:-5].isdigit())




def run_state(tree: str, number: int) -> dict[str, Any]:
    """What is known of run ``number``: its record, and ``exit`` (its status,
    or None while it runs) and ``alive`` (whether its supervisor runs)."""
    base = os.path.join(_runs(tree), str(number))
    with open(base + ".json", encoding="utf-8") as handle:
        record: dict[str, Any] = json.load(handle)
    try:
        with open(base + ".exit", encoding="ascii") as handle:
            record["exit"] = int(handle.read().strip() or 2)
    except FileNotFoundError:
        record["exit"] = None
    record["alive"] = record["exit"] is None and _alive(int(record.get("pid") or 0) or -1)
    record["run"] = number
    return record


def _stage(tree: str, data: bytes) -> None:
    """Unpacks the pipeline's files (a tar from the local side) into
    ``DIR/remote/pipeline``: plain files only, nothing outside that folder."""
    target = os.path.join(tree, REMOTE_FOLDER, "pipeline")
    os.makedirs(target, mode=0o700, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
        for member in archive.getmembers():
            name = os.path.normpath(member.name)
            if not member.isfile() or name.startswith(("/", "..")) or "\x00" in name:
                raise SystemExit(f"jobtree: refused the pipeline file {member.name!r}")
            path = os.path.join(target, name)
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            source = archive.extractfile(member)
            if source is None:
                continue
            write_atomic(path, source.read(), sync=False)


def _new_run(tree: str) -> tuple[int, str]:
    """Takes the next run number (an exclusive create, safe against a race)."""
    os.makedirs(_runs(tree), mode=0o700, exist_ok=True)
    number = (_numbers(tree) or [0])[-1] + 1
    while True:
        base = os.path.join(_runs(tree), str(number))
        try:
            os.close(os.open(base + ".json", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            return number, base
        except FileExistsError:
            number += 1


def _supervise(base: str, argv: list[str]) -> None:
    """In the detached supervisor: runs the master, records its exit status."""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    env = dict(os.environ, PYTHONUNBUFFERED="1", JOBTREE_REMOTE_RUN=base)
    status = 2
    with open(base + ".log", "ab", buffering=0) as log:
        try:
            child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=subprocess.STDOUT, env=env,
                                     cwd=os.path.expanduser("~"))
        except OSError as err:
            log.write(f"jobtree: could not start {argv[0]}: {err}\n".encode())
        else:
            _write(base + ".json", {"argv": argv, "pid": os.getpid(), "master": child.pid,
                                    "started": time.time()})
            while True:
                try:
                    status = child.wait()
                    break
                except InterruptedError:
                    continue
            status = status if status >= 0 else 128 - status  # killed by a signal
    _write(base + ".exit", status)


def _write(path: str, value: Any) -> None:
    """Writes ``value`` as JSON to ``path``, whole or not at all."""
    write_atomic(path, json.dumps(value).encode())


def launch(tree: str, argv: list[str], stage: bool, follow_running: bool) -> dict[str, Any]:
    """Starts a master detached from this session, or names the one that runs."""
    os.makedirs(tree, mode=0o700, exist_ok=True)
    numbers = _numbers(tree)
    if numbers:
        last = run_state(tree, numbers[-1])
        if last["alive"] and follow_running:
            return {"run": last["run"], "already": True, "started": last.get("started"),
                    "version": __version__}
    if stage:
        _stage(tree, sys.stdin.buffer.read())
    argv = [part.replace(TREE_MARK, tree).replace(PYTHON_MARK, sys.executable)
            for part in argv]
    number, base = _new_run(tree)
    _write(base + ".json", {"argv": argv, "pid": 0, "started": time.time()})
    first = os.fork()
    if first == 0:  # the intermediate child: a new session, then the supervisor
        try:
            os.setsid()
            if os.fork() == 0:
                devnull = os.open(os.devnull, os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(devnull, fd)
                try:
                    _supervise(base, argv)
                finally:
                    os._exit(0)
        finally:
            os._exit(0)
    os.waitpid(first, 0)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not run_state(tree, number).get("pid") \
            and not os.path.exists(base + ".exit"):
        time.sleep(0.02)
    return {"run": number, "already": False, "version": __version__}


def follow(tree: str, number: int | None, tail: int | None) -> int:
    """Prints run ``number``'s log (the last ``tail`` lines first, if given) as it
    grows; returns its exit status once it ends. Stops when stdin closes (the
    ssh session that asked is gone)."""
    numbers = _numbers(tree)
    if not numbers:
        print(f"jobtree: no master was started on {tree} from another machine",
              file=sys.stderr)
        return 2
    number = number or numbers[-1]
    log_path = os.path.join(_runs(tree), f"{number}.log")
    out = sys.stdout.buffer
    offset = 0
    if tail is not None:
        try:
            with open(log_path, "rb") as handle:
                data = handle.read()
            lines = data.splitlines(keepends=True)
            offset = len(data) - sum(len(line) for line in lines[-tail:])
        except FileNotFoundError:
            pass
    watch_stdin = not sys.stdin.isatty()
    while True:
        try:
            state = run_state(tree, number)
        except (FileNotFoundError, ValueError):
            time.sleep(POLL)  # the tree is being made around the folder: a moment
            continue
        try:
            with open(log_path, "rb") as handle:
                handle.seek(offset)
                chunk = handle.read()
        except FileNotFoundError:
            chunk = b""
        if chunk:
            offset += len(chunk)
            out.write(chunk)
            out.flush()
        if state["exit"] is not None and not chunk:
            return int(state["exit"])
        if state["exit"] is None and not state["alive"] and state.get("pid") and not chunk:
            time.sleep(POLL)
            if _still_unfinished(tree, number):
                print(f"jobtree: the master of run {number} stopped without an exit status "
                      f"(it was killed, or the machine restarted); continue the tree with "
                      f"jobTreeRun", file=sys.stderr)
                return 2
        if watch_stdin:
            ready, _, _ = select.select([sys.stdin], [], [], POLL)
            if ready and not os.read(sys.stdin.fileno(), 4096):
                return 0  # the asking side hung up
        else:
            time.sleep(POLL)


def pool_call(tree: str, name: str) -> int:
    """Runs one call of a remote Pool (see jobtree.remotepool) with a Pool of
    this machine over the same folder; leaves its result, pickled, beside it."""
    import cloudpickle

    from .. import Pool
    from ..paths import POOL_MARKER
    from ..pooltree import PoolError

    pipeline = os.path.join(tree, REMOTE_FOLDER, "pipeline")
    sys.path.insert(0, pipeline)  # functions imported from the caller's modules
    with open(os.path.join(pipeline, "calls", f"{name}.pkl"), "rb") as handle:
        call = cloudpickle.loads(handle.read())
    marker = os.path.join(tree, POOL_MARKER)
    if not os.path.exists(marker) and not set(os.listdir(tree)) - {REMOTE_FOLDER}:
        write_atomic(marker, json.dumps({"kind": "jobtree pool",
                                         "created": time.time()}).encode())
    settings = {k: v for k, v in call["settings"].items() if v is not None}
    positional = [settings.pop(k, None) for k in ("processes", "initializer")]
    positional += [settings.pop("initargs", ()), settings.pop("maxtasksperchild", None)]
    result: tuple[str, Any]
    try:
        with Pool(*positional, jobTree=tree, **settings) as pool:
            args, kwargs = call["args"], call["kwargs"]
            if call["method"] == "apply":
                value = pool.apply_async(call["func"], *args, **kwargs).get()
            else:
                value = getattr(pool, call["method"])(call["func"], *args, **kwargs)
        result = ("ok", value)
    except Exception as err:  # noqa: BLE001 - it goes back to the caller
        result = ("error", err, "".join(traceback.format_exception(err)))
    try:
        data = cloudpickle.dumps(result)
        cloudpickle.loads(data)  # what cannot come back is said here, not there
    except Exception as err:  # noqa: BLE001
        data = cloudpickle.dumps(("error", PoolError(
            f"The remote call's {'result' if result[0] == 'ok' else 'exception'} "
            f"({result[1]!r:.200}) cannot be pickled to come back: {type(err).__name__}: "
            f"{err}", tree)))
    write_atomic(os.path.join(pipeline, "calls", f"{name}.out"), data)
    return 0 if result[0] == "ok" else 1


def pool_result(tree: str, name: str) -> int:
    """Prints the pickled result of a remote Pool's call, and removes the call."""
    base = os.path.join(tree, REMOTE_FOLDER, "pipeline", "calls", name)
    try:
        with open(base + ".out", "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        print(f"jobtree: the call {name} left no result in {tree}", file=sys.stderr)
        return 1
    sys.stdout.buffer.write(data)
    sys.stdout.flush()
    for suffix in (".out", ".pkl"):
        try:
            os.unlink(base + suffix)
        except FileNotFoundError:
            pass
    return 0


def _still_unfinished(tree: str, number: int) -> bool:
    try:
        return run_state(tree, number)["exit"] is None
    except (FileNotFoundError, ValueError):
        return False


def main(argv: list[str] | None = None) -> int:
    """``launch`` or ``follow``; prints JSON (launch) or the run's log (follow)."""
    parser = argparse.ArgumentParser(prog="python -m jobtree.cli.agent")
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("launch")
    start.add_argument("--dir", required=True)
    start.add_argument("--stage", action="store_true")
    start.add_argument("--followRunning", action="store_true")
    start.add_argument("argv", nargs=argparse.REMAINDER)
    watch = commands.add_parser("follow")
    watch.add_argument("--dir", required=True)
    watch.add_argument("--run", type=int)
    watch.add_argument("--tail", type=int)
    for command in ("poolcall", "poolresult"):
        call = commands.add_parser(command)
        call.add_argument("--dir", required=True)
        call.add_argument("--call", required=True)
    options = parser.parse_args(argv)
    tree = os.path.abspath(os.path.expanduser(options.dir))
    if options.command == "poolcall":
        return pool_call(tree, options.call)
    if options.command == "poolresult":
        return pool_result(tree, options.call)
    if options.command == "launch":
        command = options.argv[1:] if options.argv[:1] == ["--"] else options.argv
        print(json.dumps(launch(tree, command, options.stage, options.followRunning)))
        return 0
    try:
        return follow(tree, options.run, options.tail)
    except (BrokenPipeError, KeyboardInterrupt):
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
