"""Trees on another machine, reached over ssh (``--jobTree ssh://host/path``).

The remote machine is this one, through a real sshd: ``start-sshd.sh`` makes
``ssh jobtree-remote`` log in with a key (CI starts it). The remote Python is
this test's Python, with this checkout first on its path.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import PIPELINES, quick_cluster_config, require_scheduler

from jobtree.sshlink import RemoteError, RemoteTree, parse

ROOT = Path(__file__).resolve().parents[1]
HOST = "jobtree-remote"
TIMEOUT = 240


def require_sshd() -> None:
    """Skips the test when ``ssh jobtree-remote`` does not work here, except in
    CI, which starts the sshd: there it fails the test."""
    done = subprocess.run(["ssh", "-o", "BatchMode=yes", HOST, "true"], capture_output=True,
                          timeout=60, check=False)
    if done.returncode == 0:
        return
    message = (f"`ssh {HOST}` does not work here ({done.stderr.decode().strip()}); start it "
               f"with ../shared/cluster/start-sshd.sh")
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def remote_python(tmp_path: Path) -> str:
    """A Python for the remote side that runs this checkout's jobtree."""
    require_sshd()
    wrapper = tmp_path / "remote-python"
    wrapper.write_text(f"#!/bin/sh\nPYTHONPATH={ROOT} exec {sys.executable} \"$@\"\n")
    wrapper.chmod(0o755)
    return str(wrapper)


def local_env() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("JOBTREE_SSH", None)
    return env


def run(argv: list[str], *, env: dict[str, str] | None = None,
        timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          env=env or local_env(), stdin=subprocess.DEVNULL, check=False)


