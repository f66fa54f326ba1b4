"""Helpers shared by the tests: running pipeline scripts and the commands."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
PIPELINES = HERE / "pipelines"


def run_script(script: str | Path, *args: str, timeout: float = 300,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Runs a pipeline script (a file under tests/pipelines or a path) with Python."""
    path = Path(script)
    if not path.is_absolute():
        path = PIPELINES / path
    return subprocess.run([sys.executable, str(path), *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def run_command(name: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Runs one of the jobTree commands (jobtree.cli.<name>)."""
    return subprocess.run([sys.executable, "-m", f"jobtree.cli.{name}", *args],
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def tree_dir(tmp_path: Path) -> Path:
    """A --jobTree path that does not exist yet."""
    return tmp_path / "jobTree"


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
