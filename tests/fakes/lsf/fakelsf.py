"""A fake IBM Spectrum LSF for tests: ``bsub``, ``bjobs`` and ``bkill`` over one
locked JSON file, running the jobs for real.

The state lives in ``$FAKE_LSF_DIR`` (required): ``state.json`` guarded by an
``flock`` on ``state.lock``, plus the submitted scripts. Every job, or element
of a job array, gets one detached runner process (``fakelsf.py _run KEY``)
that waits for a free slot, runs the script with ``/bin/sh`` in its own
process group, enforces the run limit and bkill's signal sequence, and records
the exit. The formats printed are those of LSF 10.1 (see tests/data/lsf/README.md).

Settings (environment): ``FAKE_LSF_SLOTS`` (4) slots, one per running job or
element; ``FAKE_LSF_MAX_SLOTS`` (8) largest ``-n`` accepted; ``FAKE_LSF_KEEP``
(600) seconds finished jobs stay listed by ``bjobs -a``; ``FAKE_LSF_MINUTE``
(60) seconds in one minute of ``-W``; ``FAKE_LSF_TERMINATE_INTERVAL`` (10)
seconds between SIGINT, SIGTERM and SIGKILL; ``FAKE_LSF_RUNLIMIT_GRACE`` (600)
seconds from the run limit's SIGUSR2 to the kill. ``-M`` (MB, as with
``LSF_UNIT_FOR_LIMITS=MB``) is enforced as with ``LSB_RESOURCE_ENFORCE="memory"``
(cgroups): a job whose processes' resident memory passes it is killed at once
(SIGKILL to all of them), exit code 137, ``TERM_MEMLIMIT``. A job that exits
non-zero gets LSF's job report appended to its output (``TERM_...: job killed
after ...`` and ``Exited with exit code N.``). ``$FAKE_LSF_DIR/down``
existing makes every command fail as when the cluster's daemons are down.
"""

from __future__ import annotations

import contextlib
import fcntl
import fnmatch
import getpass
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), ".."))
import jobprocs  # noqa: E402

Job = dict[str, Any]
State = dict[str, Any]

FINISHED = ("DONE", "EXIT")
DOWN_MESSAGE = "LSF is down. Please wait ..."
SUBMIT_DOWN_MESSAGE = "Cannot connect to LSF. Please wait ..."
HOST = socket.gethostname().split(".")[0]


class Refused(Exception):
    """A request the real command refuses: print the message, exit 255."""


