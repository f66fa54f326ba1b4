"""What the master's side of a batch system and the job's side agree on: the
fork server's request frames, and the marker files of a cluster's exit folder.

The job's side (the fork server, the cluster node runner) runs workers, so it
imports :mod:`jobtree.worker`; the master's side (singleMachine, the cluster
base) must not. Both import this module instead, which imports nothing of
jobtree: the fork server and the node runner start as processes of their own,
and their start-up time matters.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
from typing import Any

#: the length prefix of every request sent to the fork server
FRAME = struct.Struct(">I")
#: the environment variable that gives the fork server the master's sys.argv
#: (JSON), which the jobs get as theirs, as multiprocessing's spawn does
PARENT_ARGV = "JOBTREE_PARENT_ARGV"


def frame(request: dict[str, Any]) -> bytes:
    """A request to the fork server, as the server reads it."""
    data = pickle.dumps(request, 5)
    return FRAME.pack(len(data)) + data


#: how a pilots' queue (``subs/pilots-STAMP-PID.queue``) and its claims
#: folders (``exit/pilots-STAMP-PID-N``) are named
PILOTS_PREFIX = "pilots-"


def marker(exit_dir: str, key: str, kind: str) -> str:
    """``exit/KEY.run`` (claimed), ``.exit`` (ended) or ``.kill`` (kill requested).

    The key of an entry of a pilots' queue names its claims folder too
    (``pilots-STAMP-PID-N/JOB.ATTEMPT``): the master removes such a folder
    once every entry in it is settled, so that the exit folder it lists does
    not grow with every target the pilots ran.
    """
    return os.path.join(exit_dir, f"{key}.{kind}")


def is_claims_folder(name: str) -> bool:
    """Whether a name in the exit folder is a pilots' claims folder (not a
    marker: their names all have a dot)."""
    return name.startswith(PILOTS_PREFIX) and "." not in name


def claim(exit_dir: str, key: str, record: dict[str, Any]) -> bool:
    """Claims an entry by creating its start marker (the record, one line);
    False if already claimed, or if its claims folder was removed (every
    entry in it was settled)."""
    try:
        fd = os.open(marker(exit_dir, key, "run"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except (FileExistsError, FileNotFoundError):
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")
    return True


def settle_claimed(exit_dir: str, key: str, record: dict[str, Any]) -> bool:
    """Writes the exit file of an entry this process claimed: the outcome is
    appended to the start marker as its second line, and the marker is then
    linked as ``KEY.exit``, so the exit file appears whole or not at all and
    no file is made for it (on a file system that allocates inodes slowly,
    or over NFS, a create per target costs more than the rest of a tiny
    target's bookkeeping). False if the marker is gone (the master removed
    its claims folder: it no longer waits for the entry) or the entry has an
    exit file already.
    """
    run = marker(exit_dir, key, "run")
    try:
        fd = os.open(run, os.O_WRONLY | os.O_APPEND)
    except FileNotFoundError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")
    try:
        os.link(run, marker(exit_dir, key, "exit"))
    except (FileExistsError, FileNotFoundError):
        return False
    return True


def read_marker(path: str) -> dict[str, Any] | None:
    """The record of a marker file: a start marker's claim (its first line),
    or an exit file's outcome (its last line: a runner's exit file is its
    start marker with the outcome appended); None if absent or partial."""
    try:
        with open(path, "rb") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return None
    if not lines:
        return None
    try:
        record = json.loads(lines[-1] if path.endswith(".exit") else lines[0])
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def settle_once(exit_dir: str, key: str, record: dict[str, Any]) -> bool:
    """Writes an entry's exit file unless it has one already (an exclusive
    create, whole or absent); False if it had one."""
    path = marker(exit_dir, key, "exit")
    folder, name = os.path.split(path)
    tmp = os.path.join(folder, f".tmp-{os.getpid()}-{name}")
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(record, handle)
    except FileNotFoundError:
        return False  # a claims folder the master removed: it settled the entry
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)
    return True


def queue_entry(line: bytes) -> dict[str, Any] | None:
    """The entry of one line of a pilots' queue (None if it is not one)."""
    try:
        item = json.loads(line)
    except ValueError:
        return None
    return item if isinstance(item, dict) and "key" in item else None


def queue_lines(data: bytes) -> tuple[list[bytes], int]:
    """The complete lines in ``data`` read from a pilots' queue file (a last
    line not yet complete is left out), and how many bytes they span."""
    end = data.rfind(b"\n") + 1
    return data[:end].splitlines(), end


def queue_entries(data: bytes) -> tuple[list[dict[str, Any]], int]:
    """The entries in ``data`` read from a pilots' queue file (one JSON object
    with a ``key`` a line; a last line not yet complete is left out), and how
    many bytes of ``data`` they span."""
    lines, end = queue_lines(data)
    return [item for line in lines if (item := queue_entry(line)) is not None], end
