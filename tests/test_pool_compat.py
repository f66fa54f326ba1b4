"""jobtree.Pool as a drop-in for multiprocessing.Pool: what a worker sees
(the caller's sys.argv), a call's identity across pool sizes, exceptions
raised as themselves, no surprise caching, overlapping calls, callbacks run
before get() returns, streaming imap, and the smaller differences."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from jobtree import Pool

ROOT = Path(__file__).resolve().parents[1]


def noted(folder: str, x: int) -> int:
    """Notes each run of an input in ``folder``/runs."""
    with open(os.path.join(folder, "runs"), "a", encoding="utf-8") as handle:
        handle.write(f"{x}\n")
    return x * x


def _runs(folder: Path) -> list[int]:
    path = folder / "runs"
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def _python(code: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    script = cwd / "script.py"
    script.write_text(textwrap.dedent(code))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(script), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


# ------------------------------------------------------------ issue 14.6
def test_a_worker_sees_the_callers_sys_argv(tmp_path: Path) -> None:
    done = _python("""
        import sys
        from jobtree import Pool
        def argv(_):
            return sys.argv
        if __name__ == "__main__":
            with Pool(2) as pool:
                print(pool.map(argv, range(2)) == [sys.argv] * 2, pool.apply(argv, (0,)))
    """, tmp_path, "one", "--two")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split(None, 1) == ["True", f"[{str(tmp_path / 'script.py')!r}, "
                                                  f"'one', '--two']\n"]


def test_the_same_call_from_a_pool_of_another_size_continues_its_tree(tmp_path: Path) -> None:
    work = [(str(tmp_path), x) for x in range(40)]
    folder = str(tmp_path / "pool")
    with Pool(2, jobTree=folder) as pool:
        first = pool.starmap(noted, work)
    with Pool(3, jobTree=folder) as pool:
        assert pool.starmap(noted, work) == first == [x * x for x in range(40)]
    assert sorted(_runs(tmp_path)) == list(range(40))  # nothing ran twice
    assert len([p for p in (tmp_path / "pool").iterdir() if p.is_dir()]) == 1