def _setting(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def _state_dir() -> Path:
    path = os.environ.get("FAKE_LSF_DIR")
    if not path:
        sys.stderr.write("fakelsf: set FAKE_LSF_DIR to the fake cluster's state folder\n")
        sys.exit(2)
    folder = Path(path)
    (folder / "scripts").mkdir(parents=True, exist_ok=True)
    return folder


@contextlib.contextmanager
def locked(write: bool = True) -> Iterator[State]:
    """The state, under the lock; written back (atomically) when ``write``."""
    folder = _state_dir()
    with open(folder / "state.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = folder / "state.json"
        state: State = json.loads(path.read_text()) if path.exists() else {
            "next_id": 101, "jobs": {}}
        _expire(state)
        yield state
        if write:
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(state))
            os.replace(tmp, path)


def _expire(state: State) -> None:
    horizon = time.time() - _setting("FAKE_LSF_KEEP", 600)
    for key in [k for k, j in state["jobs"].items()
                if j["stat"] in FINISHED and (j["end_time"] or 0) < horizon]:
        del state["jobs"][key]


def _down_check(message: str = DOWN_MESSAGE) -> None:
    if (_state_dir() / "down").exists():
        sys.stderr.write(message + "\n")
        sys.exit(255)


def _key(job_id: int, index: int) -> str:
    return f"{job_id}[{index}]" if index else str(job_id)


def _display_name(job: Job) -> str:
    return f"{job['name']}[{job['index']}]" if job["index"] else job["name"]


# --------------------------------------------------------------------- bsub

OPTIONS = {"-J", "-o", "-oo", "-e", "-eo", "-n", "-R", "-M", "-W", "-q", "-P", "-gpu", "-cwd",
           "-wa", "-wt"}  # the warning action and time: accepted, never sent


def _parse_options(words: list[str], into: dict[str, Any]) -> list[str]:
    """Reads bsub options into ``into`` (-R accumulates); returns the command."""
    i = 0
    while i < len(words) and words[i].startswith("-"):
        option = words[i]
        if option not in OPTIONS or i + 1 == len(words):
            raise Refused(f"bsub: illegal option -- {option.lstrip('-')}")
        value = words[i + 1]
        if option == "-R":
            into.setdefault("-R", []).append(value)
        else:
            into[{"-oo": "-o", "-eo": "-e"}.get(option, option)] = value
        i += 2
    return words[i:]


def _script_options(script: str) -> dict[str, Any]:
    """The ``#BSUB`` lines of the comment block at the top of a script."""
    options: dict[str, Any] = {}
    for line in script.splitlines():
        text = line.strip()
        if text and not text.startswith("#"):
            break
        if text.startswith("#BSUB"):
            _parse_options(shlex.split(text[len("#BSUB"):]), options)
    return options


def _indices(spec: str) -> list[int]:
    indices: list[int] = []
    for part in spec.split(","):
        match = re.fullmatch(r"(\d+)(?:-(\d+)(?::(\d+))?)?", part.strip())
        if not match:
            raise Refused("Bad job name. Job not submitted.")
        start, end, step = int(match[1]), int(match[2] or match[1]), int(match[3] or 1)
        indices.extend(range(start, end + 1, step))
    return indices


def _run_limit(text: str | None) -> float | None:
    if text is None:
        return None
    match = re.fullmatch(r"(?:(\d+):)?(\d+)", text.split("/")[0])
    if not match:
        raise Refused(f"{text}: Bad RUNLIMIT specification. Job not submitted.")
    minutes = int(match[1] or 0) * 60 + int(match[2])
    return minutes * _setting("FAKE_LSF_MINUTE", 60)


def bsub(argv: list[str]) -> int:
    """bsub [options] [command [args]]; the job script comes on stdin without a command."""
    _down_check(SUBMIT_DOWN_MESSAGE)
    cli: dict[str, Any] = {}
    try:
        command = _parse_options(argv, cli)
        script = shlex.join(command) + "\n" if command else sys.stdin.read()
        options = {**_script_options(script), **cli}
        name, indices, limit = str(options.get("-J", command[0] if command else "NONAME")), [0], 0
        match = re.fullmatch(r"(.+?)\[([^\]]+)\](?:%(\d+))?", name)
        if match:
            name, indices, limit = match[1], _indices(match[2]), int(match[3] or 0)
        slots = int(str(options.get("-n", "1")).split(",")[0])
        if slots > _setting("FAKE_LSF_MAX_SLOTS", 8):
            raise Refused("Too many processors requested. Job not submitted.")
        runlimit = _run_limit(options.get("-W"))
    except (Refused, ValueError) as err:
        sys.stderr.write(f"{err}\n")
        return 255
    queue = options.get("-q", "normal")
    with locked() as state:
        job_id = state["next_id"]
        state["next_id"] += 1
        path = _state_dir() / "scripts" / f"{job_id}.sh"
        path.write_text(script)
        for index in indices:
            state["jobs"][_key(job_id, index)] = {
                "id": job_id, "index": index, "name": name, "limit": limit, "stat": "PEND",
                "queue": queue, "project": options.get("-P", "default"), "slots": slots,
                "user": getpass.getuser(), "script": str(path),
                "cwd": os.path.abspath(options.get("-cwd", ".")), "out": options.get("-o"),
                "err": options.get("-e"), "runlimit": runlimit, "submit_time": time.time(),
                "memlimit": jobprocs.size(str(options.get("-M", "")), "mb"),
                "start_time": None, "end_time": None, "exit_code": None, "exit_reason": None,
                "pgid": None, "runner": None, "kill_time": None}
        for index in indices:
            runner = subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), "_run", _key(job_id, index)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True)
            state["jobs"][_key(job_id, index)]["runner"] = runner.pid
    where = "queue" if "-q" in options else "default queue"
    print(f"Job <{job_id}> is submitted to {where} <{queue}>.")
    return 0


# ------------------------------------------------------------------- runner

