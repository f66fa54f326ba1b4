"""The process that holds a DRMAA session for a master: ``python -m jobtree.batch.drmaa_agent``.

A site's DRMAA 1.0 library is C, loaded with ``ctypes`` by the ``drmaa``
package, and some need a library preloaded before the process starts (Grid
Engine's needs jemalloc: ``cannot allocate memory in static TLS block``
otherwise). So the master never loads it: :mod:`jobtree.batch.drmaa` starts
this agent, which loads it, starting itself again once with the library the
loader named in ``LD_PRELOAD`` when that is the failure, so users need not
find it. A crash of the C library then costs the agent, never the master.

The agent reads one JSON request per line on standard input and writes one
JSON answer per line on standard output:

- ``{"op": "submit", "name", "command", "args", "workdir", "output",
  "native", "tasks"}``: ``{"ids": [...]}`` (``runJob``, or ``runBulkJobs``
  for ``tasks`` > 1, whose output path holds ``$drmaa_incr_ph$``);
- ``{"op": "status", "ids": [...]}``: ``{"states": {id: state}, "ended":
  {id: {...}}}``: every job of the session that ended since the last answer
  (``wait`` without waiting, so it costs no round trip to the scheduler)
  and the state of each id asked (``gone`` when the scheduler no longer
  knows it);
- ``{"op": "terminate", "ids": [...]}``: ``{"done": n}``.

Its first line says whether the session started: ``{"ok": true, "drms":
...}`` or ``{"error": ..., "kind": ...}``. It ends at the end of its input;
the jobs go on (a DRMAA session's end does not stop them). It imports nothing
of jobtree.
"""

from __future__ import annotations

import json
import os
import re
import sys
from typing import Any

#: set in the agent started again with a library preloaded (so it tries once)
PRELOADED = "JOBTREE_DRMAA_PRELOADED"
_STATIC_TLS = re.compile(r"([^\s:]+\.so[.\d]*): cannot allocate memory in static TLS block")


def _say(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def _load() -> Any:
    """The ``drmaa`` module, its library loaded (or the process started again)."""
    try:
        import drmaa  # noqa: PLC0415 - the point of the agent
    except (ImportError, OSError, RuntimeError) as err:  # no package, no library, or
        text = str(err)                                   # one that cannot load
        match = _STATIC_TLS.search(text)
        if match and not os.environ.get(PRELOADED):
            env = dict(os.environ)
            env["LD_PRELOAD"] = " ".join(p for p in (match.group(1), env.get("LD_PRELOAD"))
                                         if p)
            env[PRELOADED] = match.group(1)
            os.execve(sys.executable, [sys.executable, "-m", "jobtree.batch.drmaa_agent"], env)
        missing = isinstance(err, ImportError) and getattr(err, "name", None) == "drmaa"
        _say({"error": text, "kind": "package" if missing else "library"})
        sys.exit(1)
    return drmaa


def _ended(info: Any) -> dict[str, Any]:
    usage = dict(info.resourceUsage or {})

    def number(key: str) -> float | None:
        try:
            return float(usage[key])
        except (KeyError, ValueError):
            return None

    return {"exited": bool(info.hasExited), "code": int(info.exitStatus)
            if info.hasExited else None,
            "signal": str(info.terminatedSignal or "") if info.hasSignal else None,
            "aborted": bool(info.wasAborted), "wall": number("ru_wallclock"),
            "maxvmem": number("maxvmem")}


class Agent:
    """One DRMAA session and the requests it answers."""

    def __init__(self, drmaa: Any) -> None:
        self.drmaa = drmaa
        self.session = drmaa.Session()
        self.session.initialize()

    def hello(self) -> dict[str, Any]:
        """The first answer: which DRM and DRMAA implementation this is."""
        return {"ok": True, "drms": str(self.session.drmsInfo),
                "implementation": str(self.session.drmaaImplementation),
                "preloaded": os.environ.get(PRELOADED)}

    def submit(self, request: dict[str, Any]) -> dict[str, Any]:
        template = self.session.createJobTemplate()
        try:
            template.remoteCommand = request["command"]
            template.args = list(request["args"])
            template.jobName = request["name"]
            template.workingDirectory = request["workdir"]
            template.outputPath = ":" + request["output"]
            template.joinFiles = True
            if request.get("native"):
                template.nativeSpecification = request["native"]
            tasks = int(request.get("tasks") or 1)
            if tasks > 1:
                ids = list(self.session.runBulkJobs(template, 1, tasks, 1))
            else:
                ids = [self.session.runJob(template)]
        finally:
            self.session.deleteJobTemplate(template)
        return {"ids": [str(i) for i in ids]}

    def status(self, request: dict[str, Any]) -> dict[str, Any]:
        drmaa = self.drmaa
        ended: dict[str, Any] = {}
        while True:  # the session's ended jobs, without waiting
            try:
                info = self.session.wait(drmaa.Session.JOB_IDS_SESSION_ANY,
                                         drmaa.Session.TIMEOUT_NO_WAIT)
            except (drmaa.errors.ExitTimeoutException, drmaa.errors.InvalidJobException):
                break  # none ended yet / none left in the session
            ended[str(info.jobId)] = _ended(info)
        states: dict[str, str] = {}
        for job in request.get("ids", ()):
            if job in ended:
                continue
            try:
                states[job] = str(self.session.jobStatus(job))
            except drmaa.errors.InvalidJobException:
                states[job] = "gone"
        return {"states": states, "ended": ended}

    def terminate(self, request: dict[str, Any]) -> dict[str, Any]:
        done = 0
        for job in request.get("ids", ()):
            try:
                self.session.control(job, self.drmaa.JobControlAction.TERMINATE)
                done += 1
            except self.drmaa.errors.InvalidJobException:
                pass  # ended already
        return {"done": done}

    def answer(self, line: str) -> dict[str, Any]:
        try:
            request = json.loads(line)
            handler = {"submit": self.submit, "status": self.status,
                       "terminate": self.terminate}[request["op"]]
            return handler(request)  # type: ignore[no-any-return]
        except Exception as err:  # noqa: BLE001 - every failure is an answer
            return {"error": f"{type(err).__name__}: {err}"}


def main() -> int:
    """Runs the agent until its input ends."""
    drmaa = _load()
    try:
        agent = Agent(drmaa)
    except Exception as err:  # noqa: BLE001 - the session could not start
        _say({"error": f"{type(err).__name__}: {err}", "kind": "session"})
        return 1
    _say(agent.hello())
    try:
        for line in sys.stdin:
            if line.strip():
                _say(agent.answer(line))
    finally:
        try:
            agent.session.exit()
        except Exception:  # noqa: BLE001, S110 - ending anyway
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
