"""Reaching a tree on another machine: ``ssh://`` locations and the ssh client.

A remote tree is named ``ssh://[user@]host[:port]/absolute/path`` (or
``ssh://host/~/path`` for a path under the remote home). jobtree reaches it
with the system's ``ssh`` client, so the user's ``~/.ssh/config`` (aliases,
ProxyJump, keys, ControlMaster) applies. Every connection:

- never prompts (``BatchMode=yes``): a missing key or an unknown host key is
  a clear error, not a hung command;
- shares one master connection per host (``ControlMaster=auto`` with a socket
  in a private folder, kept for two minutes), so a status is one round trip;
- notices a dead network (``ServerAliveInterval``) instead of hanging.

``JOBTREE_SSH`` replaces the ssh command (for example ``ssh -F my_config``),
as ``GIT_SSH_COMMAND`` does for git.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import stat
import subprocess
from typing import Sequence
from urllib.parse import unquote

from .errors import JobTreeError

#: how a remote tree's location starts
SCHEME = "ssh://"

#: ssh's exit status when it, not the remote command, failed
SSH_FAILED = 255

_LOCATION = re.compile(r"^ssh://(?:(?P<user>[^@/\s]+)@)?(?P<host>\[[^\]/\s]+\]|[^:/@\s]+)"
                       r"(?::(?P<port>\d+))?(?P<path>/.*)$")


class RemoteError(JobTreeError):
    """A remote tree cannot be reached: a bad location, ssh failed, or jobtree
    is not installed on the remote machine."""


@dataclasses.dataclass(frozen=True)
class RemoteTree:
    """Where a remote tree lives.

    Attributes:
        host: the host as ssh knows it (an alias of ``~/.ssh/config`` works).
        user: the remote user, if the location names one.
        port: the ssh port, if the location names one.
        path: the tree's path on the remote machine (``~/...`` is under the
            remote home).
    """

    host: str
    user: str | None
    port: int | None
    path: str

    def __str__(self) -> str:
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        path = self.path if self.path.startswith("/") else "/" + self.path
        return f"{SCHEME}{user}{self.host}{port}{path}"

    @property
    def destination(self) -> str:
        """``user@host`` or ``host``, as the ssh command line takes it."""
        return f"{self.user}@{self.host}" if self.user else self.host


def is_remote(value: object) -> bool:
    """Whether a ``--jobTree`` value names a remote tree."""
    return isinstance(value, str) and value.startswith(SCHEME)


def parse(value: str) -> RemoteTree:
    """The remote tree named by ``value``.

    Raises:
        RemoteError: ``value`` is not a well-formed ``ssh://`` location.
    """
    match = _LOCATION.match(value)
    if not match or any(ord(ch) < 32 or ch == "\x7f" for ch in value):
        raise RemoteError(
            f"--jobTree {value!r} is not a remote tree location. Write it as "
            f"ssh://[user@]host[:port]/absolute/path (or ssh://host/~/path for a path under "
            f"the remote home), for example ssh://login.cluster.edu/scratch/me/sortTree.")
    path = unquote(match["path"])
    if path.startswith("/~"):
        path = path[1:]
    if path.rstrip("/") in ("", "~"):
        raise RemoteError(
            f"--jobTree {value!r} names no folder for the tree: add its path after the host, "
            f"for example {SCHEME}{match['host']}/scratch/me/sortTree.")
    port = int(match["port"]) if match["port"] else None
    return RemoteTree(match["host"].strip("[]"), match["user"], port, path.rstrip("/"))


#: the longest socket path: 108 bytes less room for ssh's temporary suffix
_MAX_SOCKET = 108 - 20
#: the length of ``%C`` (a SHA-1 in hex)
_HASH = 40


def _control_dir() -> str | None:
    """A private folder for the shared connections' sockets ($XDG_RUNTIME_DIR,
    else /tmp); None (no sharing) when none is private and short enough."""
    for base in (os.environ.get("XDG_RUNTIME_DIR"), "/tmp"):
        if not base:
            continue
        folder = os.path.join(base, f"jobtree-ssh-{os.getuid()}")
        if len(folder) + 1 + _HASH > _MAX_SOCKET:
            continue
        try:
            os.mkdir(folder, 0o700)
        except FileExistsError:
            pass
        except OSError:
            continue
        info = os.lstat(folder)
        if stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() \
                and not info.st_mode & 0o077:
            return folder  # ours alone: no one else can use our connections
    return None


class SshLink:
    """The ssh command lines that reach one remote tree's host."""

    def __init__(self, tree: RemoteTree) -> None:
        self.tree = tree

    def argv(self, command: Sequence[str], *, tty: bool = False) -> list[str]:
        """The local command line running ``command`` (a remote argv) on the host."""
        base = shlex.split(os.environ.get("JOBTREE_SSH") or "ssh")
        options = ["-o", "BatchMode=yes", "-o", "ServerAliveInterval=15",
                   "-o", "ServerAliveCountMax=4"]
        control = _control_dir()
        if control:
            options += ["-o", "ControlMaster=auto", "-o", f"ControlPath={control}/%C",
                        "-o", "ControlPersist=120"]
        if self.tree.port:
            options += ["-p", str(self.tree.port)]
        options.append("-t" if tty else "-T")
        return [*base, *options, self.tree.destination, "--",
                " ".join(shlex.quote(part) for part in command)]

    def run(self, command: Sequence[str], *, stdin: bytes | None = None,
            timeout: float | None = 120) -> subprocess.CompletedProcess[bytes]:
        """Runs ``command`` on the host and returns what it printed.

        Raises:
            RemoteError: ssh could not reach the host or log in.
        """
        try:
            done = subprocess.run(self.argv(command), input=stdin, capture_output=True,
                                  timeout=timeout, check=False)
        except FileNotFoundError as err:
            raise RemoteError(self._no_client(err)) from err
        except subprocess.TimeoutExpired as err:
            raise RemoteError(
                f"{self.tree.host} did not answer within {timeout:.0f} s over ssh. Check that "
                f"`ssh {self.tree.destination} true` works, then try again.") from err
        self.check(done.returncode, done.stderr.decode(errors="replace"))
        return done

    def popen(self, command: Sequence[str], **kwargs: object) -> subprocess.Popen[bytes]:
        """Starts ``command`` on the host; the caller checks its exit with :meth:`check`."""
        try:
            return subprocess.Popen(self.argv(command), **kwargs)  # type: ignore[call-overload]
        except FileNotFoundError as err:
            raise RemoteError(self._no_client(err)) from err

    def check(self, status: int, stderr: str) -> None:
        """Raises a clear RemoteError when ssh itself failed (exit status 255)."""
        if status != SSH_FAILED:
            return
        raise RemoteError(self.explain(stderr))

    def explain(self, stderr: str) -> str:
        """One paragraph on why ssh failed, from what it printed."""
        where, text = self.tree.destination, stderr.strip()
        last = text.splitlines()[-1] if text else "no message"
        if "Host key verification failed" in text or "No ED25519 host key" in text \
                or "host key for" in text.lower():
            return (f"ssh does not know the host key of {self.tree.host} ({last}). jobtree "
                    f"never answers ssh's questions for you: connect once with `ssh {where}` "
                    f"and check and accept its key, then run this again.")
        if "Permission denied" in text:
            return (f"ssh could not log in to {where} without a password ({last}). jobtree "
                    f"logs in with keys only (BatchMode): install your public key there "
                    f"(ssh-copy-id {where}) or load it in ssh-agent, check that "
                    f"`ssh {where} true` asks nothing, then run this again.")
        if "Could not resolve hostname" in text or "Name or service not known" in text:
            return (f"ssh does not know the host {self.tree.host!r} ({last}). Check the "
                    f"name in --jobTree {self.tree}, or add a Host block for it to "
                    f"~/.ssh/config.")
        return (f"ssh could not reach {where}: {last}. Check that `ssh {where} true` works "
                f"from here without a prompt, then run this again.")

    def _no_client(self, err: OSError) -> str:
        return (f"No ssh client to reach {self.tree.host}: {err.strerror or err}. Install "
                f"OpenSSH's client, or name one in JOBTREE_SSH.")