def _may_start(state: State, key: str) -> bool:
    """FIFO over pending jobs, within the free slots and each array's %limit."""
    jobs = state["jobs"]
    free = _setting("FAKE_LSF_SLOTS", 4) - sum(j["stat"] == "RUN" for j in jobs.values())
    running: dict[int, int] = {}
    for job in jobs.values():
        if job["stat"] == "RUN":
            running[job["id"]] = running.get(job["id"], 0) + 1
    for other in sorted((k for k, j in jobs.items() if j["stat"] == "PEND"),
                        key=lambda k: (jobs[k]["id"], jobs[k]["index"])):
        job = jobs[other]
        if free < 1:
            return False
        if job["limit"] and running.get(job["id"], 0) >= job["limit"]:
            continue
        if other == key:
            return True
        free -= 1
        running[job["id"]] = running.get(job["id"], 0) + 1
    return False


def _environment(job: Job) -> dict[str, str]:
    hosts = " ".join([HOST] * job["slots"])
    return {**os.environ, "LSB_JOBID": str(job["id"]), "LSB_JOBINDEX": str(job["index"]),
            "LSB_JOBNAME": _display_name(job), "LSB_HOSTS": hosts,
            "LSB_MCPU_HOSTS": f"{HOST} {job['slots']}", "LSB_DJOB_NUMPROC": str(job["slots"]),
            "LSB_QUEUE": job["queue"], "LSB_JOBFILENAME": job["script"]}


def _log_path(template: str | None, job: Job) -> str | None:
    if template is None:
        return None
    path = template.replace("%J", str(job["id"])).replace("%I", str(job["index"]))
    return os.path.join(job["cwd"], path)


def _signal(pgid: int, number: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, number)


def _sequence(start: float) -> list[tuple[float, int]]:
    """bkill's default sequence: SIGINT, SIGTERM, SIGKILL, JOB_TERMINATE_INTERVAL apart."""
    step = _setting("FAKE_LSF_TERMINATE_INTERVAL", 10)
    return [(start, signal.SIGINT), (start + step, signal.SIGTERM),
            (start + 2 * step, signal.SIGKILL)]


def run(key: str) -> int:
    """The runner of one job or element: wait for a slot, run, watch, record."""
    while True:
        with locked() as state:
            job = state["jobs"].get(key)
            if job is None or job["stat"] != "PEND":
                return 0                                    # killed while pending
            if _may_start(state, key):
                job["stat"], job["start_time"] = "RUN", time.time()
                break
        time.sleep(0.05)
    out = _log_path(job["out"], job) or os.devnull
    err = _log_path(job["err"], job)
    with open(out, "ab") as stdout, open(err or os.devnull, "ab") as stderr:
        child = subprocess.Popen(["/bin/sh", job["script"]], cwd=job["cwd"],
                                 env=_environment(job), stdin=subprocess.DEVNULL,
                                 stdout=stdout, stderr=stderr if err else subprocess.STDOUT,
                                 start_new_session=True)
    with locked() as state:
        state["jobs"][key]["pgid"] = child.pid
    reason = _watch(key, child, job["start_time"], job["runlimit"], job.get("memlimit"))
    code = child.returncode if child.returncode >= 0 else 128 - child.returncode
    _signal(child.pid, signal.SIGKILL)                      # leave nothing behind
    with locked() as state:
        job = state["jobs"].get(key)
        if job is not None:
            if reason is None and job["kill_time"] is not None:
                reason = "TERM_OWNER"
            job.update(stat="DONE" if code == 0 else "EXIT", exit_code=code,
                       end_time=time.time(), exit_reason=reason if code else None)
    if code and out != os.devnull:
        _job_report(out, job or {}, reason, code)
    return 0


def _job_report(path: str, job: Job, reason: str | None, code: int) -> None:
    """The report LSF appends to the output of a job that exited non-zero."""
    lines = ["", "-" * 60, f"Sender: LSF System <lsfadmin@{HOST}>",
             f"Subject: Job {job.get('id')}: <{_display_name(job) if job else '?'}> in cluster "
             f"<fake> Exited", "", "-" * 60, ""]
    if reason in _EXIT_REASONS:
        lines.append(_EXIT_REASONS[reason] + ".")
    lines.append(f"Exited with exit code {code}.")
    with contextlib.suppress(OSError), open(path, "a") as handle:
        handle.write("\n".join(lines) + "\n")


