"""Runs the example scripts end to end, as a user would, and checks their results.

Each run is a fresh ``python examples/<script>.py`` subprocess with its own
``--jobTree`` under ``tmp_path``, on the single machine batch system with two
threads. The chunk sizes are small so that the trees have many targets and
some depth.
"""

from __future__ import annotations

import collections
import importlib.util
import json
import os
import random
import re
import signal
import subprocess
import sys
import types
from pathlib import Path

import pytest
from conftest import quick_cluster_config, require_scheduler

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
TIMEOUT = 180  # seconds for one script run; a run takes a few seconds


def run_example(script: str, *args: str, cwd: Path, check: bool = True
                ) -> subprocess.CompletedProcess[str]:
    """Runs examples/<script> with the given arguments and two worker threads."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    command = [sys.executable, str(EXAMPLES / script), *args,
               "--batchSystem", "singleMachine", "--maxThreads", "2"]
    process = subprocess.run(command, cwd=cwd, env=env, capture_output=True,
                             text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
    if check:
        assert process.returncode == 0, (
            f"{' '.join(command)} exited with {process.returncode}\n"
            f"--- stdout ---\n{process.stdout}\n--- stderr ---\n{process.stderr}")
    return process


def load_example(name: str) -> types.ModuleType:
    """Imports examples/<name>.py as a module (its main block does not run)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))  # the scripts import jobtree
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sorted_lines(path: Path) -> list[bytes]:
    """What the sort must produce: Python's sorted() of the file's lines."""
    return sorted(path.read_bytes().splitlines(keepends=True))


def random_lines(seed: int, size: int) -> bytes:
    """About `size` bytes of random lines, with repeats, empty lines and UTF-8."""
    rng = random.Random(seed)
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789 \t.,-éßж€"
    lines: list[str] = []
    written = 0
    while written < size:
        if lines and rng.random() < 0.1:
            line = rng.choice(lines)
        elif rng.random() < 0.03:
            line = "\n"
        else:
            line = "".join(rng.choices(alphabet, k=rng.randint(1, 60))) + "\n"
        lines.append(line)
        written += len(line.encode())
    return "".join(lines).encode()


# --- examples/sort.py --------------------------------------------------------

SORT_CASES = {
    # name: (file contents, --N)
    "empty": (b"", 1000),
    "one-line": (b"just one line\n", 1000),
    # Ties, empty lines, leading blanks, case, UTF-8, and lines longer than N
    # (which cannot be split further).
    "tricky": ("b\n\nzebra\na\nb\n\n  a\na\n\tb\nB\né\n".encode() + b"m" * 120 + b"\n"
               + b"short\n" * 5 + b"a" * 80 + b"\n", 40),
    "10KB-deep-tree": (random_lines(1, 10_000), 500),
    "300KB": (random_lines(2, 300_000), 40_000),
}


@pytest.mark.parametrize("name", list(SORT_CASES))
def test_sort_in_place(tmp_path: Path, name: str) -> None:
    contents, chunk = SORT_CASES[name]
    to_sort = tmp_path / "input.txt"
    to_sort.write_bytes(contents)
    expected = sorted_lines(to_sort)
    args = ("--fileToSort", str(to_sort), "--N", str(chunk),
            "--jobTree", str(tmp_path / "jobTree"))

    run_example("sort.py", *args, cwd=tmp_path)

    assert to_sort.read_bytes().splitlines(keepends=True) == expected
    # Nothing left behind next to the file.
    assert {p.name for p in tmp_path.iterdir()} <= {"input.txt", "jobTree"}

    if name == "10KB-deep-tree":
        # The same command again on the finished tree succeeds and changes nothing.
        sorted_bytes = to_sort.read_bytes()
        run_example("sort.py", *args, cwd=tmp_path)
        assert to_sort.read_bytes() == sorted_bytes


@pytest.mark.parametrize("system", ["slurm", "gridEngine", "drmaa"])
@pytest.mark.parametrize("name", ["tricky", "10KB-deep-tree"])
def test_sort_on_a_cluster(tmp_path: Path, system: str, name: str) -> None:
    """The same sort, each target a job (or an array task) of a real scheduler."""
    require_scheduler(system)
    contents, chunk = SORT_CASES[name]
    to_sort = tmp_path / "input.txt"
    to_sort.write_bytes(contents)
    expected = sorted_lines(to_sort)
    run_example("sort.py", "--fileToSort", str(to_sort), "--N", str(chunk),
                "--jobTree", str(tmp_path / "jobTree"), "--batchSystem", system,
                "--clusterConfig", str(quick_cluster_config(tmp_path)), cwd=tmp_path)
    assert to_sort.read_bytes().splitlines(keepends=True) == expected


