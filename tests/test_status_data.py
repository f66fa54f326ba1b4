"""jobTreeStatus as data: --json (checked against docs/status.schema.json),
the filters --state/--class/--select/--limit, --classes and --log, on a real
tree with failures and on one whose master runs."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import PIPELINES, run_command, run_script

SCHEMA = json.loads((Path(__file__).parent.parent / "docs" / "status.schema.json").read_text())


def _errors(value: Any, schema: dict[str, Any], path: str = "$") -> list[str]:
    """The ways ``value`` breaks ``schema`` (the parts of JSON Schema the
    status schema uses: $ref, oneOf, type, const, enum, required, properties,
    items)."""
    if "$ref" in schema:
        schema = SCHEMA["$defs"][schema["$ref"].rsplit("/", 1)[1]]
    if "oneOf" in schema:
        matching = [s for s in schema["oneOf"] if not _errors(value, s, path)]
        return [] if len(matching) == 1 else [f"{path}: matches {len(matching)} of oneOf"]
    found: list[str] = []
    types = schema.get("type")
    if types is not None:
        kinds = {"object": dict, "array": list, "string": str, "boolean": bool,
                 "integer": int, "number": (int, float), "null": type(None)}
        allowed = [types] if isinstance(types, str) else types
        ok = any(isinstance(value, kinds[t]) and not (t in ("integer", "number")
                                                      and isinstance(value, bool))
                 for t in allowed)
        if not ok:
            return [f"{path}: {value!r} is not {types}"]
    if "const" in schema and value != schema["const"]:
        found.append(f"{path}: {value!r} is not {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        found.append(f"{path}: {value!r} is not one of {schema['enum']}")
    if isinstance(value, dict):
        found += [f"{path}: no {key!r}" for key in schema.get("required", []) if key not in value]
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                found += _errors(value[key], sub, f"{path}.{key}")
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            found += _errors(item, schema["items"], f"{path}[{index}]")
    return found


def _status(tree: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_command("status", "--jobTree", str(tree), *args)


@pytest.fixture(scope="module")
def failed_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run: 3 of 12 Leaf targets failed twice each (one retry)."""
    tree = tmp_path_factory.mktemp("status") / "jt"
    done = run_script("statusdata.py", "--jobTree", str(tree), "--retryCount", "1",
                      "--stats", "--logLevel", "ERROR")
    assert done.returncode == 3, done.stderr  # the script exits with the failed count
    return tree


def test_the_json_document_follows_its_schema(failed_tree: Path) -> None:
    done = _status(failed_tree, "--json")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert _errors(document, SCHEMA) == []
    assert document["schema"] == "jobtree-status/1"
    counts = document["counts"]
    assert counts == {"total": 16, "done": 12, "issued": 0, "running": 0, "queued": 0,
                      "ready": 0, "waiting": 1, "failed": 3}
    assert document["complete"] is False and document["master"]["running"] is False
    assert document["batch_system"] == "singleMachine"
    failed = document["failed"]
    assert [f["description"] for f in failed] == ["Leaf(n=0)", "Leaf(n=5)", "Leaf(n=10)"]
    for entry in failed:
        assert entry["attempts"] == 2 and entry["reason"] == "failed"
        assert "broke" in entry["message"] and Path(entry["log"]).is_file()
    # the schema does reject what is wrong
    assert _errors(dict(document, counts={"total": 1}), SCHEMA)
    assert _status(failed_tree, "--json", "--failIfNotComplete").returncode == 1