def _watch(key: str, child: subprocess.Popen[bytes], start: float,
           runlimit: float | None, memlimit: int | None = None) -> str | None:
    """Waits for the job, sending the run limit's and bkill's signals when due,
    and killing all its processes over its memory limit."""
    reason: str | None = None
    pending: list[tuple[float, int]] | None = None
    checked = 0.0
    memory = jobprocs.MemoryWatch(child.pid, memlimit)
    while child.poll() is None:
        now = time.time()
        if reason is None and memory.over() is not None:
            reason = "TERM_MEMLIMIT"
            continue
        if pending is None and now - checked > 0.2:
            checked = now
            with locked(write=False) as state:
                kill_time = state["jobs"].get(key, {}).get("kill_time")
            if kill_time is not None:
                pending = _sequence(kill_time)
        if runlimit is not None and reason is None and now - start >= runlimit:
            reason = "TERM_RUNLIMIT"
            _signal(child.pid, signal.SIGUSR2)
            if pending is None:
                pending = _sequence(now + _setting("FAKE_LSF_RUNLIMIT_GRACE", 600))
        while pending and pending[0][0] <= now:
            _signal(child.pid, pending.pop(0)[1])
        time.sleep(0.05)
    return reason


# -------------------------------------------------------------------- bjobs

FIELDS = {"jobid": lambda j: str(j["id"]), "jobindex": lambda j: str(j["index"]),
          "stat": lambda j: _stat(j), "user": lambda j: j["user"],
          "queue": lambda j: j["queue"], "job_name": _display_name,
          "proj_name": lambda j: j["project"], "slots": lambda j: str(j["slots"]),
          "exit_code": lambda j: "-" if not j["exit_code"] else str(j["exit_code"]),
          "exit_reason": lambda j: _EXIT_REASONS.get(j["exit_reason"] or "", "-"),
          "run_time": lambda j: _run_time(j), "from_host": lambda j: HOST,
          "exec_host": lambda j: "-" if j["start_time"] is None else HOST}
_EXIT_REASONS = {"TERM_RUNLIMIT": "TERM_RUNLIMIT: job killed after reaching LSF run time limit",
                 "TERM_MEMLIMIT": "TERM_MEMLIMIT: job killed after reaching LSF memory usage "
                                  "limit",
                 "TERM_OWNER": "TERM_OWNER: job killed by owner"}


def _stat(job: Job) -> str:
    if job["stat"] == "RUN" and job["runner"] and not _alive(job["runner"]):
        return "UNKWN"                                      # its runner was killed
    return str(job["stat"])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _run_time(job: Job) -> str:
    if job["start_time"] is None:
        return "0 second(s)"
    return f"{int((job['end_time'] or time.time()) - job['start_time'])} second(s)"


def _parse_format(text: str) -> tuple[list[str], str]:
    delimiter = " "
    match = re.search(r"delimiter='(.)'", text)
    if match:
        delimiter, text = match[1], text[:match.start()] + text[match.end():]
    fields = [word.split(":")[0].lower() for word in text.split()]
    unknown = [f for f in fields if f not in FIELDS]
    if unknown:
        raise Refused(f"{unknown[0]}: Illegal field name specified in output format")
    return fields, delimiter


def _select(state: State, ids: list[str], pattern: str | None,
            everything: bool) -> tuple[list[Job], list[str]]:
    """The jobs asked for, in id order, and the not-found messages."""
    jobs = sorted(state["jobs"].values(), key=lambda j: (j["id"], j["index"]))
    missing: list[str] = []
    if ids:
        chosen = [j for j in jobs if str(j["id"]) in ids or _key(j["id"], j["index"]) in ids]
        found = {str(j["id"]) for j in chosen} | {_key(j["id"], j["index"]) for j in chosen}
        missing = [f"Job <{i}> is not found" for i in ids if i not in found]
        jobs = chosen
    if pattern is not None:
        jobs = [j for j in jobs if fnmatch.fnmatchcase(j["name"], pattern)
                or fnmatch.fnmatchcase(_display_name(j), pattern.replace("[", "[[]"))]
        if not jobs:
            missing.append(f"Job <{pattern}> is not found")
    if not everything and not ids:
        jobs = [j for j in jobs if j["stat"] not in FINISHED]
    return jobs, missing


