"""A fake PBS server for tests: ``qsub``, ``qstat`` and ``qdel`` of Torque or PBS Pro.

The queue is one JSON file, ``$FAKE_PBS_DIR/queue.json``, guarded by ``flock``
on ``queue.lock``. ``qsub`` records the job and starts one detached runner
(``fakepbs.py run FLAVOR SEQ INDEX``) per job or array task; the runner waits
for one of ``$FAKE_PBS_SLOTS`` slots (FIFO), really runs the script with
``/bin/sh`` in its own process group, enforces the wall time and ``qdel``
(SIGTERM, SIGKILL 2 s later), and records the exit status the real server
would. Memory is enforced as a MOM does: a job whose processes' resident memory
passes its ``mem`` (Torque ``-l mem=``, PBS Pro ``select=...:mem=``) is killed
(SIGKILL to all of them) with ``=>> PBS: job killed: mem <N>kb exceeded limit
<M>kb`` in its output and exit status -10 (Torque) or -27 (PBS Pro); a wall-time
kill says ``walltime`` there and exits -11 or -29, or
``$FAKE_PBS_WALLTIME_EXIT`` (older sites report 271, as for ``qdel``).
Finished jobs stay listed ``$FAKE_PBS_KEEP`` seconds. While the file
``$FAKE_PBS_DIR/down`` exists every command fails as against a dead server;
runners carry on. A task that starts while ``$FAKE_PBS_DIR/lose`` exists is
a lost launch: listed as running, its script never runs, until ``qdel``.
Formats and codes are documented in tests/data/*/README.md.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any
from xml.sax.saxutils import escape

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import jobprocs  # noqa: E402

SERVER = "fakeserver"
Job = dict[str, Any]
Queue = dict[str, Any]


class Fail(Exception):
    """A command error: the message for stderr and the exit status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def state_dir() -> str:
    path = os.environ.get("FAKE_PBS_DIR")
    if not path:
        raise Fail("fakepbs: FAKE_PBS_DIR is not set", 2)
    os.makedirs(os.path.join(path, "jobs"), exist_ok=True)
    return path


