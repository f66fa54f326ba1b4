"""A fork server for singleMachine: one warm process forks a fresh child for
every job, so a tiny target pays for a fork and its own work, not for starting
Python, importing jobtree and the pipeline, and reading the tree's config.

The server imports the worker once. For each tree it serves it reads the
worker config once, gives itself the tree's environment, folder and
``sys.path`` (what every worker would do first), and imports the pipeline's
script, so its compiled code is shared by every child. A child still runs
exactly one target (and its chained follow-ons) in a process of its own.

Pipeline code changed on disk after it was imported is not used: before a
fork the server looks (at most once a second) whether any file it imported
for the pipeline changed, and if so forgets those modules, so later children
import the new code as a fresh worker would.

The server also keeps the jobs waiting for room (the master's thread, cpu
and memory limits), so that when a child ends the next job starts at once,
without a round trip to the master.

Protocol: the master writes frames, each a 4-byte big-endian length and a
pickle of a request: ``{"limits": [THREADS, CPUS, MEMORY]}`` first, then
``{"spawn": KEY, "argv": [...], "log": PATH, "job": INPUT|None, "worker":
BOOL, "cpu": C, "memory": M}`` (``INPUT`` is a worker's input, handed over
instead of a file; a plain command is exec'd) and ``{"kill": KEY}``. The
server answers one JSON object per line: ``{"started": KEY, "pid": N, "at": T}`` and,
when the job ends, ``{"exited": KEY, "code": C, "maxrss": BYTES}`` (code
None for a job killed before it started). When its input closes (the master
exited or died) the server stops its children and exits.
"""

from __future__ import annotations

import collections
import gc
import io
import json
import os
import pickle
import select
import signal
import sys
import sysconfig
import time
from typing import Any

from .supervise import KILL_GRACE, Stopping, signal_group, stop_all
from .wire import FRAME, PARENT_ARGV

