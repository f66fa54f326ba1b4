"""Issue 14, items 1, 2 and 13: private local temp dirs (a hostile neighbour
on a shared machine), job-script injection through tree paths, queues,
accounts, extra directives and the cluster config, and a ``--jobTree`` that
is a symbolic link."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import quick_cluster_config, require_scheduler, run_command, run_script
from jobtree import worker
from jobtree.batch import runner
from jobtree.batch.gridengine import GridEngine
from jobtree.batch.lsf import LSF
from jobtree.batch.native import Request, Submission
from jobtree.batch.pbspro import PBSPro
from jobtree.batch.scheduler import Scheduler
from jobtree.batch.settings import ClusterSettings, cluster_settings, read_config
from jobtree.batch.slurm import Slurm
from jobtree.batch.torque import Torque
from jobtree.errors import (BadOptionError, BatchSystemError, ResourceError, TempDirError,
                            TreeError)
from jobtree.options import default_options, resolve
from jobtree.paths import (LOCAL_ROOT_LEVELS, TreePaths, local_temp_root, make_private_dirs,
                           tree_root)
from jobtree.resources import Resources
from jobtree.worker import RunContext

ROOT = os.geteuid() == 0
#: the uid of the hostile neighbour (a test run as root can make its folders)
NEIGHBOUR = 54321
TREE_ID = "0123456789abcdef0123456789abcdef"


def _neighbours(path: Path, mode: int = 0o777) -> Path:
    """Makes ``path`` as the neighbour would: open to all, and the
    neighbour's own when the test runs as root."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, mode)
    if ROOT:
        os.chown(path, NEIGHBOUR, NEIGHBOUR)
    return path


@pytest.fixture
def shared_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A shared TMPDIR like /tmp: everyone may write, with the sticky bit."""
    base = tmp_path / "shared"
    base.mkdir()
    os.chmod(base, 0o1777)
    monkeypatch.setenv("TMPDIR", str(base))
    return base


def _assert_private_chain(base: Path, path: str) -> None:
    """Every level of ``path`` below ``base`` is a real folder of ours, 0700."""
    relative = Path(path).relative_to(base)
    current = base
    for part in relative.parts:
        current = current / part
        info = os.lstat(current)
        assert stat.S_ISDIR(info.st_mode), current
        assert info.st_uid == os.getuid(), current
        assert stat.S_IMODE(info.st_mode) == 0o700, (current, oct(info.st_mode))


# ------------------------------------------------------- 14.1 local temp dirs

def test_a_fresh_local_temp_dir_is_private_at_every_level(shared_tmp: Path) -> None:
    root = local_temp_root(TREE_ID)
    assert root == str(shared_tmp / f"jobtree-{os.getuid()}" / TREE_ID)
    made = make_private_dirs(os.path.join(root, "3.1", "0"), LOCAL_ROOT_LEVELS + 2)
    _assert_private_chain(shared_tmp, made)


def test_an_open_jobtree_dir_planted_by_a_neighbour_is_not_used(shared_tmp: Path) -> None:
    """The probe's case: jobtree-<uid> pre-made by another user, mode 0777."""
    planted = _neighbours(shared_tmp / f"jobtree-{os.getuid()}")
    root = local_temp_root(TREE_ID)
    assert not root.startswith(str(planted) + os.sep)
    made = make_private_dirs(os.path.join(root, "3.1", "0"), LOCAL_ROOT_LEVELS + 2)
    _assert_private_chain(shared_tmp, made)
    assert os.listdir(planted) == []  # nothing of ours went into the planted folder


@pytest.mark.skipif(not ROOT, reason="making another user's folder needs root")
def test_another_users_private_looking_dir_is_not_used(shared_tmp: Path) -> None:
    """Mode 0700 is not enough: the owner is checked too."""
    planted = _neighbours(shared_tmp / f"jobtree-{os.getuid()}", mode=0o700)
    root = local_temp_root(TREE_ID)
    assert not root.startswith(str(planted) + os.sep)
    with pytest.raises(TempDirError, match="belongs to another user"):
        make_private_dirs(os.path.join(str(planted), TREE_ID, "1.1"), LOCAL_ROOT_LEVELS + 1)


