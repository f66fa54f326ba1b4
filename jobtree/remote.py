"""Trees on another machine: ``--jobTree ssh://host/path`` from the local side.

A remote tree's master runs where the tree lives (a cluster's login node),
detached from the ssh session (see :mod:`jobtree.cli.agent`), so a closed
laptop or a dropped connection stops nothing. From here:

- a pipeline script copies itself, and the local modules it imports from its
  own folder, into ``TREE/remote/pipeline``, starts itself there with the same
  arguments, then follows the master's output and exits with its status;
- ``jobTreeRun`` starts ``jobTreeRun`` there the same way, or follows the
  master that already runs;
- ``jobTreeStatus``, ``jobTreeKill``, ``jobTreeClean`` and ``jobTreeStats``
  run there and print here; a file they write (``--dot``, ``--timeline``) is
  written here.

Paths in the arguments (inputs, outputs) are the remote machine's.
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import subprocess
import sys
import tarfile
from typing import Any, NoReturn, Sequence

from ._version import __version__
from .paths import REMOTE_FOLDER
from .sshlink import RemoteError, RemoteTree, SshLink, is_remote, parse

#: stands for the tree's (expanded) path in a command line the remote side runs
TREE_MARK = "@@JOBTREE_TREE@@"
#: stands for the remote Python that runs jobtree's agent there
PYTHON_MARK = "@@JOBTREE_PYTHON@@"
AGENT = "jobtree.cli.agent"
#: options of the local side only: never passed to the remote command
LOCAL_OPTIONS = {"--remotePython": True, "--detach": False}
#: options naming a file the command writes, which a remote command writes here
LOCAL_OUTPUTS = ("--dot", "--timeline")
#: exit status of a command stopped by an error the user can fix (as the CLI's)
EXIT_ERROR = 2


def jobtree_value(argv: Sequence[str]) -> str | None:
    """The ``--jobTree`` value of a command line (the last one given), or None."""
    found = None
    for i, part in enumerate(argv):
        if part == "--jobTree" and i + 1 < len(argv):
            found = argv[i + 1]
        elif part.startswith("--jobTree="):
            found = part.split("=", 1)[1]
    return found


def split_local(argv: Sequence[str]) -> tuple[list[str], dict[str, Any]]:
    """``argv`` without the local-side options, and those options' values;
    ``--jobTree``'s value is replaced by the remote tree's mark."""
    rest: list[str] = []
    local: dict[str, Any] = {"--remotePython": None, "--detach": False}
    parts = list(argv)
    i = 0
    while i < len(parts):
        part = parts[i]
        name, has_value, value = part.partition("=")
        if name in LOCAL_OPTIONS:
            if LOCAL_OPTIONS[name]:  # takes a value
                if not has_value:
                    i += 1
                    value = parts[i] if i < len(parts) else ""
                local[name] = value
            else:
                local[name] = True
        elif name == "--jobTree":
            if not has_value:
                i += 1
            rest += ["--jobTree", TREE_MARK]
        else:
            rest.append(part)
        i += 1
    return rest, local


class Remote:
    """One remote tree, reached over ssh."""

    def __init__(self, tree: RemoteTree, python: str | None) -> None:
        self.tree = tree
        self.link = SshLink(tree)
        self.python = python or os.environ.get("JOBTREE_REMOTE_PYTHON") or "python3"

    # ------------------------------------------------------------- commands
    def agent(self, *args: str) -> list[str]:
        return [self.python, "-m", AGENT, *args]

    def launch(self, argv: list[str], *, stage: bytes | None = None,
               follow_running: bool = False) -> dict[str, Any]:
        """Starts ``argv`` detached on the remote machine (see the agent)."""
        command = self.agent("launch", "--dir", self.tree.path,
                             *(["--stage"] if stage is not None else []),
                             *(["--followRunning"] if follow_running else []), "--", *argv)
        done = self.link.run(command, stdin=stage or b"")
        if done.returncode != 0:
            raise RemoteError(self.failed(done.returncode, done.stderr.decode(errors="replace")))
        try:
            return dict(json.loads(done.stdout.decode().strip().splitlines()[-1]))
        except (ValueError, IndexError) as err:
            raise RemoteError(
                f"The jobtree on {self.tree.host} answered what this one does not understand "
                f"({done.stdout[-200:]!r}); install the same jobtree version on both "
                f"machines.") from err

    def failed(self, status: int, stderr: str) -> str:
        """Why a remote jobtree command could not run, as one paragraph."""
        text = stderr.strip()
        if status == 127 or "No such file or directory" in text and self.python in text:
            return (f"There is no {self.python} on {self.tree.host} ({text or 'not found'}). "
                    f"Give the remote Python that has jobtree installed with "
                    f"--remotePython /path/to/python.")
        if "No module named 'jobtree." in text:
            return (f"The jobtree installed for {self.python} on {self.tree.host} is older than "
                    f"this one and cannot run remote trees ({text.splitlines()[-1]}). Install "
                    f"the same jobtree version there as here.")
        if "No module named" in text and "jobtree" in text:
            return (f"jobtree is not installed for {self.python} on {self.tree.host}. "
                    f"Install it there (pip install jobtree, the same version as here), or give "
                    f"the remote Python that has it with --remotePython /path/to/python.")
        return (f"jobtree on {self.tree.host} failed (exit status {status}): "
                f"{text[-500:] or 'no message'}")

    def follow(self, run: int | None = None, tail: int | None = None) -> int:
        """Prints the master's output as it comes; returns its exit status.

        Ctrl-C or a dropped connection leaves the master running and says how
        to follow it again.
        """
        command = self.agent("follow", "--dir", self.tree.path,
                             *([f"--run={run}"] if run else []),
                             *([f"--tail={tail}"] if tail is not None else []))
        process = self.link.popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)
        try:
            # stdin stays open: the far side stops following when it closes
            for line in process.stdout or ():
                sys.stdout.write(self.rename(line.decode(errors="replace")))
                sys.stdout.flush()
            err = process.stderr.read() if process.stderr else b""
            process.wait()
        except KeyboardInterrupt:
            process.kill()
            process.wait()
            self.still_running("You stopped following it")
            return 130
        if process.stdin:
            process.stdin.close()
        status = process.returncode
        if status == 255:
            self.still_running(f"The connection dropped ({self.link.explain(err.decode())})")
            return EXIT_ERROR
        sys.stderr.write(self.rename(err.decode(errors="replace")))
        return status

    def still_running(self, why: str) -> None:
        print(f"jobtree: {why}; the master goes on on {self.tree.host}. Follow it again with:"
              f"  jobTreeRun --jobTree {self.tree}  (it follows the master that runs); see "
              f"where it stands with:  jobTreeStatus --jobTree {self.tree}; stop it with:"
              f"  jobTreeKill --jobTree {self.tree}", file=sys.stderr)

    def started(self, answer: dict[str, Any], detach: bool, tail: int | None = None) -> int:
        """Follows a run just started (or found running) unless ``detach``."""
        theirs = answer.get("version")
        if theirs and theirs != __version__:
            print(f"jobtree: WARNING: {self.tree.host} runs jobtree {theirs}, this machine "
                  f"{__version__}; install the same version on both.", file=sys.stderr)
        if answer.get("already"):
            print(f"jobtree: a master already runs {self.tree} (run {answer['run']}); "
                  f"following it.", file=sys.stderr)
            tail = 30
        if detach:
            print(f"jobtree: the master runs on {self.tree.host} (run {answer['run']}). "
                  f"Follow it with:  jobTreeRun --jobTree {self.tree}", file=sys.stderr)
            return 0
        return self.follow(int(answer["run"]), tail)

    def forward(self, module: str, argv: list[str]) -> int:
        """Runs a read or control command there, printing here; a file it
        writes (``--dot``, ``--timeline``) is fetched here."""
        outputs: list[tuple[str, str]] = []
        command = argv[:]
        for i, part in enumerate(command):
            name, has_value, value = part.partition("=")
            if name in LOCAL_OUTPUTS:
                local = value if has_value else (command[i + 1] if i + 1 < len(command) else "")
                remote = f"{TREE_MARK}/{REMOTE_FOLDER}/out-{os.getpid()}-{len(outputs)}"
                outputs.append((local, remote))
                if has_value:
                    command[i] = f"{name}={remote}"
                else:
                    command[i + 1] = remote
        script = self._shell([self.python, "-m", module, *command], outputs)
        process = self.link.popen(["sh", "-c", script], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)
        for line in process.stdout or ():
            text = self.rename(line.decode(errors="replace"))
            for local, remote in outputs:
                text = text.replace(self.expanded(remote), local)
            sys.stdout.write(text)
            sys.stdout.flush()
        text = self.rename((process.stderr.read() if process.stderr else b"").decode(
            errors="replace"))
        process.wait()
        self.link.check(process.returncode, text)
        if "No module named" in text or process.returncode == 127:
            raise RemoteError(self.failed(process.returncode, text))
        sys.stderr.write(text)
        for local, remote in outputs:
            self._fetch(remote, local)
        return process.returncode

    def expanded(self, text: str) -> str:
        """``text`` with the tree's mark replaced by its remote path."""
        return text.replace(TREE_MARK, self.tree.path)

    def rename(self, text: str) -> str:
        """A remote command's advice (``--jobTree /path``) naming the tree as
        it is reached from here."""
        return re.sub(rf"--jobTree {re.escape(self.tree.path)}(?=[/\s]|$)",
                      f"--jobTree {self.tree}".replace("\\", "\\\\"), text)

    def _root(self) -> str:
        """The tree's path as a remote shell word (``~/...`` under ``$HOME``)."""
        tree = self.tree.path
        return f'"$HOME"/{shlex.quote(tree[2:])}' if tree.startswith("~") else shlex.quote(tree)

    def _shell(self, argv: list[str], outputs: list[tuple[str, str]]) -> str:
        """A remote shell line running ``argv`` in the tree's expanded path."""
        quoted = " ".join(shlex.quote(p).replace(TREE_MARK, '"$T"') for p in argv)
        mkdir = f'mkdir -p "$T/{REMOTE_FOLDER}" 2>/dev/null; ' if outputs else ""
        return f"T={self._root()}; {mkdir}{quoted}"

    def _fetch(self, remote: str, local: str) -> None:
        path = remote.replace(TREE_MARK, "$T")
        done = self.link.run(["sh", "-c", f'T={self._root()}; cat "{path}" && rm -f "{path}"'])
        if done.returncode != 0:
            return  # the command failed before writing it, and said why
        try:
            with open(local, "wb") as handle:
                handle.write(done.stdout)
        except OSError as err:
            raise RemoteError(f"{local} cannot be written here: {err.strerror}. Give a "
                              f"path in a folder you can write.") from err