def test_sort_generate_to_output(tmp_path: Path) -> None:
    """The documented command line: --generate, relative paths, default ./jobTree."""
    args = ("--generate", "100K", "--seed", "7", "--fileToSort", "generated.txt",
            "--output", "sorted.txt", "--N", "40K")
    run_example("sort.py", *args, cwd=tmp_path)
    assert (tmp_path / "jobTree").is_dir()

    original = (tmp_path / "generated.txt").read_bytes()
    assert 100 * 1024 <= len(original) < 100 * 1024 + 200
    assert original.endswith(b"\n")
    lines = original.splitlines(keepends=True)
    assert len(set(lines)) < len(lines)  # the generator makes some repeats
    assert b"\n" in lines  # and some empty lines
    assert lines != sorted(lines)  # --output leaves the input alone
    result = (tmp_path / "sorted.txt").read_bytes()
    assert result.splitlines(keepends=True) == sorted(lines)

    # Run again on the finished tree (even with another seed): it must neither
    # make a new input under the finished tree nor fail.
    run_example("sort.py", *args, "--seed", "99", cwd=tmp_path)
    assert (tmp_path / "generated.txt").read_bytes() == original
    assert (tmp_path / "sorted.txt").read_bytes() == result


def test_sort_resumes_after_the_master_is_killed(tmp_path: Path) -> None:
    """Kill the whole run midway, run the same command again: the result is right.

    Targets that were running when the run died run a second time, which the
    example's targets must survive.
    """
    to_sort = tmp_path / "input.txt"
    to_sort.write_bytes(random_lines(5, 200_000))
    expected = sorted_lines(to_sort)
    args = ("--fileToSort", str(to_sort), "--output", str(tmp_path / "out.txt"),
            "--N", "2000", "--jobTree", str(tmp_path / "jobTree"))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    first = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "sort.py"), *args, "--maxThreads", "2"],
        cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        first.wait(timeout=2.0)  # a few hundred targets: it should still be running
    except subprocess.TimeoutExpired:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()

    run_example("sort.py", *args, cwd=tmp_path)
    assert (tmp_path / "out.txt").read_bytes().splitlines(keepends=True) == expected


def test_sort_generate_is_reproducible(tmp_path: Path) -> None:
    """The same --seed makes the same file; another seed another one."""
    sort = load_example("sort")
    made = []
    for run, seed in enumerate([3, 3, 4]):
        path = tmp_path / f"file{run}.txt"
        sort.generateFile(str(path), 5000, seed)
        made.append(path.read_bytes())
    assert made[0] == made[1] != made[2]
    assert all(data.endswith(b"\n") and len(data) >= 5000 for data in made)
    assert sort.parseSize("100K") == 100 * 1024
    assert sort.parseSize("10M") == 10 * 1024 ** 2
    assert sort.parseSize("123") == 123


def test_sort_reports_failure(tmp_path: Path) -> None:
    """A target that fails for good makes the script exit non-zero with a message."""
    to_sort = tmp_path / "input.txt"
    to_sort.write_bytes(b"b\na\n")
    # Cleanup cannot write into a directory that does not exist.
    output = tmp_path / "no" / "such" / "dir" / "out.txt"
    process = run_example("sort.py", "--fileToSort", str(to_sort), "--output", str(output),
                          "--jobTree", str(tmp_path / "jobTree"), "--retryCount", "0",
                          cwd=tmp_path, check=False)
    assert process.returncode == 1, process.stdout + process.stderr
    assert "1 target(s) failed" in process.stderr
    assert to_sort.read_bytes() == b"b\na\n"


def test_sort_missing_input_is_a_usage_error(tmp_path: Path) -> None:
    process = run_example("sort.py", "--fileToSort", str(tmp_path / "missing.txt"),
                          "--jobTree", str(tmp_path / "jobTree"), cwd=tmp_path,
                          check=False)
    assert process.returncode == 2
    assert "missing.txt" in process.stderr


# --- examples/wordcount.py ---------------------------------------------------

WORD = re.compile(r"[\w']+")


def expected_counts(input_dir: Path) -> collections.Counter[str]:
    counts: collections.Counter[str] = collections.Counter()
    for path in sorted(input_dir.glob("*.txt")):
        counts.update(WORD.findall(path.read_text(encoding="utf-8").lower()))
    return counts


def read_table(path: Path) -> list[tuple[str, int]]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        word, count = line.split("\t")
        rows.append((word, int(count)))
    return rows


def test_wordcount_generated(tmp_path: Path) -> None:
    """--generate, relative paths and the default output ./wordcounts.tsv."""
    run_example("wordcount.py", "--generate", "8", "--fileSize", "20K", "--seed", "5",
                "--inputDir", "texts", cwd=tmp_path)

    input_dir = tmp_path / "texts"
    files = sorted(input_dir.glob("*.txt"))
    assert len(files) == 8
    expected = expected_counts(input_dir)
    table = read_table(tmp_path / "wordcounts.tsv")
    assert dict(table) == dict(expected)
    # Most frequent first, ties in word order.
    assert table == sorted(expected.items(), key=lambda item: (-item[1], item[0]))

    summary = json.loads((tmp_path / "wordcounts.tsv.summary.json").read_text())
    assert summary["files"] == 8
    assert summary["words"] == sum(expected.values())
    assert summary["distinctWords"] == len(expected)
    assert summary["bytes"] == sum(path.stat().st_size for path in files)
    assert summary["lines"] == sum(len(path.read_bytes().splitlines()) for path in files)


