"""A plain (non-worker) job for the batch-system conformance suite.

Usage: ``python -m jobtree.testing.job COMMAND ARGS``:

- ``sleep RECORD SECONDS [--ignore-term]``: (optionally ignore SIGTERM, then)
  write RECORD, then sleep.
- ``stamp RECORD SECONDS``: sleep, then write RECORD with the start and end times.
- ``touch PATH``: create PATH (proves the job ran).
- ``say``: write one line to standard output and one to standard error.

RECORD is a JSON file written atomically: pid, process group, host, start, end.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time


def record(path: str, **extra: float) -> None:
    data = {"pid": os.getpid(), "pgid": os.getpgid(0), "ppid": os.getppid(),
            "host": socket.gethostname(), **extra}
    with open(path + ".tmp", "w", encoding="utf-8") as handle:
        json.dump(data, handle)
    os.replace(path + ".tmp", path)


def main(argv: list[str]) -> int:
    command, args = argv[0], argv[1:]
    if command == "sleep":
        if "--ignore-term" in args:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        record(args[0])
        time.sleep(float(args[1]))
    elif command == "stamp":
        start = time.time()
        time.sleep(float(args[1]))
        record(args[0], start=start, end=time.time())
    elif command == "touch":
        record(args[0])
    elif command == "say":
        print("conformance-stdout", flush=True)
        print("conformance-stderr", file=sys.stderr, flush=True)
    else:
        print(f"job.py: unknown command {command!r}", file=sys.stderr)
        return 64
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
