"""A fork server for singleMachine: one process that has imported the worker
forks a fresh child for every job, so a tiny target does not pay for starting
Python and importing jobtree each time.

Protocol: one JSON object per line. The master writes
``{"spawn": KEY, "argv": [...], "log": PATH}``; the server answers
``{"started": KEY, "pid": N}`` and, when the child ends,
``{"exited": KEY, "code": C, "maxrss": BYTES}``. When its input closes (the
master exited or died) the server stops its children and exits.
"""

from __future__ import annotations

import gc
import json
import os
import select
import signal
import sys
import time
from typing import Any

#: seconds between SIGTERM and SIGKILL of children when the server stops
STOP_GRACE = 5.0


def run_child(argv: list[str], log: str, close: tuple[int, ...] = ()) -> None:
    """Runs in a forked child: becomes a worker (in a session of its own, its
    output appended to ``log``) and never returns. ``close``: the parent's
    descriptors the child must not keep."""
    code = 2
    try:
        os.setsid()
        for fd in close:
            os.close(fd)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.close(devnull)
        os.close(out)
        sys.stdin = open(0, closefd=False)  # noqa: SIM115
        sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
        os.environ["JOBTREE_MASTER_PID"] = str(os.getppid())
        from .. import worker

        code = worker.main(argv)
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    except BaseException:  # noqa: BLE001 - report anything, then exit
        import traceback

        traceback.print_exc()
        code = 2
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


class Server:
    """The fork server's state: its children, by pid."""

    def __init__(self) -> None:
        self.children: dict[int, str] = {}
        self.master_gone = False
        self.out = sys.stdout.buffer
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)

    def send(self, message: dict[str, Any]) -> None:
        try:
            self.out.write(json.dumps(message).encode() + b"\n")
            self.out.flush()
        except OSError:
            self.master_gone = True  # nobody to tell; the master's restart recovers



    def spawn(self, request: dict[str, Any]) -> None:
        pid = os.fork()
        if pid == 0:
            run_child(request["argv"], request["log"], (self.wake_r, self.wake_w))
        self.children[pid] = request["spawn"]
        self.send({"started": request["spawn"], "pid": pid})

    def reap(self) -> None:
        while self.children:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            key = self.children.pop(pid, None)
            if key is not None:
                self.send({"exited": key, "code": os.waitstatus_to_exitcode(status),
                           "maxrss": usage.ru_maxrss * 1024})

    def stop_children(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in list(self.children):
                try:
                    os.killpg(pid, sig)
                except (ProcessLookupError, PermissionError):
                    pass
            deadline = time.time() + STOP_GRACE
            while self.children and time.time() < deadline:
                self.reap()
                time.sleep(0.05)

    def serve(self) -> None:
        signal.signal(signal.SIGCHLD, lambda *_: os.write(self.wake_w, b"."))
        signal.signal(signal.SIGTERM, lambda *_: os.write(self.wake_w, b"T"))
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        stdin = sys.stdin.fileno()
        buffer = b""
        while True:
            try:
                ready, _, _ = select.select([stdin, self.wake_r], [], [])
            except InterruptedError:
                continue
            if self.wake_r in ready:
                woke = os.read(self.wake_r, 4096)
                self.reap()
                if b"T" in woke or self.master_gone:
                    break
            if stdin in ready:
                chunk = os.read(stdin, 65536)
                if not chunk:
                    break
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    self.spawn(json.loads(line))
        self.stop_children()


def main() -> None:
    """Entry point: ``python -m jobtree.batch.forkserver``."""
    from .. import worker  # noqa: F401 - imported once, shared by every child

    worker.die_with_parent(os.getppid())
    # what the server imported is shared with every child: keep the children's
    # garbage collector off it, so it is not copied page by page after fork
    gc.freeze()
    Server().serve()
    os._exit(0)  # no flush of a pipe whose reader may be gone


if __name__ == "__main__":
    main()
