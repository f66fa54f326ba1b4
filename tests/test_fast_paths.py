"""singleMachine's fast paths, end to end: the fork server imports the
pipeline once and hands each job its input without a file, new code on disk
is still picked up, and the master's bookkeeping per target stays small."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from conftest import PIPELINES, run_script


def _run(tmp_path: Path, *args: str, code: int = 0, **env: str) -> tuple[Path, dict[str, int]]:
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    script = tmp_path / "warm.py"  # a copy: the edit case changes it
    if not script.exists():
        shutil.copy(PIPELINES / "warm.py", script)
    done = run_script(script, *args, "--jobTree", str(tmp_path / "jt"), "--maxThreads", "2",
                      "--retryCount", "0",
                      env=dict(os.environ, WARM_OUT=str(out), JOBTREE_METRICS="1", **env))
    assert done.returncode == code, done.stderr
    counts = json.loads(done.stdout.strip().splitlines()[-1])["counts"]
    return out, counts


def _notes(out: Path, prefix: str) -> list[dict[str, object]]:
    return [json.loads((out / name).read_text()) for name in sorted(os.listdir(out))
            if name.startswith(prefix)]


def test_the_fork_server_imports_the_script_once_and_hands_inputs_over(tmp_path: Path) -> None:
    out, _ = _run(tmp_path, "fan", "--width", "30")
    leaves = _notes(out, "leaf.")
    assert len(leaves) == 30
    assert len({leaf["pid"] for leaf in leaves}) == 30  # each target in a process of its own
    assert all(leaf["inputs"] == [] for leaf in leaves)  # no job input files
    # the server imported the script; no worker did (the print at import did
    # not disturb the server's protocol either)
    assert len(list(out.glob("import.*"))) == 1


def test_a_continued_tree_is_imported_once_too(tmp_path: Path) -> None:
    """A tree that exists already is imported when its first job comes (in the
    tree's stored environment), not at the fork server's start."""
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "fail").touch()  # the environment is the tree's: a file says it
    out, _ = _run(tmp_path, "fan", "--width", "10", code=1)
    assert len(_notes(out, "leaf.")) == 9
    for name in [*out.glob("import.*"), out / "fail"]:
        name.unlink()
    _run(tmp_path, "fan", "--width", "10")  # fixed: it continues the tree
    assert len(_notes(out, "leaf.")) == 10
    assert len(list(out.glob("import.*"))) == 1


def test_without_preloading_every_worker_imports_the_script(tmp_path: Path) -> None:
    out, _ = _run(tmp_path, "fan", "--width", "5", JOBTREE_NO_PRELOAD="1")
    assert len(_notes(out, "leaf.")) == 5
    assert len(list(out.glob("import.*"))) == 6  # the root and each leaf


def test_a_script_changed_while_the_tree_runs_is_imported_again(tmp_path: Path) -> None:
    out, _ = _run(tmp_path, "edit")
    (after,) = _notes(out, "after")
    assert after["version"] == 2  # the follow-on ran the code now on disk


def test_bookkeeping_per_target_is_bounded(tmp_path: Path) -> None:
    _, counts = _run(tmp_path, "fan", "--width", "200")
    targets = 201
    # each ended job is ingested and the next issued in about one transaction
    # and a handful of statements (the first version ran 19 statements per target)
    assert counts["transactions"] <= 1.2 * targets, counts
    assert counts["statements"] <= 10 * targets, counts
    assert counts.get("fsyncs", 0) <= 2, counts  # results on this machine are not synced