def bjobs(argv: list[str]) -> int:
    """bjobs [-a] [-noheader] [-J name] [-o format] [job_id ...]."""
    _down_check()
    everything, header, pattern, form, ids = False, True, None, None, []
    args = iter(argv)
    for word in args:
        if word == "-a":
            everything = True
        elif word == "-noheader":
            header = False
        elif word in ("-J", "-o"):
            value = next(args, None)
            if value is None:
                sys.stderr.write(f"bjobs: option requires an argument -- {word[1:]}\n")
                return 255
            pattern, form = (value, form) if word == "-J" else (pattern, value)
        elif word.startswith("-"):
            sys.stderr.write(f"bjobs: illegal option -- {word.lstrip('-')}\n")
            return 255
        else:
            ids.append(word)
    try:
        fields, delimiter = _parse_format(form) if form else ([], " ")
    except Refused as err:
        sys.stderr.write(f"{err}\n")
        return 255
    with locked(write=False) as state:
        jobs, missing = _select(state, ids, pattern, everything)
    if not jobs and not missing:
        missing = ["No unfinished job found" if not everything else "No job found"]
    if jobs:
        rows = ([[FIELDS[f](j) for f in fields] for j in jobs] if fields else [_table_row(j)
                                                                            for j in jobs])
        if fields:
            lines = ([delimiter.join(f.upper() for f in fields)] if header else []) + [
                delimiter.join(row) for row in rows]
        else:
            lines = ([_TABLE.format(*_TABLE_HEAD)] if header else []) + [
                _TABLE.format(*row) for row in rows]
        print("\n".join(line.rstrip() for line in lines))
    for message in missing:
        sys.stderr.write(message + "\n")
    return 255 if missing else 0


_TABLE = "{:<7} {:<7} {:<5} {:<10} {:<11} {:<11} {:<10} {}"
_TABLE_HEAD = ("JOBID", "USER", "STAT", "QUEUE", "FROM_HOST", "EXEC_HOST", "JOB_NAME",
               "SUBMIT_TIME")


def _table_row(job: Job) -> list[str]:
    submitted = time.strftime("%b %d %H:%M", time.localtime(job["submit_time"]))
    return [FIELDS[f](job) for f in ("jobid", "user", "stat", "queue", "from_host",
                                     "exec_host", "job_name")] + [submitted]


# -------------------------------------------------------------------- bkill

def bkill(argv: list[str]) -> int:
    """bkill job_id ... | bkill -J name 0: SIGINT, SIGTERM, SIGKILL; pending jobs end at once."""
    _down_check()
    pattern = None
    if len(argv) >= 2 and argv[0] == "-J":
        pattern, argv = argv[1], argv[2:]
    if not argv:
        sys.stderr.write("bkill: a job ID or 0 is required\n")
        return 255
    out: list[str] = []
    err: list[str] = []
    with locked() as state:
        everything = argv == ["0"]
        for word in (["0"] if everything else argv):
            targets = [(k, j) for k, j in state["jobs"].items()
                       if (everything or word in (str(j["id"]), k))
                       and (pattern is None or fnmatch.fnmatchcase(j["name"], pattern))]
            live = [(k, j) for k, j in targets if j["stat"] not in FINISHED]
            if not targets:
                err.append("No matching job found" if everything
                           else f"Job <{word}>: No matching job found")
            elif not live and not everything:
                err.append(f"Job <{word}>: Job has already finished")
            for key, job in sorted(live, key=lambda kj: (kj[1]["id"], kj[1]["index"])):
                _terminate(job)
                out.append(f"Job <{key}> is being terminated")
            if everything and targets and not live:
                err.append("No unfinished job found")
    if out:
        print("\n".join(out))
    for message in err:
        sys.stderr.write(message + "\n")
    return 255 if err else 0


def _terminate(job: Job) -> None:
    if job["stat"] == "PEND":
        job.update(stat="EXIT", exit_code=130, exit_reason="TERM_OWNER", end_time=time.time())
    elif job["kill_time"] is None:
        job["kill_time"] = time.time()
        if job["pgid"]:
            _signal(job["pgid"], signal.SIGINT)             # the runner sends the rest


COMMANDS = {"bsub": bsub, "bjobs": bjobs, "bkill": bkill}


def main(command: str, argv: list[str]) -> int:
    """Runs one fake LSF command (or, for ``_run``, one job's runner)."""
    if command == "_run":
        return run(argv[0])
    return COMMANDS[command](argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