@contextlib.contextmanager
def locked_queue() -> Iterator[Queue]:
    """The queue, read under the lock and written back (atomically) on exit."""
    base = state_dir()
    with open(os.path.join(base, "queue.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = os.path.join(base, "queue.json")
        try:
            with open(path) as f:
                queue: Queue = json.load(f)
        except FileNotFoundError:
            queue = {"next": 1, "order": 0, "jobs": {}}
        _expire(queue)
        yield queue
        with open(path + ".tmp", "w") as f:
            json.dump(queue, f)
        os.replace(path + ".tmp", path)


def _expire(queue: Queue) -> None:
    keep, now = _env_int("FAKE_PBS_KEEP", 600), time.time()
    for seq in [s for s, job in queue["jobs"].items() if _done(job)]:
        if now - max(t["end"] or 0 for t in queue["jobs"][seq]["tasks"].values()) > keep:
            del queue["jobs"][seq]


def _done(job: Job) -> bool:
    return all(t["state"] in "CFX" for t in job["tasks"].values())


def check_up(flavor: str, command: str) -> None:
    """Fails as the real client does when the server is down (see README)."""
    if os.path.exists(os.path.join(state_dir(), "down")):
        if flavor == "torque":
            raise Fail(f"{command}: cannot connect to server {SERVER} (errno=111) "
                       "Connection refused", 111)
        if command == "qdel":
            raise Fail(f"Couldn't connect to cluster: {SERVER}", 15010 % 256)
        raise Fail(f"Connection refused\n{command}: cannot connect to server {SERVER} "
                   "(errno=15010)", 15010 % 256)


# ---------------------------------------------------------------- qsub

def _directive_args(script: str) -> list[str]:
    """The options of the ``#PBS`` lines before the first command, as qsub reads them."""
    args: list[str] = []
    with open(script) as f:
        for number, line in enumerate(f):
            text = line.strip()
            if text.startswith("#PBS"):
                args += shlex.split(text[4:], comments=True)
            elif text and not text.startswith("#") or (number > 0 and text.startswith("#!")):
                break
    return args


def _parse_options(args: list[str], flavor: str) -> tuple[dict[str, Any], list[str]]:
    opts: dict[str, Any] = {"l": {}}
    takes = set("NoejlqAtJdWvMmSrPa")
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("-") and len(arg) >= 2 and arg[1] in takes | {"V"}:
            key, value = arg[1], arg[2:]
            if key != "V" and not value:
                i += 1
                value = args[i] if i < len(args) else ""
            if key == "l":
                for item in value.split(","):
                    name, _, val = item.partition("=")
                    opts["l"][name] = val
            elif key == "W":
                name, _, val = value.partition("=")
                opts["W:" + name] = val
            else:
                opts[key] = value
        elif arg.startswith("-"):
            raise Fail(f"qsub: invalid option -- '{arg.lstrip('-')[:1]}'", 2)
        else:
            rest.append(arg)
        i += 1
    return opts, rest


def _indices(opts: dict[str, Any], flavor: str) -> tuple[list[int] | None, int | None]:
    spec = opts.get("t" if flavor == "torque" else "J")
    if spec is None:
        return None, int(opts["W:max_run_subjobs"]) if "W:max_run_subjobs" in opts else None
    spec, _, limit = spec.partition("%")
    indices: list[int] = []
    try:
        for part in spec.split(","):
            first, _, last = part.partition("-")
            last, _, step = last.partition(":")
            indices += range(int(first), int(last or first) + 1, int(step or 1))
    except ValueError:
        raise Fail(f"qsub: illegal -{'t' if flavor == 'torque' else 'J'} value", 2) from None
    if flavor == "pbspro" and len(indices) < 2:
        raise Fail("qsub: illegal -J value", 2)
    cap = limit or opts.get("W:max_run_subjobs")
    return indices, int(cap) if cap else None


def _check_limits(opts: dict[str, Any], flavor: str) -> None:
    max_ppn, max_nodes = _env_int("FAKE_PBS_MAX_PPN", 8), _env_int("FAKE_PBS_NODES", 1)
    res = opts["l"]
    spec = res.get("nodes" if flavor == "torque" else "select", "1")
    count, *props = spec.split(":")
    cpus = [p.split("=", 1)[1] for p in props if p.split("=", 1)[0] in ("ppn", "ncpus")]
    if int(count) > max_nodes or int(cpus[0] if cpus else 1) > max_ppn:
        if flavor == "torque":
            raise Fail("qsub: submit error (Job exceeds queue resource limits MSG=cannot "
                       "locate feasible nodes (nodes file is empty, all systems are busy, or "
                       "requested nodes are not available))", 15036 % 256)
        raise Fail("qsub: Job exceeds queue resource limits", 15036 % 256)


def qsub(flavor: str, argv: list[str]) -> str:
    check_up(flavor, "qsub")
    cmdline, rest = _parse_options(argv, flavor)
    if len(rest) != 1:
        raise Fail("usage: qsub [options] script", 2)
    script = os.path.abspath(rest[0])
    if not os.path.isfile(script):
        raise Fail("qsub: script file:: No such file or directory", 2)
    opts, _ = _parse_options(_directive_args(script), flavor)
    opts["l"].update(cmdline.pop("l"))
    opts.update(cmdline)
    _check_limits(opts, flavor)
    indices, cap = _indices(opts, flavor)
    walltime = opts["l"].get("walltime")
    with locked_queue() as queue:
        seq = queue["next"]
        queue["next"] += 1
        saved = os.path.join(state_dir(), "jobs", f"{seq}.SC")
        with open(script) as src, open(saved, "w") as dst:
            dst.write(src.read())
        tasks = {}
        for index in indices or [0]:
            queue["order"] += 1
            tasks[str(index)] = {"state": "Q", "start": None, "end": None, "exit": None,
                                 "pgid": None, "kill": False, "order": queue["order"]}
        queue["jobs"][str(seq)] = {
            "seq": seq, "flavor": flavor, "name": opts.get("N", os.path.basename(script)),
            "queue": opts.get("q", "batch" if flavor == "torque" else "workq"),
            "account": opts.get("A"), "script": saved, "args": " ".join(argv),
            "cwd": os.getcwd(), "env": dict(os.environ), "out": opts.get("o"),
            "err": opts.get("e"), "join": opts.get("j", "n"), "workdir": opts.get("d"),
            "resources": opts["l"], "walltime": _seconds(walltime), "array": indices is not None,
            "cap": cap, "ctime": time.time(), "tasks": tasks}
    for index in indices or [0]:
        subprocess.Popen([sys.executable, os.path.abspath(__file__), "run", flavor, str(seq),
                          str(index)], start_new_session=True, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=True)
    return f"{seq}[].{SERVER}" if indices is not None else f"{seq}.{SERVER}"


def _seconds(hms: str | None) -> float | None:
    if not hms:
        return None
    total = 0.0
    for part in hms.split(":"):
        total = total * 60 + float(part)
    return total


# ---------------------------------------------------------------- the runner

def _task_name(job: Job, index: str) -> str:
    return f"{job['name']}-{index}" if job["array"] and job["flavor"] == "torque" else job["name"]


def task_id(job: Job, index: str) -> str:
    return f"{job['seq']}[{index}].{SERVER}" if job["array"] else f"{job['seq']}.{SERVER}"


def _log_path(job: Job, index: str, stream: str) -> str:
    """Where the job's stdout (``o``) or stderr (``e``) goes, as the real server names it."""
    path = job["out" if stream == "o" else "err"]
    default = f"{job['name']}.{stream}{job['seq']}"
    if job["array"]:
        default += f"-{index}" if job["flavor"] == "torque" else f".{index}"
    if not path:
        return os.path.join(job["cwd"], default)
    path = os.path.join(job["cwd"], path.split(":", 1)[-1])
    if os.path.isdir(path):
        return os.path.join(path, default)
    if job["flavor"] == "pbspro":
        return path.replace("^array_index^", index)
    return f"{path}-{index}" if job["array"] else path


def _eligible(queue: Queue, seq: str, index: str) -> bool:
    """Whether this task is the first queued task that may start now (FIFO, slots, caps)."""
    slots = _env_int("FAKE_PBS_SLOTS", 4)
    running = [(s, t) for s, j in queue["jobs"].items() for t in j["tasks"].values()
               if t["state"] in "RE"]
    if len(running) >= slots:
        return False
    waiting = []
    for s, job in queue["jobs"].items():
        busy = sum(1 for t in job["tasks"].values() if t["state"] in "RE")
        if job["cap"] is None or busy < job["cap"]:
            waiting += [(t["order"], s, i) for i, t in job["tasks"].items() if t["state"] == "Q"]
    return bool(waiting) and min(waiting)[1:] == (seq, index)


def run(flavor: str, seq: str, index: str) -> None:
    """Waits for a slot, runs one task's script and records how it ended."""
    while True:
        with locked_queue() as queue:
            job = queue["jobs"].get(seq)
            if job is None or job["tasks"][index]["state"] != "Q":
                return  # deleted while queued
            if _eligible(queue, seq, index):
                job["tasks"][index].update(state="R", start=time.time())
                # decided while the queue is locked: one that lists the task as
                # running knows whether its launch is lost
                lost = os.path.exists(os.path.join(state_dir(), "lose"))
                break
        time.sleep(0.05)
    if lost:
        _lose(job, seq, index)
        return
    env = dict(job["env"])
    nodefile = os.path.join(state_dir(), "jobs", f"{seq}.{index}.nodes")
    with open(nodefile, "w") as f:
        f.write((socket.gethostname() + "\n") * max(1, _ppn(job)))
    env.update(PBS_JOBID=task_id(job, index), PBS_JOBNAME=_task_name(job, index),
               PBS_O_WORKDIR=job["cwd"], PBS_ENVIRONMENT="PBS_BATCH", PBS_NODEFILE=nodefile,
               PBS_QUEUE=job["queue"], PBS_O_HOST=socket.gethostname())
    if job["array"]:
        if flavor == "torque":
            env["PBS_ARRAYID"] = index
        else:
            env.update(PBS_ARRAY_INDEX=index, PBS_ARRAY_ID=f"{seq}[].{SERVER}")
    home = env.get("HOME", "/")
    start = job["workdir"] if flavor == "torque" and job["workdir"] else home
    out = open(_log_path(job, index, "o"), "a")
    err = out if job["join"] == "oe" else open(_log_path(job, index, "e"), "a")
    with out, err:
        proc = subprocess.Popen(["/bin/sh", job["script"]], cwd=start, env=env, stdout=out,
                                stderr=err, stdin=subprocess.DEVNULL, start_new_session=True)
        with locked_queue() as queue:
            queue["jobs"][seq]["tasks"][index]["pgid"] = proc.pid
        status = _watch(proc, job, seq, index, err)
    with locked_queue() as queue:
        task = queue["jobs"][seq]["tasks"][index]
        done = "C" if flavor == "torque" else ("X" if job["array"] else "F")
        task.update(state=done, end=time.time(), exit=status)
    os.unlink(nodefile)


def _lose(job: Job, seq: str, index: str) -> None:
    """A launch the server lost: the task stays running, with nothing behind it,
    until it is deleted (a node daemon that died as the job started)."""
    while True:
        with locked_queue() as queue:
            task = queue["jobs"][seq]["tasks"][index]
            if task["kill"]:
                done = "C" if job["flavor"] == "torque" else ("X" if job["array"] else "F")
                task.update(state=done, end=time.time(), exit=271)
                return
        time.sleep(0.1)


def _ppn(job: Job) -> int:
    spec = job["resources"].get("nodes" if job["flavor"] == "torque" else "select", "1")
    for prop in spec.split(":")[1:]:
        key, _, value = prop.partition("=")
        if key in ("ppn", "ncpus"):
            return int(value)
    return 1


def _memory_limit(job: Job) -> int | None:
    """The job's ``mem`` in bytes (PBS Pro: the chunk's, times the chunks), or None."""
    if job["flavor"] == "torque":
        return jobprocs.size(job["resources"].get("mem", ""), "b")
    chunks, _, rest = job["resources"].get("select", "").partition(":")
    for prop in rest.split(":"):
        key, _, value = prop.partition("=")
        if key == "mem":
            one = jobprocs.size(value, "b")
            return one * int(chunks or 1) if one is not None and chunks.isdigit() else one
    return None


def _watch(proc: subprocess.Popen[bytes], job: Job, seq: str, index: str, err: Any) -> int:
    """Waits for the script, killing its group at the wall time or on qdel, and all
    its processes over its memory; its exit status."""
    started, killed_at, reason = time.monotonic(), None, None
    memory = jobprocs.MemoryWatch(proc.pid, _memory_limit(job))
    while proc.poll() is None:
        time.sleep(0.05)
        if reason is None:
            used = memory.over()
            if used is not None:
                reason = "mem"
                err.write(f"=>> PBS: job killed: mem {used // 1024}kb exceeded limit "
                          f"{(memory.limit or 0) // 1024}kb\n")
                err.flush()
                continue
            with locked_queue() as queue:
                deleted = queue["jobs"][seq]["tasks"][index]["kill"]
            over = job["walltime"] is not None and time.monotonic() - started > job["walltime"]
            if deleted or over:
                reason = "deleted" if deleted else "walltime"
                if over:
                    used = int(time.monotonic() - started)
                    err.write(f"=>> PBS: job killed: walltime {used} exceeded limit "
                              f"{int(job['walltime'])}\n")
                    err.flush()
                _signal(proc.pid, signal.SIGTERM)
                killed_at = time.monotonic()
        elif killed_at is not None and time.monotonic() - killed_at > 2:
            _signal(proc.pid, signal.SIGKILL)
            killed_at = None
    _signal(proc.pid, signal.SIGKILL)  # whatever the script left behind in its group
    if reason == "walltime":
        return _env_int("FAKE_PBS_WALLTIME_EXIT", -11 if job["flavor"] == "torque" else -29)
    if reason == "mem":
        return -10 if job["flavor"] == "torque" else -27
    code = proc.returncode
    return 256 - code if code < 0 else code


def _signal(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


# ---------------------------------------------------------------- qdel

def qdel(flavor: str, ids: list[str]) -> int:
    check_up(flavor, "qdel")
    status = 0
    with locked_queue() as queue:
        for job_id in ids:
            seq, index = _split_id(job_id)
            job = queue["jobs"].get(seq)
            if job is None or (index is not None and index not in job["tasks"]):
                unknown = "Unknown Job Id Error" if flavor == "torque" else "Unknown Job Id"
                print(f"qdel: {unknown} {job_id}", file=sys.stderr)
                status = 15001 % 256
                continue
            tasks = [job["tasks"][index]] if index is not None else list(job["tasks"].values())
            if all(t["state"] in "CFX" for t in tasks):
                message, code = (("Invalid state for job - COMPLETE", 15016 % 256)
                                 if flavor == "torque" else ("Job has finished", 15139 % 256))
                print(f"qdel: {message} {job_id}", file=sys.stderr)
                status = code
                continue
            for task in tasks:
                if task["state"] == "Q":
                    done = "C" if flavor == "torque" else ("X" if job["array"] else "F")
                    task.update(state=done, end=time.time())
                elif task["state"] in "RE":
                    task.update(state="E", kill=True)
                    if task["pgid"]:
                        _signal(task["pgid"], signal.SIGTERM)
    return status


def _split_id(job_id: str) -> tuple[str, str | None]:
    """``17[3].server`` as ("17", "3"); ``17[].server`` and ``17.server`` as ("17", None)."""
    head = job_id.split(".", 1)[0]
    seq, _, rest = head.partition("[")
    index = rest.rstrip("]") or None
    return seq, index


# ---------------------------------------------------------------- qstat

def _hms(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600:02d}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def _attributes(job: Job, index: str | None) -> dict[str, Any]:
    """The attributes qstat -f shows of a job or task, in the server's order (a subset)."""
    flavor, host = job["flavor"], socket.gethostname()
    tasks = [job["tasks"][index]] if index is not None else list(job["tasks"].values())
    state = _state(job, tasks, index)
    owner = f"{job['env'].get('USER') or getpass.getuser()}@{host}"
    stamp = (lambda t: int(t)) if flavor == "torque" else (lambda t: time.ctime(t))
    attrs: dict[str, Any] = {"Job_Name": _task_name(job, index) if index else job["name"],
                             "Job_Owner": owner}
    started = [t["start"] for t in tasks if t["start"]]
    if started:
        end = max((t["end"] or time.time()) for t in tasks)
        attrs["resources_used"] = {"cput": "00:00:00", "mem": "0kb", "vmem": "0kb",
                                   "walltime": _hms(end - min(started))}
    attrs.update(job_state=state, queue=job["queue"], server=SERVER, Checkpoint="u",
                 ctime=stamp(job["ctime"]),
                 Error_Path=f"{host}:{_log_path(job, index or '1', 'e')}",
                 Join_Path=job["join"], Keep_Files="n", Mail_Points="a",
                 Output_Path=f"{host}:{_log_path(job, index or '1', 'o')}", Priority=0,
                 qtime=stamp(job["ctime"]), Rerunable="True",
                 Resource_List=dict(job["resources"]))
    if job["account"]:
        attrs["Account_Name"] = job["account"]
    if index is not None:
        attrs["job_array_id" if flavor == "torque" else "array_index"] = int(index)
        if flavor == "pbspro":
            attrs["array_id"] = f"{job['seq']}[].{SERVER}"
    elif job["array"] and flavor == "pbspro":
        attrs.update(array="True", array_indices_submitted=",".join(job["tasks"]))
    exits = [t["exit"] for t in tasks if t["exit"] is not None]
    if state in "CFX" and exits and (index is not None or not job["array"]):
        attrs["exit_status" if flavor == "torque" else "Exit_status"] = exits[0]
    attrs["Submit_arguments" if flavor == "pbspro" else "submit_args"] = job["args"]
    return attrs


def _state(job: Job, tasks: list[dict[str, Any]], index: str | None) -> str:
    states = {t["state"] for t in tasks}
    for code in "ERQ":
        if code in states:
            if job["array"] and index is None and job["flavor"] == "pbspro":
                return "B" if states - {"Q"} else "Q"
            return code
    return "C" if job["flavor"] == "torque" else "F"


def _rows(flavor: str, queue: Queue, ids: list[str], subjobs: bool,
          history: bool) -> list[tuple[str, Job, str | None]]:
    """The (id, job, task index) rows qstat shows; raises Fail for an unknown id."""
    rows: list[tuple[str, Job, str | None]] = []
    wanted = [_split_id(i) for i in ids] or [(s, None) for s in queue["jobs"]]
    for (seq, index), given in zip(wanted, ids or [None] * len(wanted)):
        job = queue["jobs"].get(seq)
        if job is None or (index is not None and index not in job["tasks"]):
            unknown = "Unknown Job Id Error" if flavor == "torque" else "Unknown Job Id"
            raise Fail(f"qstat: {unknown} {given}", 15001 % 256)
        if flavor == "pbspro" and not history and _done(job):
            if given is None:
                continue
            raise Fail(f"qstat: {given} Job has finished, use -x or -H to obtain historical "
                       "job information", 15139 % 256)
        if index is not None:
            rows.append((task_id(job, index), job, index))
            continue
        if not job["array"] or flavor == "pbspro" or not subjobs:
            rows.append((task_id(job, "") if not job["array"] else f"{seq}[].{SERVER}", job, None))
        if job["array"] and subjobs:
            rows += [(task_id(job, i), job, i) for i in job["tasks"]]
    return rows


def _xml(rows: list[tuple[str, Job, str | None]]) -> str:
    def element(name: str, value: Any) -> str:
        if isinstance(value, dict):
            return f"<{name}>" + "".join(element(k, v) for k, v in value.items()) + f"</{name}>"
        return f"<{name}>{escape(str(value))}</{name}>"
    body = "".join("<Job>" + element("Job_Id", job_id) + "".join(
        element(k, v) for k, v in _attributes(job, index).items()) + "</Job>"
        for job_id, job, index in rows)
    return f'<?xml version="1.0"?>\n<Data>{body}</Data>'


def _json(rows: list[tuple[str, Job, str | None]]) -> str:
    report: dict[str, Any] = {"timestamp": int(time.time()), "pbs_version": "22.05.11",
                              "pbs_server": SERVER}
    if rows:
        report["Jobs"] = {job_id: _attributes(job, index) for job_id, job, index in rows}
    return json.dumps(report, indent=4, separators=(",", ":"))


def _full(rows: list[tuple[str, Job, str | None]]) -> str:
    out = []
    for job_id, job, index in rows:
        out.append(f"Job Id: {job_id}")
        for key, value in _attributes(job, index).items():
            items = value.items() if isinstance(value, dict) else [(None, value)]
            for sub, val in items:
                out.append(f"    {key}{'.' + sub if sub else ''} = {val}")
        out.append("")
    return "\n".join(out)


def _table(rows: list[tuple[str, Job, str | None]]) -> str:
    out = ["Job ID                    Name             User            Time Use S Queue",
           "------------------------- ---------------- --------------- -------- - -----"]
    for job_id, job, index in rows:
        attrs = _attributes(job, index)
        used = attrs.get("resources_used", {}).get("cput", "0")
        out.append(f"{job_id:<25} {attrs['Job_Name'][:16]:<16} "
                   f"{attrs['Job_Owner'].split('@')[0][:15]:<15} {used:>8} "
                   f"{attrs['job_state']} {job['queue']:<5}")
    return "\n".join(out) if rows else ""


def qstat(flavor: str, argv: list[str]) -> str:
    check_up(flavor, "qstat")
    flags, ids, i = set(), [], 0
    while i < len(argv):
        if argv[i] == "-F":
            i += 1
            flags.add("json" if argv[i:i + 1] == ["json"] else "?")
        elif argv[i].startswith("-"):
            flags.update(argv[i][1:])
        else:
            ids.append(argv[i])
        i += 1
    with locked_queue() as queue:
        history = flavor == "torque" or "x" in flags
        rows = _rows(flavor, queue, ids, "t" in flags, history)
        if flavor == "torque" and "x" in flags:
            return _xml(rows)
        if flavor == "pbspro" and "json" in flags:
            return _json(rows)
        return _full(rows) if "f" in flags else _table(rows)


def main(argv: list[str]) -> int:
    """``fakepbs.py COMMAND FLAVOR ARGS...`` (COMMAND: qsub, qstat, qdel or run)."""
    command, flavor, args = argv[1], argv[2], argv[3:]
    try:
        if command == "run":
            run(flavor, *args)
            return 0
        if command == "qdel":
            return qdel(flavor, args)
        output = qsub(flavor, args) if command == "qsub" else qstat(flavor, args)
    except Fail as fail:
        print(str(fail), file=sys.stderr)
        return fail.status
    if output:
        print(output)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