#: seconds between SIGTERM and SIGKILL of children when the server stops
STOP_GRACE = 5.0
#: longest wait before the server looks for ended children anyway
REAP_EVERY = 1.0
#: seconds between looks at whether the pipeline's files changed
STALE_CHECK_EVERY = 1.0
#: set to 1 (in the master's environment) to keep the server from importing
#: the pipeline's script; read when the server starts
NO_PRELOAD = os.environ.get("JOBTREE_NO_PRELOAD") == "1"
def _become_job(log: str, close: tuple[int, ...]) -> None:
    """The start of every forked job: a session of its own, none of the
    parent's descriptors ``close`` or signal handlers, output appended to ``log``."""
    signal.set_wakeup_fd(-1)  # the parent's wake-up pipe is closed below
    os.setsid()
    for fd in close:
        os.close(fd)
    for sig in (signal.SIGCHLD, signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    out = _open_log(log)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(out)


def _open_log(log: str) -> int:
    """The job's log, opened to append; its folder (the tree's logs/) is made
    again if someone removed it. A log that cannot be opened ends the job
    (exit status 2) with a line on standard error saying why."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
    try:
        try:
            return os.open(log, flags, 0o600)
        except FileNotFoundError:
            os.makedirs(os.path.dirname(log), mode=0o700, exist_ok=True)
            return os.open(log, flags, 0o600)
    except OSError as err:
        print(f"jobtree: the job cannot open its log file {log} ({err.strerror}), so it "
              f"does not run; check that the tree's logs folder is writable.",
              file=sys.stderr, flush=True)
        raise SystemExit(2) from None


def run_child(argv: list[str], log: str, close: tuple[int, ...] = (),
              config: dict[str, Any] | None = None, job: dict[str, Any] | None = None,
              warm: bool = False) -> None:
    """Runs in a forked child: becomes a worker (in a session of its own, its
    output appended to ``log``) and never returns.

    Args:
        argv: TREE JOB ATTEMPT.
        log: the job's log file.
        close: the parent's descriptors the child must not keep.
        config: the tree's worker config, if the parent applied it already.
        job: the job's input, if it was handed over.
        warm: the parent is the fork server, whose standard input is
            /dev/null and whose (empty, line-buffered) sys.stdout and
            sys.stderr serve the child as they are once its descriptors 1 and
            2 are the log.
    """
    code = 2
    try:
        _become_job(log, close)
        if not warm:
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            os.close(devnull)
            sys.stdin = open(0, closefd=False)  # noqa: SIM115
            sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
            sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
        os.environ["JOBTREE_MASTER_PID"] = str(os.getppid())
        from .. import worker

        code = worker.main(argv, config, job)
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


def import_pipeline(script: str) -> dict[str, tuple[str, int]]:
    """Imports the pipeline's script (a file, or a module name) as workers
    would, quietly; a script that fails to import is left to each worker to
    report.

    Returns:
        the modules it imported from outside Python's own and installed
        packages: name -> (file, change time).
    """
    from .. import serialize

    before = set(sys.modules)
    saved = (os.dup(1), os.dup(2))
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    os.close(devnull)
    try:
        if script.endswith(".py"):
            serialize.import_script(script)
        else:
            serialize.load_module_attribute(script, "__name__")
    except BaseException:  # noqa: BLE001 - the workers report it
        pass
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])
    shared = tuple({sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib",
                                                       "platlib")})
    modules: dict[str, tuple[str, int]] = {}
    for name in set(sys.modules) - before:
        file = getattr(sys.modules[name], "__file__", None)
        if isinstance(file, str) and not file.startswith(shared):
            try:
                modules[name] = (file, os.stat(file).st_mtime_ns)
            except OSError:
                pass
    return modules


#: pipelines imported at start-up, before their tree was known (see main)
_early: dict[str, dict[str, tuple[str, int]]] = {}


class Pipeline:
    """What the server did once for one tree: its config, applied, and the
    pipeline's modules it imported (with their files' change times)."""

    def __init__(self, tree: str) -> None:
        from .. import worker
        from ..paths import TreePaths

        self.config = worker.read_config(TreePaths(tree))
        worker.prepare_process(self.config)
        self.modules: dict[str, tuple[str, int]] = {}
        self._checked = time.monotonic()
        script = self.config.get("preload")
        if not NO_PRELOAD and script:
            early = _early.pop(str(script), None)
            self.modules = early if early is not None else import_pipeline(str(script))
        for name in self.config.get("preload_modules") or ():  # a Pool's function's, say
            if not NO_PRELOAD:
                self.modules.update(import_pipeline(str(name)))
        gc.freeze()  # as in main(): what was imported for the pipeline is shared too

    def forget_if_changed(self) -> None:
        """Forgets the imported pipeline modules if any of their files changed."""
        now = time.monotonic()
        if not self.modules or now - self._checked < STALE_CHECK_EVERY:
            return
        self._checked = now
        for file, mtime in self.modules.values():
            try:
                changed = os.stat(file).st_mtime_ns != mtime
            except OSError:
                changed = True
            if changed:
                for name in self.modules:
                    sys.modules.pop(name, None)
                self.modules.clear()
                return


def warm(pipelines: dict[str, Pipeline | None], argv: list[str]) -> Pipeline | None:
    """The warm state for the tree of a worker command (``TREE JOB ATTEMPT``),
    made on first use and kept in ``pipelines`` (None when the config cannot
    be read: the worker then reads it itself, and says what is wrong)."""
    if len(argv) != 3:
        return None
    tree = argv[0]
    if tree not in pipelines:
        try:
            pipelines[tree] = Pipeline(tree)
        except (OSError, ValueError, KeyError):
            pipelines[tree] = None
    pipeline = pipelines[tree]
    if pipeline is not None:
        pipeline.forget_if_changed()
    return pipeline


class Server:
    """The fork server's state: the jobs it holds until they fit, and its
    children (each a job), within the limits the master gave."""

    def __init__(self, requests: int, replies: int) -> None:
        self.master_gone = False
        self.requests = requests
        self.out = os.fdopen(replies, "wb")
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        self.pipelines: dict[str, Pipeline | None] = {}
        self.pending: collections.OrderedDict[str, dict[str, Any]] = collections.OrderedDict()
        self.children: dict[int, tuple[str, float, int]] = {}  # pid: key, cpu, memory
        self.pids: dict[str, int] = {}
        self.stopping = Stopping(KILL_GRACE)  # the children being stopped
        self.threads, self.cpus, self.memory = 1, 1.0, 0
        self.cpu_used, self.memory_used = 0.0, 0
        self.environ = dict(os.environ)  # for plain commands: the master's own

    def send(self, message: dict[str, Any]) -> None:
        try:
            self.out.write(json.dumps(message).encode() + b"\n")
            self.out.flush()
        except OSError:
            self.master_gone = True  # nobody to tell; the master's restart recovers

    def handle(self, request: dict[str, Any]) -> None:
        """One request of the master: limits, a job to run, or a job to stop."""
        if "limits" in request:
            self.threads, self.cpus, self.memory = request["limits"]
        elif "spawn" in request:
            self.pending[request["spawn"]] = request
        elif "kill" in request:
            self.kill(request["kill"])

    def kill(self, key: str) -> None:
        """Stops a job: drops it if it waits, else SIGTERMs its process group
        (SIGKILL after the grace the master gave)."""
        if self.pending.pop(key, None) is not None:
            self.send({"exited": key, "code": None, "maxrss": None})
            return
        pid = self.pids.get(key)
        if pid is not None:
            self.stopping.term(pid)

    def _fits(self, request: dict[str, Any]) -> bool:
        if not self.children:
            return True  # a job within the limits always gets to run alone
        return (len(self.children) < self.threads
                and self.cpu_used + request["cpu"] <= self.cpus + 1e-9
                and self.memory_used + request["memory"] <= self.memory)

    def start_what_fits(self) -> None:
        """Starts the waiting jobs that fit, oldest first."""
        for key, request in list(self.pending.items()):
            if len(self.children) >= self.threads:
                return
            if self._fits(request):
                del self.pending[key]
                self.spawn(request)

    def _pipeline(self, argv: list[str], job: Any) -> Pipeline | None:
        """The warm state for the tree of a worker command (see :func:`warm`)."""
        return None if job is None else warm(self.pipelines, argv)

    def spawn(self, request: dict[str, Any]) -> None:
        worker = request["worker"]
        pipeline = self._pipeline(request["argv"], request.get("job")) if worker else None
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            close = (self.wake_r, self.wake_w, self.requests, self.out.fileno())
            if not worker:
                run_command(request["argv"], request["log"], close, self.environ)
            run_child(request["argv"], request["log"], close,
                      pipeline.config if pipeline else None,
                      request.get("job") if pipeline else None, warm=True)
        key = request["spawn"]
        self.children[pid] = (key, request["cpu"], request["memory"])
        self.pids[key] = pid
        self.cpu_used += request["cpu"]
        self.memory_used += request["memory"]
        self.send({"started": key, "pid": pid, "at": time.time()})

    def reap(self) -> None:
        """Reports the children that ended, and starts what fits in their place."""
        ended = False
        while self.children:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            child = self.children.pop(pid, None)
            if child is None:
                continue
            key, cpu, memory = child
            ended = True
            del self.pids[key]
            self.stopping.forget(pid)
            self.cpu_used -= cpu
            self.memory_used -= memory
            signal_group(pid, signal.SIGKILL)  # whatever the job left behind
            self.send({"exited": key, "code": os.waitstatus_to_exitcode(status),
                       "maxrss": usage.ru_maxrss * 1024})
        if ended:
            self.start_what_fits()

    def escalate(self) -> float:
        """SIGKILLs the jobs whose grace after SIGTERM is over; returns the
        seconds until the next one's is."""
        wait = self.stopping.escalate()
        return REAP_EVERY if wait is None else wait

    def stop_children(self) -> None:
        """Stops every child (SIGTERM, then SIGKILL) when the server stops."""
        self.pending.clear()
        stop_all(lambda: self.children, self._reap_a_moment, STOP_GRACE)

    def _reap_a_moment(self) -> None:
        self.reap()
        time.sleep(0.05)

    def serve(self) -> None:
        # the signals wake the loop through the pipe, written by the C handler
        # itself: a signal that comes just before select() is not missed
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, lambda *_: None)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        buffer = bytearray()
        while True:
            timeout = min(REAP_EVERY, self.escalate())
            try:
                ready, _, _ = select.select([self.requests, self.wake_r], [], [], timeout)
            except InterruptedError:
                continue
            woke = os.read(self.wake_r, 4096) if self.wake_r in ready else b""
            self.reap()
            if int(signal.SIGTERM) in woke or self.master_gone:
                break
            if self.requests in ready:
                chunk = os.read(self.requests, 1 << 20)
                if not chunk:
                    break
                buffer += chunk
                while len(buffer) >= FRAME.size:
                    (size,) = FRAME.unpack_from(buffer)
                    if len(buffer) < FRAME.size + size:
                        break
                    self.handle(pickle.loads(buffer[FRAME.size:FRAME.size + size]))
                    del buffer[:FRAME.size + size]
                self.start_what_fits()
        self.stop_children()