def test_filters_list_matching_targets(failed_tree: Path) -> None:
    lines = _status(failed_tree, "--state", "failed").stdout.splitlines()
    assert [line.split("\t")[6] for line in lines] == ["Leaf(n=0)", "Leaf(n=5)", "Leaf(n=10)"]
    job, cls, state, attempts, seconds, priority, _ = lines[0].split("\t")
    assert (cls, state, attempts, seconds, priority) == ("Leaf", "failed", "2", "-", "0")
    done = _status(failed_tree, "--state", "done", "--class", "Leaf").stdout.splitlines()
    assert len(done) == 9 and all(line.split("\t")[4].endswith("ms") for line in done)
    assert len(_status(failed_tree, "--class", "Other").stdout.splitlines()) == 3
    assert len(_status(failed_tree, "--class", "Leaf", "--limit", "4").stdout.splitlines()) == 4
    selected = _status(failed_tree, "--select", "attempts > 1 AND description LIKE '%=1%'")
    assert [line.split("\t")[6] for line in selected.stdout.splitlines()] == ["Leaf(n=10)"]
    listed = json.loads(_status(failed_tree, "--state", "waiting", "--json").stdout)
    assert _errors(listed, SCHEMA) == []
    assert [t["description"] for t in listed["targets"]] == ["Root()"]


@pytest.mark.parametrize("args, says", [
    (["--select", "attempts >"], "--select 'attempts >' is not a valid condition"),
    (["--select", "colour = 'red'"], "no such column: colour"),
    (["--state", "sleeping"], "'sleeping' is not a state"),
    (["--limit", "0"], "'0' is not a whole number of at least 1"),
    (["--classes", "--state", "done"], "cannot be combined"),
    (["--attempt", "1"], "--attempt goes with --log"),
])
def test_a_bad_filter_is_one_clear_line(failed_tree: Path, args: list[str], says: str) -> None:
    done = _status(failed_tree, *args)
    assert done.returncode == 2 and says in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_classes_summarise_states_and_run_times(failed_tree: Path) -> None:
    lines = _status(failed_tree, "--classes").stdout.splitlines()
    assert lines[0].split() == ["class", "waiting", "ready", "running", "done", "failed",
                                "median", "run"]
    leaf = lines[1].split()
    assert leaf[:6] == ["Leaf", "0", "0", "0", "9", "3"] and leaf[6].endswith("s")
    document = json.loads(_status(failed_tree, "--classes", "--json").stdout)
    assert _errors(document, SCHEMA) == []
    by_class = {c["class"]: c for c in document["classes"]}
    assert by_class["Other"]["counts"]["done"] == 3 and by_class["Other"]["runs"] == 3
    assert by_class["Root"]["counts"]["waiting"] == 1


def test_log_prints_every_kept_attempt(failed_tree: Path) -> None:
    job = _status(failed_tree, "--state", "failed").stdout.split("\t")[0]
    both = _status(failed_tree, "--log", job).stdout
    assert both.count("==> target") == 2 and both.count("leaf 0 says hello") == 2
    assert "ValueError: leaf 0 broke" in both
    second = _status(failed_tree, "--log", job, "--attempt", "2").stdout
    assert second.count("==> target") == 1 and "attempt 2" in second
    done_job = _status(failed_tree, "--state", "done", "--limit", "1").stdout.split("\t")[0]
    missing = _status(failed_tree, "--log", done_job)
    assert missing.returncode == 2 and "No log is kept" in missing.stderr
    assert "has no target 999" in _status(failed_tree, "--log", "999").stderr


def test_json_while_the_master_runs(tmp_path: Path) -> None:
    tree = tmp_path / "jt"
    process = subprocess.Popen([sys.executable, str(PIPELINES / "bad.py"), "sleeper",
                                "--jobTree", str(tree)], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 30
        document: dict[str, Any] = {}
        while not document.get("running") or document["running"][0]["started_at"] is None:
            assert time.time() < deadline, document
            time.sleep(0.2)
            done = _status(tree, "--json")
            document = json.loads(done.stdout) if done.returncode == 0 else {}
        assert _errors(document, SCHEMA) == []
        assert document["master"]["running"] is True
        assert document["counts"]["issued"] == 1 and document["counts"]["running"] == 1
        (running,) = document["running"]
        assert running["class"].endswith("Sleeper") and running["seconds"] >= 0
        assert running["batch"] == "singleMachine" and running["attempt"] == 1
        listed = _status(tree, "--state", "running").stdout.split("\t")
        assert listed[2] == "running" and listed[4].endswith("s")
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)