def command(name: str, *args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", f"jobtree.cli.{name}", *args], **kwargs)  # type: ignore


def wait_for(check: object, what: str, timeout: float = TIMEOUT) -> None:
    """Waits until ``check()`` is true (a condition, not a time)."""
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


# ------------------------------------------------------------- locations
@pytest.mark.parametrize("value, expected", [
    ("ssh://login/scratch/me/tree", RemoteTree("login", None, None, "/scratch/me/tree")),
    ("ssh://me@login.cluster.edu:2200/data/t/", RemoteTree("login.cluster.edu", "me", 2200,
                                                           "/data/t")),
    ("ssh://login/~/trees/sort", RemoteTree("login", None, None, "~/trees/sort")),
    ("ssh://[::1]:22/x", RemoteTree("::1", None, 22, "/x")),
    ("ssh://login/a%20b", RemoteTree("login", None, None, "/a b")),
])
def test_a_location_names_host_user_port_and_path(value: str, expected: RemoteTree) -> None:
    assert parse(value) == expected


@pytest.mark.parametrize("value", ["ssh://login", "ssh://login/", "ssh:///path",
                                   "ssh://login/~", "ssh://log in/x", "ssh://login/a\nb"])
def test_a_malformed_location_is_a_clear_error(value: str) -> None:
    with pytest.raises(RemoteError, match="ssh://"):
        parse(value)


# ---------------------------------------------------------------- the sort
@pytest.mark.parametrize("system", ["singleMachine", "slurm"])
def test_the_sort_example_runs_on_a_remote_tree(tmp_path: Path, remote_python: str,
                                                system: str) -> None:
    if system != "singleMachine":
        require_scheduler(system)
    to_sort = tmp_path / "input.txt"
    to_sort.write_bytes(b"".join(f"line {n * 7919 % 1000:04d}\n".encode() for n in range(400)))
    expected = sorted(to_sort.read_bytes().splitlines(keepends=True))
    location = f"ssh://{HOST}{tmp_path}/tree"
    done = run([sys.executable, str(ROOT / "examples" / "sort.py"), "--fileToSort",
                str(to_sort), "--N", "800", "--jobTree", location, "--batchSystem", system,
                "--clusterConfig", str(quick_cluster_config(tmp_path)),
                "--remotePython", remote_python])
    assert done.returncode == 0, done.stderr + done.stdout
    assert to_sort.read_bytes().splitlines(keepends=True) == expected
    # the master ran from the copy inside the tree, and its log came back here
    assert (tmp_path / "tree" / "remote" / "pipeline" / "sort.py").is_file()
    assert "the tree finished" in done.stdout + done.stderr
    status = command("status", "--jobTree", location, "--remotePython", remote_python)
    assert status.returncode == 0, status.stderr
    assert "The tree finished" in status.stdout
    data = json.loads(command("status", "--jobTree", location, "--json",
                              "--remotePython", remote_python).stdout)
    assert data["tree"] == f"{tmp_path}/tree"
    assert data["counts"]["failed"] == 0 and data["counts"]["done"] > 5


# ------------------------------------------- the local side goes, the master stays
def gate_run(tmp_path: Path, remote_python: str, *extra: str) -> tuple[list[str], Path, Path]:
    gate, output = tmp_path / "gate", tmp_path / "out"
    output.mkdir()
    argv = [sys.executable, str(PIPELINES / "gate.py"), "--gate", str(gate), "--output",
            str(output), "--jobTree", f"ssh://{HOST}{tmp_path}/tree", "--maxThreads", "4",
            "--remotePython", remote_python, *extra]
    return argv, gate, output


def remote_log(tmp_path: Path) -> str:
    logs = sorted((tmp_path / "tree" / "remote" / "runs").glob("*.log"))
    return logs[-1].read_text(errors="replace") if logs else ""


def test_a_killed_local_side_leaves_the_master_running_and_it_is_followed_again(
        tmp_path: Path, remote_python: str) -> None:
    argv, gate, output = gate_run(tmp_path, remote_python)
    local = subprocess.Popen(argv, env=local_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, start_new_session=True)
    try:
        wait_for(lambda: "starting 3 waiters" in remote_log(tmp_path), "the root to run")
    finally:
        os.killpg(local.pid, signal.SIGKILL)  # the laptop is closed: python and ssh die
        local.communicate()
    location = f"ssh://{HOST}{tmp_path}/tree"
    status = command("status", "--jobTree", location, "--remotePython", remote_python)
    assert "Master: running" in status.stdout, status.stdout + status.stderr
    follower = subprocess.Popen(
        [sys.executable, "-m", "jobtree.cli.run", "--jobTree", location,
         "--remotePython", remote_python], env=local_env(), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    first = follower.stderr.readline() if follower.stderr else ""
    assert "a master already runs" in first and "following it" in first, first
    gate.touch()  # only now: the master is followed before it can finish
    out, err = follower.communicate(timeout=TIMEOUT)
    assert follower.returncode == 0, out + err
    assert "the tree finished" in out
    assert sorted(p.name for p in output.iterdir()) == ["0.txt", "1.txt", "2.txt"]
    # the local module the targets use was copied with the script
    assert (output / "2.txt").read_text() == "waiter 2 done\n"


def test_ctrl_c_stops_following_not_the_master(tmp_path: Path, remote_python: str) -> None:
    argv, gate, output = gate_run(tmp_path, remote_python)
    local = subprocess.Popen(argv, env=local_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    wait_for(lambda: "starting 3 waiters" in remote_log(tmp_path), "the root to run")
    os.killpg(local.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: python and ssh
    _, err = local.communicate(timeout=TIMEOUT)
    assert local.returncode == 130, err
    location = f"ssh://{HOST}{tmp_path}/tree"
    assert "the master goes on on jobtree-remote" in err
    assert f"jobTreeRun --jobTree {location}" in err and "Traceback" not in err
    gate.touch()
    again = command("run", "--jobTree", location, "--remotePython", remote_python)
    assert again.returncode == 0, again.stderr + again.stdout
    assert len(list(output.iterdir())) == 3


def test_detach_returns_at_once_and_jobTreeKill_stops_the_remote_master(
        tmp_path: Path, remote_python: str) -> None:
    argv, gate, output = gate_run(tmp_path, remote_python, "--detach")
    done = run(argv)
    assert done.returncode == 0, done.stderr
    location = f"ssh://{HOST}{tmp_path}/tree"
    assert f"Follow it with:  jobTreeRun --jobTree {location}" in done.stderr
    wait_for(lambda: "starting 3 waiters" in remote_log(tmp_path), "the root to run")
    killed = command("kill", "--jobTree", location, "--remotePython", remote_python)
    assert killed.returncode == 0, killed.stderr + killed.stdout
    wait_for(lambda: any((tmp_path / "tree" / "remote" / "runs").glob("*.exit")),
             "the master to stop")
    status = command("status", "--jobTree", location, "--remotePython", remote_python)
    assert "none is running" in status.stdout, status.stdout
    # the advice names the tree as it is reached from here
    assert f"jobTreeRun --jobTree {location}" in status.stdout + status.stderr
    gate.touch()
    again = command("run", "--jobTree", location, "--remotePython", remote_python)
    assert again.returncode == 0, again.stderr + again.stdout
    assert len(list(output.iterdir())) == 3
    log = command("status", "--jobTree", location, "--log", "1", "--remotePython",
                  remote_python)
    # --log reaches the remote tree (the root succeeded: its log is not kept)
    assert log.returncode == 2 and "No log is kept for target 1" in log.stderr, log.stderr
    cleaned = command("clean", "--jobTree", location, "--remotePython", remote_python)
    assert cleaned.returncode == 0, cleaned.stderr
    assert not (tmp_path / "tree").exists()


def test_a_file_a_remote_command_writes_is_written_here(tmp_path: Path,
                                                        remote_python: str) -> None:
    argv, gate, _ = gate_run(tmp_path, remote_python, "--stats")
    gate.touch()
    assert run(argv).returncode == 0
    page = tmp_path / "here" / "timeline.html"
    page.parent.mkdir()
    stats = command("stats", "--jobTree", f"ssh://{HOST}{tmp_path}/tree", "--timeline",
                    str(page), "--remotePython", remote_python)
    assert stats.returncode == 0, stats.stderr
    assert "Waiter" in stats.stdout and page.read_text().lstrip().startswith("<!")
    assert f"Wrote the timeline to {page}" in stats.stdout
    dot = tmp_path / "here" / "tree.dot"
    done = command("status", "--jobTree", f"ssh://{HOST}{tmp_path}/tree", "--dot", str(dot),
                   "--remotePython", remote_python)
    assert done.returncode == 0, done.stderr
    assert dot.read_text().startswith("digraph")
    assert str(dot) in done.stdout and "/remote/out-" not in done.stdout
    assert not list((tmp_path / "tree" / "remote").glob("out-*"))


# ---------------------------------------------------------------- errors
def strict_config(tmp_path: Path, **settings: str) -> dict[str, str]:
    """An environment whose ssh uses a config of its own for host ``strict``."""
    lines = ["Host strict", "  HostName 127.0.0.1", "  Port 2222",
             f"  IdentityFile {Path.home() / '.ssh' / 'id_ed25519'}", "  IdentitiesOnly yes",
             *(f"  {key} {value}" for key, value in settings.items())]
    config = tmp_path / "ssh_config"
    config.write_text("\n".join(lines) + "\n")
    config.chmod(0o600)
    # not the shared connection of jobtree-remote (the same %C): a short folder of its own
    sockets = tempfile.mkdtemp(prefix="jt-", dir="/tmp")
    return dict(local_env(), JOBTREE_SSH=f"ssh -F {config}", XDG_RUNTIME_DIR=sockets)


def test_an_unknown_host_key_is_an_error_not_a_prompt(tmp_path: Path,
                                                      remote_python: str) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("")
    env = strict_config(tmp_path, StrictHostKeyChecking="yes", UserKnownHostsFile=str(known))
    done = command("status", "--jobTree", f"ssh://strict{tmp_path}/tree", env=env, timeout=60)
    assert done.returncode == 2
    assert "does not know the host key of strict" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_missing_key_is_an_error_not_a_prompt(tmp_path: Path, remote_python: str) -> None:
    key = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    env = strict_config(tmp_path, UserKnownHostsFile=str(Path.home() / ".ssh"
                                                         / "known_hosts_jobtree"),
                        StrictHostKeyChecking="accept-new")
    config = Path(env["JOBTREE_SSH"].split()[-1])
    config.write_text(config.read_text().replace(str(Path.home() / ".ssh" / "id_ed25519"),
                                                 str(key)))
    done = command("status", "--jobTree", f"ssh://strict{tmp_path}/tree", env=env, timeout=60)
    assert done.returncode == 2
    assert "could not log in to strict without a password" in done.stderr
    assert "ssh-copy-id" in done.stderr


def test_an_unknown_host_is_a_clear_error(tmp_path: Path) -> None:
    done = command("status", "--jobTree", "ssh://no-such-host.invalid/x", timeout=60)
    assert done.returncode == 2
    assert "ssh does not know the host 'no-such-host.invalid'" in done.stderr


def test_a_remote_python_without_jobtree_is_named(tmp_path: Path, remote_python: str) -> None:
    bare = tmp_path / "bare-python"  # -S: no site-packages, so no jobtree
    bare.write_text(f"#!/bin/sh\nexec {sys.executable} -S \"$@\"\n")
    bare.chmod(0o755)
    argv, _, _ = gate_run(tmp_path, str(bare))
    done = run(argv)
    assert done.returncode != 0
    assert f"jobtree is not installed for {bare} on {HOST}" in done.stderr
    missing = command("status", "--jobTree", f"ssh://{HOST}{tmp_path}/tree",
                      "--remotePython", "/no/such/python")
    assert missing.returncode == 2
    assert "There is no /no/such/python on jobtree-remote" in missing.stderr
    assert "--remotePython" in missing.stderr


def test_connections_are_shared(tmp_path: Path, remote_python: str) -> None:
    done = command("status", "--jobTree", f"ssh://{HOST}{tmp_path}/none",
                   "--remotePython", remote_python)
    assert done.returncode == 2  # no tree there: the remote command says so
    folder = Path(os.environ.get("XDG_RUNTIME_DIR") or "/tmp") / f"jobtree-ssh-{os.getuid()}"
    info = folder.lstat()
    assert stat.S_IMODE(info.st_mode) == 0o700 and info.st_uid == os.getuid()
    assert any(stat.S_ISSOCK(p.lstat().st_mode) for p in folder.iterdir())


# ------------------------------------------------------------- Pool
def test_a_pool_with_a_remote_folder_runs_each_call_there(tmp_path: Path,
                                                          remote_python: str) -> None:
    location = f"ssh://{HOST}{tmp_path}/pool"
    done = run([sys.executable, str(PIPELINES / "remote_pool.py"), location, remote_python])
    assert done.returncode == 0, done.stderr + done.stdout
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["map"] == [x * x for x in range(10)]
    assert found["starmap"] == [8, 9]
    assert found["imported"] == ["waiter 1 done\n", "waiter 2 done\n"]
    assert found["apply"] == 49 and found["async"] == [64, [64]]
    kind, message, remote_trace = found["error"]
    assert kind == "KeyError" and "no 3" in message and remote_trace  # raised as itself
    assert found["unpicklable"][0] == "UnpicklableTargetError"
    assert "cannot be pickled" in found["unpicklable"][1]
    # the calls' trees are in the remote folder, as a local Pool's would be
    assert (tmp_path / "pool" / "pool.json").is_file()
    assert any(p.name.startswith("map-square") for p in (tmp_path / "pool").iterdir())