def test_wordcount_given_files(tmp_path: Path) -> None:
    input_dir = tmp_path / "in"
    input_dir.mkdir()
    (input_dir / "a.txt").write_text("The cat sat on the mat.\nThe END\n", encoding="utf-8")
    (input_dir / "b.txt").write_text("It's the cat's mat; it's THE mat!\n", encoding="utf-8")
    (input_dir / "c.txt").write_text("Café, café, naïve_word 42 42\n", encoding="utf-8")
    (input_dir / "empty.txt").write_text("", encoding="utf-8")
    (input_dir / "ignored.md").write_text("not counted not counted\n", encoding="utf-8")
    output = tmp_path / "out.tsv"
    summary = tmp_path / "summary.json"
    run_example("wordcount.py", "--inputDir", str(input_dir), "--output", str(output),
                "--summary", str(summary), "--jobTree", str(tmp_path / "jobTree"),
                cwd=tmp_path)

    assert read_table(output) == [
        ("the", 5), ("mat", 3), ("42", 2), ("café", 2), ("it's", 2), ("cat", 1),
        ("cat's", 1), ("end", 1), ("naïve_word", 1), ("on", 1), ("sat", 1)]
    assert dict(read_table(output)) == dict(expected_counts(input_dir))
    assert json.loads(summary.read_text())["files"] == 4


# --- examples/pool_map.py ----------------------------------------------------


def test_pool_map_computes_every_sequence_and_reads_them_back(tmp_path: Path) -> None:
    fasta, table = tmp_path / "reads.fa", tmp_path / "gc.tsv"
    fasta.write_text(">a\nGGCC\nAT\n>b first read\nacgtn\n>c\n\n>d\nAAAA\n")
    args = ("--fasta", str(fasta), "--output", str(table), "--chunksize", "2",
            "--jobTree", str(tmp_path / "pool"))
    run_example("pool_map.py", *args, cwd=tmp_path)
    rows = [line.split("\t") for line in table.read_text().splitlines()]
    assert rows == [["a", "6", "0.6667"], ["b", "5", "0.5"], ["c", "0", "0.0"],
                    ["d", "4", "0.0"]]
    (tree,) = [p for p in (tmp_path / "pool").iterdir() if p.is_dir()]
    index = tree / "tree.db"
    made = index.stat().st_mtime_ns
    table.unlink()
    run_example("pool_map.py", *args, cwd=tmp_path)  # the stored results, nothing run
    assert [line.split("\t") for line in table.read_text().splitlines()] == rows
    # read, never written: no master ran (reading may open and drop a -wal beside it)
    assert index.stat().st_mtime_ns == made
    assert not (tree / "tree.db-wal").exists()


def test_pool_map_generated(tmp_path: Path) -> None:
    module = load_example("pool_map")
    run_example("pool_map.py", "--generate", "300", "--fasta", "reads.fa", "--output",
                "gc.tsv", "--jobTree", "pool", cwd=tmp_path)
    records = module.read_fasta(str(tmp_path / "reads.fa"))
    rows = (tmp_path / "gc.tsv").read_text().splitlines()
    assert len(records) == len(rows) == 300
    assert rows[7] == "\t".join(str(v) for v in module.gc_content(records[7]))


# --- examples/stats.py -------------------------------------------------------


def test_stats_combines_the_promised_counts(tmp_path: Path) -> None:
    numbers = tmp_path / "numbers"
    numbers.mkdir()
    (numbers / "a.txt").write_text("1\n2\n3\n")
    (numbers / "b.txt").write_text("4\n\n5\n")
    (numbers / "c.txt").write_text("")
    output = tmp_path / "stats.txt"
    done = run_example("stats.py", "--inputDir", str(numbers), "--output", str(output),
                       "--jobTree", str(tmp_path / "jobTree"), cwd=tmp_path)
    assert output.read_text() == "n\t5\nmean\t3.000000\nsd\t1.414214\n"
    assert "5 numbers: mean 3.0000, sd 1.4142" in done.stderr


def test_stats_generated(tmp_path: Path) -> None:
    run_example("stats.py", "--generate", "6", "--inputDir", "numbers", "--output",
                "stats.txt", "--jobTree", "jobTree", cwd=tmp_path)
    lines = dict(line.split("\t") for line in (tmp_path / "stats.txt").read_text().splitlines())
    assert lines["n"] == "6000" and abs(float(lines["mean"]) - 10) < 0.2


def test_examples_import_without_side_effects(tmp_path: Path) -> None:
    """Workers re-import the scripts: importing must not run anything."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    code = ("import importlib.util, sys\n"
            "for name in ('sort', 'wordcount', 'pool_map', 'stats'):\n"
            f"    path = {str(EXAMPLES)!r} + '/' + name + '.py'\n"
            "    spec = importlib.util.spec_from_file_location('example_' + name, path)\n"
            "    module = importlib.util.module_from_spec(spec)\n"
            "    spec.loader.exec_module(module)\n"
            "    assert callable(module.main)\n"
            "print('ok')\n")
    process = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=60)
    assert process.returncode == 0, process.stderr
    assert process.stdout == "ok\n"
    assert list(tmp_path.iterdir()) == []