def test_a_symlink_planted_at_a_level_is_not_followed(shared_tmp: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (shared_tmp / f"jobtree-{os.getuid()}").symlink_to(elsewhere)
    root = local_temp_root(TREE_ID)
    assert f"jobtree-{os.getuid()}-{TREE_ID}" in root
    make_private_dirs(os.path.join(root, "2.1", "0"), LOCAL_ROOT_LEVELS + 2)
    assert os.listdir(elsewhere) == []
    with pytest.raises(TempDirError, match="is a symbolic link"):
        make_private_dirs(str(shared_tmp / f"jobtree-{os.getuid()}" / TREE_ID),
                          LOCAL_ROOT_LEVELS)


def test_a_bad_level_below_the_root_stops_with_a_message(shared_tmp: Path) -> None:
    root = local_temp_root(TREE_ID)
    make_private_dirs(root, LOCAL_ROOT_LEVELS)
    planted = _neighbours(Path(root) / "3.1")
    with pytest.raises(TempDirError) as caught:
        make_private_dirs(os.path.join(root, "3.1", "0"), LOCAL_ROOT_LEVELS + 2)
    assert str(planted) in str(caught.value) and "TMPDIR" in str(caught.value)
    assert os.listdir(planted) == []


def test_a_squatted_fallback_stops_with_a_message(shared_tmp: Path) -> None:
    _neighbours(shared_tmp / f"jobtree-{os.getuid()}")
    squatted = _neighbours(shared_tmp / f"jobtree-{os.getuid()}-{TREE_ID}")
    root = local_temp_root(TREE_ID)
    with pytest.raises(TempDirError, match=str(squatted)):
        make_private_dirs(os.path.join(root, "1.1", "0"), LOCAL_ROOT_LEVELS + 2)


def test_our_own_readable_dir_from_an_older_jobtree_is_closed(shared_tmp: Path) -> None:
    """jobtree made jobtree-<uid> 0755 before: it is ours and no one else
    could write in it, so it is kept and closed to 0700."""
    old = shared_tmp / f"jobtree-{os.getuid()}"
    old.mkdir()
    os.chmod(old, 0o755)
    root = local_temp_root(TREE_ID)
    assert root == str(old / TREE_ID)
    make_private_dirs(os.path.join(root, "1.1"), LOCAL_ROOT_LEVELS + 1)
    _assert_private_chain(shared_tmp, os.path.join(root, "1.1"))


def test_a_temp_base_anyone_may_write_without_the_sticky_bit_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = tmp_path / "open"
    base.mkdir()
    os.chmod(base, 0o777)
    if ROOT:
        os.chown(base, NEIGHBOUR, NEIGHBOUR)
    else:
        pytest.skip("an open base of our own is ours to trust; the check needs another owner")
    monkeypatch.setenv("TMPDIR", str(base))
    with pytest.raises(TempDirError, match="sticky"):
        make_private_dirs(os.path.join(local_temp_root(TREE_ID), "1.1"), LOCAL_ROOT_LEVELS + 1)


def test_a_neighbour_replacing_the_tree_level_mid_run_gets_nothing(
        shared_tmp: Path, tmp_path: Path) -> None:
    """The probe's second case, end to end on singleMachine: after the first
    target ran, the tree's local temp root is renamed aside and the folders
    the next targets would use are planted, open to all. The next targets
    (a child, and its follow-on chained in the same worker) write into
    private folders elsewhere, and the master's log names the bad path."""
    out = tmp_path / "out"
    env = dict(os.environ, TMPDIR=str(shared_tmp))
    done = run_script("localtemp.py", "--out", str(out), "--jobTree", str(tmp_path / "tree"),
                      "--hostile", env=env)
    assert done.returncode == 0, done.stderr
    root_dir = Path((out / "root").read_text())
    tree_level = root_dir.parent.parent
    for name in ("child", "followon"):
        used = (out / name).read_text()
        assert not used.startswith(str(tree_level) + os.sep), used
    for planted in ("2.1/0", "3.1/0"):
        assert os.listdir(tree_level / planted) == []  # no file of ours there
    assert f"not using {tree_level} for local temp dirs" in done.stderr, done.stderr


def test_a_worker_makes_and_locks_its_local_temp_root_privately(shared_tmp: Path) -> None:
    """A worker makes its local temp dir (and the job's root above it) only
    when a target asks, privately, and holds the root locked while it lives,
    so that a job starting on the node does not clean it away as stale."""
    planted = _neighbours(shared_tmp / f"jobtree-{os.getuid()}")
    root = os.path.join(local_temp_root(TREE_ID), "7.1")
    context = RunContext(TreePaths(str(shared_tmp / "tree")), 0, os.path.join(root, "0"),
                         Resources(), Resources())
    assert not os.path.exists(root)
    made = context.local_temp_dir()
    assert os.listdir(planted) == []
    _assert_private_chain(shared_tmp, made)
    old = time.time() - 2 * runner.STALE_AFTER
    os.utime(root, (old, old))
    clean = [sys.executable, "-c", "import sys; from jobtree.batch.runner import clean_stale; "
             "clean_stale(sys.argv[1])", local_temp_root(TREE_ID)]
    subprocess.run(clean, check=True)  # another process: flock locks are per open file
    assert os.path.isdir(made)
    os.close(worker._held.pop(root))  # the worker exits (killed: it removed nothing)
    subprocess.run(clean, check=True)
    assert not os.path.exists(root)


# ------------------------------------------------------ 14.2 job-script injection

HOSTILE_QUEUE = 'q"; touch INJECTED; echo "'
HOSTILE_VALUES = ["normal\ntouch INJECTED", HOSTILE_QUEUE, "a b", "q\r", "q;touch${IFS}X",
                  "q\x1b[2J", "-notify", "q'x", "q$(id)"]
ADAPTERS = {"slurm": Slurm(), "gridEngine": GridEngine(), "torque": Torque(),
            "pbspro": PBSPro(), "lsf": LSF()}


def _job(workdir: str = "/tree/batch", log: str = "/tree/batch/out/s1",
         tasks: int = 1, **request: Any) -> Submission:
    return Submission("jt-0123456789", "/tree/batch/subs/s1.sh", log, tasks,
                      Request(**request), workdir)


@pytest.mark.parametrize("system", sorted(ADAPTERS))
@pytest.mark.parametrize("key", ["queue", "account"])
@pytest.mark.parametrize("value", HOSTILE_VALUES)
def test_every_adapter_refuses_a_hostile_queue_or_account(system: str, key: str,
                                                          value: str) -> None:
    with pytest.raises(ResourceError) as caught:
        ADAPTERS[system].directives(_job(**{key: value}))
    assert repr(value) in str(caught.value) and key in str(caught.value)


@pytest.mark.parametrize("system", sorted(ADAPTERS))
@pytest.mark.parametrize("extra", ["-x\ntouch INJECTED", "-x\rtouch INJECTED", "-x\x00"])
def test_every_adapter_refuses_an_extra_directive_with_a_line_break(system: str,
                                                                    extra: str) -> None:
    with pytest.raises(ResourceError, match="control character"):
        ADAPTERS[system].directives(_job(extra=(extra,)))


def test_grid_engine_refuses_a_hostile_parallel_environment() -> None:
    with pytest.raises(ResourceError, match="parallel environment"):
        GridEngine().directives(_job(cores=4, parallel_environment="smp\ntouch X"))


@pytest.mark.parametrize("system", sorted(ADAPTERS))
@pytest.mark.parametrize("path", ["/tree\ntouch INJECTED/batch", '/tree"; touch X; echo "/b'])
def test_every_adapter_refuses_a_path_it_cannot_carry(system: str, path: str) -> None:
    with pytest.raises(ResourceError) as caught:
        ADAPTERS[system].directives(_job(workdir=path, log=path + "/out/s1"))
    assert repr(path)[:-1] in str(caught.value)  # the value is named


def test_slurm_quotes_a_path_with_blanks_and_doubles_its_percent() -> None:
    lines = Slurm().directives(_job(workdir="/data/my tree/batch",
                                    log="/data/my tree/batch/out/s%1", tasks=3))
    assert '#SBATCH --output="/data/my tree/batch/out/s%%1.%a.out"' in lines
    assert '#SBATCH --chdir="/data/my tree/batch"' in lines


def test_lsf_quotes_a_path_with_blanks_and_never_a_quote_inside() -> None:
    lines = LSF().directives(_job(workdir="/data/my tree/batch",
                                  log="/data/my tree/batch/out/s1"))
    assert '#BSUB -cwd "/data/my tree/batch"' in lines
    assert '#BSUB -o "/data/my tree/batch/out/s1.out"' in lines
    for line in lines:
        body = line[len("#BSUB "):]
        assert body.count('"') in (0, 2), line


@pytest.mark.parametrize("system", ["gridEngine", "torque", "pbspro"])
def test_schedulers_that_split_at_blanks_refuse_a_path_with_one(system: str) -> None:
    with pytest.raises(ResourceError, match="blank"):
        ADAPTERS[system].directives(_job(workdir="/data/my tree/batch",
                                         log="/data/my tree/batch/out/s1"))


@pytest.mark.parametrize("system", sorted(ADAPTERS))
@pytest.mark.parametrize("tree", ["/data/my tree", '/data/a"b', "/data/a\\b"])
def test_a_tree_path_an_adapter_cannot_carry_is_refused_at_start(system: str,
                                                                  tree: str) -> None:
    """The scheduler's check at start (before a tree is made) renders the
    directives of the tree's own paths: Slurm and LSF quote a blank; a quote
    or a backslash, and a blank on Grid Engine and PBS, are refused."""
    settings = ClusterSettings(workdir=f"{tree}/batch/main-{system}", job_name="jt-0123")
    check = Scheduler(ADAPTERS[system], settings).check
    if system in ("slurm", "lsf") and " " in tree:
        try:
            check()
        except BatchSystemError as err:
            assert "not on PATH" in str(err)  # only the commands may be missing here
        return
    with pytest.raises(BatchSystemError, match="cannot run this tree") as caught:
        check()
    assert repr(tree)[1:-1] in str(caught.value)


@pytest.mark.parametrize("system", sorted(ADAPTERS))
def test_plain_values_still_pass(system: str) -> None:
    lines = ADAPTERS[system].directives(_job(queue="long.q", account="proj-42_x"))
    assert any("long.q" in line for line in lines)


def _options(**given: Any) -> Any:
    namespace = default_options()
    namespace.jobTree = "/tmp/tree"
    for key, value in given.items():
        setattr(namespace, key, value)
    return namespace


@pytest.mark.parametrize("path", ["/tmp/a\ntouch INJECTED", "/tmp/a\rb", "/tmp/a\tb",
                                  "/tmp/a\x00b", "/tmp/a\x7fb"])
def test_a_tree_path_with_a_control_character_is_refused(path: str) -> None:
    with pytest.raises(BadOptionError) as caught:
        resolve(_options(jobTree=path))
    assert repr(path) in str(caught.value) and "--jobTree" in str(caught.value)
    with pytest.raises(BadOptionError):
        tree_root(TreePaths(path))


def test_a_tree_path_with_blanks_is_accepted() -> None:
    assert resolve(_options(jobTree="/tmp/my tree"))[0].jobTree == "/tmp/my tree"


@pytest.mark.parametrize("option", ["queue", "account"])
@pytest.mark.parametrize("value", HOSTILE_VALUES)
def test_a_hostile_queue_or_account_option_is_refused(option: str, value: str) -> None:
    with pytest.raises(BadOptionError) as caught:
        resolve(_options(**{option: value}))
    assert repr(value) in str(caught.value) and f"--{option}" in str(caught.value)


@pytest.mark.parametrize("key", ["queue", "partition", "account", "project",
                                 "parallel_environment"])
def test_a_continuation_line_of_the_cluster_config_is_refused(tmp_path: Path,
                                                              key: str) -> None:
    """``queue = normal`` followed by an indented ``touch ...`` parses to two lines."""
    config = tmp_path / "cluster.ini"
    config.write_text(f"[cluster]\n{key} = normal\n  touch INJECTED\n")
    with pytest.raises(BadOptionError) as caught:
        read_config(str(config), "slurm")
    assert key in str(caught.value) and "'normal\\ntouch INJECTED'" in str(caught.value)


def test_the_cluster_config_refuses_a_quote_in_a_queue(tmp_path: Path) -> None:
    config = tmp_path / "cluster.ini"
    config.write_text(f"[lsf]\nqueue = {HOSTILE_QUEUE}\n")
    with pytest.raises(BadOptionError, match="queue"):
        read_config(str(config), "lsf")


def test_extra_directive_lines_may_continue_but_not_hold_control_characters(
        tmp_path: Path) -> None:
    config = tmp_path / "cluster.ini"
    config.write_text("[slurm]\nextra = --constraint=avx2\n  --qos=high\n")
    assert read_config(str(config), "slurm")["extra"] == ("--constraint=avx2", "--qos=high")
    config.write_text("[slurm]\nextra = --constraint=avx2\x1b\n")
    with pytest.raises(BadOptionError, match="control character"):
        read_config(str(config), "slurm")


def test_a_stored_hostile_queue_is_refused_when_the_batch_system_is_made() -> None:
    """A tree made by an older jobtree keeps its options unchecked."""
    stored = resolve(_options())[0]
    object.__setattr__(stored, "queue", "normal\ntouch INJECTED")
    with pytest.raises(BadOptionError, match="queue"):
        cluster_settings("slurm", stored, None, TREE_ID, None, None, None)


def test_a_rendered_slurm_script_with_a_hostile_extra_never_runs_it(tmp_path: Path) -> None:
    """What the probe did: render a job script and run it with sh. A value
    that would start a shell line is refused; a blank path runs as a comment."""
    from jobtree.batch.jobfiles import job_script

    marker = tmp_path / "INJECTED"
    with pytest.raises(ResourceError):
        Slurm().directives(_job(workdir=f"/t\ntouch {marker}\n"))
    settings = cluster_settings("slurm", None, str(tmp_path), TREE_ID, None, None, None)
    directives = Slurm().directives(_job(workdir=str(tmp_path / "a b"),
                                         log=f"{tmp_path}/a b/out/s1 ; touch {marker}"))
    text = job_script(directives, "s1", 1, "SLURM_ARRAY_TASK_ID", settings, str(tmp_path),
                      "/dev/null", "/nonexistent.json", str(tmp_path), "true")
    script = tmp_path / "s1.sh"
    script.write_text(text)
    subprocess.run(["sh", str(script)], capture_output=True, timeout=60)
    assert not marker.exists()


# ---------------------------------------------------------- 14.13 a linked tree

def test_a_link_to_an_empty_dir_holds_the_tree(tmp_path: Path) -> None:
    target = tmp_path / "real"
    target.mkdir()
    link = tmp_path / "link"
    link.symlink_to(target)
    done = run_script("localtemp.py", "--out", str(tmp_path / "out"), "--jobTree", str(link))
    assert done.returncode == 0, done.stderr
    assert link.is_symlink() and (target / "tree.db").is_file()
    status = run_command("status", "--jobTree", str(link))
    assert status.returncode == 0, status.stderr
    again = run_script("localtemp.py", "--out", str(tmp_path / "out"), "--jobTree", str(link))
    assert again.returncode == 0, again.stderr  # continued through the link


@pytest.mark.parametrize("kind", ["dangling", "file", "loop"])
def test_a_link_to_no_directory_is_a_clear_error(tmp_path: Path, kind: str) -> None:
    link = tmp_path / "link"
    if kind == "dangling":
        link.symlink_to(tmp_path / "missing")
    elif kind == "file":
        (tmp_path / "afile").write_text("x")
        link.symlink_to(tmp_path / "afile")
    else:
        link.symlink_to(link)
    with pytest.raises(TreeError, match="symbolic link"):
        tree_root(TreePaths(str(link)))
    done = run_script("localtemp.py", "--out", str(tmp_path / "out"), "--jobTree", str(link))
    assert done.returncode == 1, (done.returncode, done.stderr)  # a script's error exit
    assert "symbolic link" in done.stderr and "Errno" not in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".link")]


