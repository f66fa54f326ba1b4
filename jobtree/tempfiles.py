"""getTempFile and getTempDirectory, the helpers jobTree scripts took from sonLib."""

from __future__ import annotations

import os
import tempfile


def getTempFile(suffix: str = "", rootDir: str | None = None) -> str:
    """Creates a new empty file and returns its path.

    Args:
        suffix: the end of the file name, e.g. ``".txt"``.
        rootDir: the folder to create it in (default: the system temp folder);
            inside a target, pass ``self.getLocalTempDir()`` or
            ``self.getGlobalTempDir()``.
    """
    fd, path = tempfile.mkstemp(suffix=suffix, prefix="tmp_", dir=rootDir)
    os.close(fd)
    return path


def getTempDirectory(rootDir: str | None = None) -> str:
    """Creates a new empty directory and returns its path (see getTempFile)."""
    return tempfile.mkdtemp(prefix="tmp_", dir=rootDir)