def run_command(argv: list[str], log: str, close: tuple[int, ...],
                environ: dict[str, str]) -> None:
    """Runs in a forked child: becomes the plain command ``argv`` (in a
    session of its own, its output appended to ``log``) and never returns."""
    try:
        _become_job(log, close)
        os.execvpe(argv[0], argv, dict(environ, JOBTREE_MASTER_PID=str(os.getppid())))
    except BaseException as err:  # noqa: BLE001 - report it in the job's log
        try:
            os.write(2, f"jobtree: cannot start {argv[0]}: {err}\n".encode())
        finally:
            os._exit(127)


def main() -> None:
    """Entry point: ``python -c 'from jobtree.batch.forkserver import main;
    main()' [SCRIPT SYS_PATH_JSON]``. Requests come on standard input and
    replies go to standard output; the server moves both off descriptors 0
    and 1, which the pipeline's code may print to.

    With SCRIPT, the server imports the pipeline at once, with SYS_PATH_JSON
    in front of its ``sys.path``, while the master is still building a new
    tree: the tree's environment is this process's own then.
    """
    from .. import worker  # noqa: F401 - imported once, shared by every child

    worker.die_with_parent(os.getppid())
    requests, replies = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    os.close(devnull)
    for stream in (sys.stdout, sys.stderr):  # as the children's, whose output goes to logs
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(line_buffering=True)
    own = sys.argv
    if PARENT_ARGV in os.environ:  # the jobs get the master's, as spawn gives
        sys.argv = json.loads(os.environ.pop(PARENT_ARGV))
    if len(own) == 3 and not NO_PRELOAD:
        script, path = own[1], json.loads(own[2])
        sys.path[:0] = [entry for entry in path if entry not in sys.path]
        _early[script] = import_pipeline(script)
    # what the server imported is shared with every child: keep the children's
    # garbage collector off it, so it is not copied page by page after fork
    gc.freeze()
    server = Server(requests, replies)  # held: no "unclosed file" warning before the exit
    server.serve()
    os._exit(0)  # no flush of a pipe whose reader may be gone


if __name__ == "__main__":
    main()