# ------------------------------------------------------------ real Slurm

def test_on_real_slurm_a_tree_path_with_a_blank_runs(tmp_path: Path) -> None:
    require_scheduler("slurm")
    tree = tmp_path / "my tree #1"
    done = run_script("tiny.py", "--out", str(tmp_path / "out"), "--width", "2", "--sleep", "0",
                      "--jobTree", str(tree), "--batchSystem", "slurm",
                      "--clusterConfig", str(quick_cluster_config(tmp_path)), timeout=600)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "total").read_text() == "1"
    script = next((tree / "batch").glob("*/subs/*.sh"))
    assert f'#SBATCH --chdir="{tree}' in script.read_text()


def test_on_real_grid_engine_a_tree_path_with_a_blank_is_refused_before_the_tree_is_made(
        tmp_path: Path) -> None:
    """qsub splits a directive at blanks: the start says so, and makes nothing."""
    require_scheduler("gridEngine")
    tree = tmp_path / "my tree"
    done = run_script("tiny.py", "--out", str(tmp_path / "out"), "--width", "1", "--sleep", "0",
                      "--jobTree", str(tree), "--batchSystem", "gridEngine",
                      "--clusterConfig", str(quick_cluster_config(tmp_path)), timeout=600)
    assert done.returncode == 1, done.stderr  # a script's error exit
    assert "cannot run this tree" in done.stderr and str(tree) in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert not tree.exists()