def pipeline_files(script: str) -> dict[str, str]:
    """The files to copy for a pipeline script: the script, the modules it
    imported from its own folder (and below), and the folder's other ``.py``
    files (a target may import one only when it runs). Maps name -> path."""
    folder = os.path.dirname(script)
    files = {os.path.basename(script): script}
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if not isinstance(path, str) or not path.endswith(".py"):
            continue
        path = os.path.realpath(path)
        if path.startswith(folder + os.sep) and "site-packages" not in path:
            files[os.path.relpath(path, folder)] = path
    for name in os.listdir(folder):
        if name.endswith(".py") and os.path.isfile(os.path.join(folder, name)):
            files.setdefault(name, os.path.join(folder, name))
    return files


def pack(files: dict[str, str], extra: dict[str, bytes] | None = None) -> bytes:
    """A tar of ``files`` (name -> local path) and of ``extra`` (name -> content)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, path in sorted(files.items()):
            archive.add(path, arcname=name, recursive=False)
        for name, data in sorted((extra or {}).items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o600
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def run_pipeline(options: Any) -> NoReturn:
    """Runs the pipeline script on the machine of ``options.jobTree`` (remote),
    follows it, and exits with the remote script's exit status."""
    value = str(options.jobTree)
    tree = parse(value)
    argv = sys.argv[1:]
    if jobtree_value(argv) != value:
        raise RemoteError(
            f"A remote tree ({value}) needs the script to be run with --jobTree {value} on "
            f"its command line: jobtree runs the script there with the same arguments.")
    main = sys.modules.get("__main__")
    script = getattr(main, "__file__", None)
    if not isinstance(script, str) or not os.path.isfile(script):
        raise RemoteError(
            f"A remote tree ({value}) needs a pipeline script file to copy there; run your "
            f"pipeline as `python script.py --jobTree {value} ...`.")
    script = os.path.realpath(script)
    rest, local = split_local(argv)
    remote = Remote(tree, local["--remotePython"] or getattr(options, "remotePython", None))
    name = os.path.basename(script)
    command = [PYTHON_MARK, f"{TREE_MARK}/{REMOTE_FOLDER}/pipeline/{name}", *rest]
    answer = remote.launch(command, stage=pack(pipeline_files(script)))
    detach = bool(local["--detach"] or getattr(options, "detach", False))
    raise SystemExit(remote.started(answer, detach))


def run_command(module: str, argv: list[str]) -> int:
    """A command line whose ``--jobTree`` is remote, run for the remote tree."""
    value = jobtree_value(argv) or ""
    tree = parse(value)
    rest, local = split_local(argv)
    remote = Remote(tree, local["--remotePython"])
    if module.endswith(".run"):
        answer = remote.launch([PYTHON_MARK, "-m", "jobtree.cli.run", *rest],
                               follow_running=True)
        return remote.started(answer, bool(local["--detach"]))
    return remote.forward(module, rest)


__all__ = ["Remote", "RemoteError", "is_remote", "run_command", "run_pipeline"]
