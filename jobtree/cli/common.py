"""What every command shares: the --jobTree argument, opening a tree, and
printing errors as one paragraph (exit status 2) instead of a traceback."""

from __future__ import annotations

import argparse
import functools
import os
import sys
from typing import Protocol

from ..errors import JobTreeError
from ..paths import TreePaths, pool_trees

#: exit status of a command stopped by an error the user can fix
EXIT_ERROR = 2


def tree_argument(parser: argparse.ArgumentParser) -> None:
    """Adds ``--jobTree DIR`` (required)."""
    parser.add_argument("--jobTree", required=True, metavar="DIR",
                        help="the job tree directory")


def tree_paths(value: str) -> TreePaths:
    """The paths of the tree named on the command line."""
    return TreePaths(os.path.abspath(os.path.expanduser(value)))


def one_tree(paths: TreePaths) -> TreePaths:
    """The tree a command works on: ``paths``, or the one call's tree of a
    Pool's folder that holds a single call."""
    calls = pool_trees(paths)
    return calls[0] if calls is not None and len(calls) == 1 else paths


class Main(Protocol):
    """A command's main function."""

    def __call__(self, argv: list[str] | None = None) -> int: ...


def entry_point(main: Main) -> Main:
    """Wraps a command's main: JobTreeError and Ctrl-C become one line on stderr."""

    @functools.wraps(main)
    def wrapper(argv: list[str] | None = None) -> int:
        try:
            return main(argv)
        except JobTreeError as err:
            print(f"jobtree: {err}", file=sys.stderr)
            return EXIT_ERROR
        except KeyboardInterrupt:
            print("jobtree: interrupted", file=sys.stderr)
            return 130

    return wrapper