def test_on_real_slurm_a_hostile_queue_is_refused_before_anything_is_submitted(
        tmp_path: Path) -> None:
    require_scheduler("slurm")
    marker = tmp_path / "INJECTED"
    tree = tmp_path / "tree"
    done = run_script("tiny.py", "--out", str(tmp_path / "out"), "--width", "1", "--sleep", "0",
                      "--jobTree", str(tree), "--batchSystem", "slurm",
                      "--queue", f'q"; touch {marker}; echo "',
                      "--clusterConfig", str(quick_cluster_config(tmp_path)), timeout=600)
    assert done.returncode == 1, done.stderr  # a script's error exit
    assert "--queue" in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not tree.exists()  # nothing created, so nothing submitted
    assert not marker.exists()


def test_on_real_slurm_a_hostile_target_queue_never_reaches_sbatch(tmp_path: Path) -> None:
    """A target's own queue= (which may hold quotes) is refused by the adapter:
    the target fails for good with the message, and no job is submitted."""
    require_scheduler("slurm")
    marker = tmp_path / "INJECTED"
    script = tmp_path / "queued.py"
    script.write_text(
        "import sys\nfrom jobtree import Stack, Target\n"
        "class Root(Target):\n"
        "    def __init__(self):\n"
        f"        Target.__init__(self, queue='q\";touch${{IFS}}{marker};echo\"')\n"
        "    def run(self):\n        pass\n"
        "if __name__ == '__main__':\n"
        "    import argparse\n    parser = argparse.ArgumentParser()\n"
        "    Stack.addJobTreeOptions(parser)\n"
        "    sys.exit(1 if Stack(Root()).startJobTree(parser.parse_args()) else 0)\n")
    done = run_script(script, "--jobTree", str(tmp_path / "tree"), "--batchSystem", "slurm",
                      "--clusterConfig", str(quick_cluster_config(tmp_path)), timeout=600)
    assert done.returncode == 1, done.stderr  # the root failed
    assert "The queue 'q\";touch" in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not list((tmp_path / "tree").glob("batch/*/subs/*")), "something was submitted"
    assert not marker.exists()


def test_on_real_slurm_the_node_side_avoids_a_planted_local_scratch_dir(
        tmp_path: Path) -> None:
    """The runner and the worker on the node do the checks too: the cluster
    config's local_scratch is a shared folder where jobtree-<uid> was planted."""
    require_scheduler("slurm")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    os.chmod(scratch, 0o1777)
    planted = _neighbours(scratch / f"jobtree-{os.getuid()}")
    config = quick_cluster_config(tmp_path)
    config.write_text(config.read_text() + f"local_scratch = {scratch}\n")
    out = tmp_path / "out"
    done = run_script("localtemp.py", "--out", str(out), "--jobTree", str(tmp_path / "tree"),
                      "--batchSystem", "slurm", "--clusterConfig", str(config), timeout=600)
    assert done.returncode == 0, done.stderr
    for name in ("root", "child", "followon"):
        used = (out / name).read_text()
        assert used.startswith(str(scratch) + os.sep), used
        assert not used.startswith(str(planted) + os.sep), used
    assert os.listdir(planted) == []
