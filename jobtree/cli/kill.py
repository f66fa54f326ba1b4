"""jobTreeKill: stop the master of a tree and every job it issued, leaving the
tree restartable with jobTreeRun.

The request is the file ``control/kill`` in the tree, which the master looks
for every few seconds wherever it runs; a master on this host is also sent
SIGTERM, so it stops at once. Either way the master kills its jobs, puts them
back to ready (no try is counted) and releases the tree; this command waits
for that.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import time

from ..errors import JobTreeError
from ..jobstore import JobState
from ..paths import TreePaths, write_atomic
from ..resources import format_duration, parse_duration
from .common import (MasterState, cancel_scheduler_jobs, entry_point, find_master, one_tree,
                     open_tree, plural, tree_argument, tree_paths)

#: default seconds to wait for the master to stop
DEFAULT_TIMEOUT = 60.0
#: seconds between looks at the lock while waiting
POLL_EVERY = 0.2


class KillTimeoutError(JobTreeError):
    """The master did not stop in time; it may still stop later."""


def _issued_count(paths: TreePaths) -> int:
    index = open_tree(paths)
    try:
        return index.counts()[JobState.ISSUED]
    finally:
        index.close()


def request_stop(paths: TreePaths, master: MasterState) -> list[str]:
    """Asks the master to stop: the kill file, and SIGTERM if it runs on this host.

    Returns:
        how the master was asked, for the report.
    """
    os.makedirs(paths.control, exist_ok=True)
    request = {"host": socket.gethostname(), "pid": os.getpid(), "at": time.time()}
    write_atomic(paths.kill_request, json.dumps(request).encode())
    how = [f"wrote {os.path.relpath(paths.kill_request, paths.root)}"]
    pid = master.local_pid
    if pid is None and master.host == socket.gethostname():
        pid = master.pid
    if pid:
        try:
            os.kill(pid, signal.SIGTERM)
            how.append(f"sent pid {pid} SIGTERM")
        except ProcessLookupError:
            pass  # it has just ended
        except PermissionError:
            how.append(f"could not signal pid {pid} (not yours)")
    return how


def wait_until_free(paths: TreePaths, timeout: float) -> bool:
    """Waits until no master holds the tree; False if it still does after ``timeout``."""
    deadline = time.monotonic() + timeout
    while find_master(paths).running:
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_EVERY)
    return True


def _positive_duration(text: str) -> float:
    try:
        seconds = parse_duration(text, "--timeout")
    except JobTreeError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    if not seconds:
        raise argparse.ArgumentTypeError("--timeout must be more than 0 seconds")
    return seconds


@entry_point
def main(argv: list[str] | None = None) -> int:
    """Stops the tree's master; exits 0 once it stopped (or if none ran)."""
    parser = argparse.ArgumentParser(
        prog="jobTreeKill",
        description="Stop the master running the job tree in --jobTree and every target "
                    "it issued. Finished targets stay done; interrupted ones go back to "
                    "ready without counting a try, so  jobTreeRun --jobTree DIR  continues "
                    "the tree. Exit status: 0 when the master stopped or none was running; "
                    "2 when it did not stop within --timeout or the tree cannot be used.")
    tree_argument(parser)
    parser.add_argument("--timeout", type=_positive_duration, default=DEFAULT_TIMEOUT,
                        metavar="TIME",
                        help="how long to wait for the master to stop: seconds or e.g. 5m "
                             f"(default: {DEFAULT_TIMEOUT:g})")
    options = parser.parse_args(argv)
    paths = one_tree(tree_paths(options.jobTree))
    open_tree(paths).close()  # checks owner, tree and format before touching anything
    master = find_master(paths)
    if not master.running:
        print(f"No master is running the job tree {paths.root}: nothing to stop.")
        for line in cancel_scheduler_jobs(paths):
            print(line)
        issued = _issued_count(paths)
        if issued:
            print(f"{plural(issued, 'target')} still marked as issued by a master that "
                  f"ended without returning them; jobTreeRun --jobTree {paths.root} will run them "
                  f"again.")
        return 0
    how = request_stop(paths, master)
    print(f"Asked the master of {paths.root} ({master.describe()}) to stop: "
          f"{' and '.join(how)}. Waiting up to {format_duration(options.timeout)} ...",
          flush=True)
    began = time.monotonic()
    if not wait_until_free(paths, options.timeout):
        where = f"host {master.host}" if master.host else "its host"
        raise KillTimeoutError(
            f"The master of {paths.root} ({master.describe()}) still holds the tree after "
            f"{format_duration(options.timeout)}. It may still be stopping its jobs (it "
            f"gives them 30 s), or it may be hung, or on a host that does not see "
            f"{paths.kill_request}. The stop request stays in place: run jobTreeKill again "
            f"to wait longer, or end process {master.pid} on {where} yourself (the tree "
            f"stays restartable either way).")
    try:
        os.unlink(paths.kill_request)
    except FileNotFoundError:
        pass
    print(f"The master stopped after {format_duration(time.monotonic() - began)}.")
    for line in cancel_scheduler_jobs(paths):
        print(line)
    issued = _issued_count(paths)
    if issued:
        print(f"{plural(issued, 'target')} still marked as issued (the master did not "
              f"return them); jobTreeRun will run them again.")
    print(f"Finished targets stay done. Continue the tree with:  "
          f"jobTreeRun --jobTree {paths.root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
