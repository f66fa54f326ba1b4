"""What can go wrong reading or writing an index, said from the user's side: a
damaged file, a read-only tree, a query stopped by Ctrl-C or by its time limit.

SQLite reports these as :class:`sqlite3.DatabaseError` from any statement, so
:func:`guarded` wraps every public method of the index classes: an error that
means the file is damaged becomes :class:`IndexDamagedError` (a
:class:`~jobtree.errors.TreeError`, which the commands print as one paragraph),
and a query a :class:`Watch` stopped becomes :class:`KeyboardInterrupt` or
:class:`QueryTimeout`.
"""

from __future__ import annotations

import functools
import sqlite3
import time
from typing import Any, Callable, TypeVar

from ..errors import TreeError
from ..paths import TreePaths

#: SQLite's primary result codes that mean the file is not what SQLite wrote
#: (SQLITE_CORRUPT, SQLITE_NOTADB)
_DAMAGED_CODES = frozenset({11, 26})
_DAMAGED_TEXT = ("malformed", "not a database")
#: SQLITE_READONLY
_READONLY_CODE = 8
#: how many SQLite virtual machine steps between two looks of a Watch
WATCH_STEPS = 20000

F = TypeVar("F", bound=Callable[..., Any])


class IndexDamagedError(TreeError):
    """The index file is damaged (SQLite finds pages it did not write)."""


class QueryTimeout(Exception):
    """A query ran over the time limit it was given, and was stopped."""


def is_damaged(err: BaseException) -> bool:
    """Whether an SQLite error says the index file is damaged."""
    if not isinstance(err, sqlite3.DatabaseError):
        return False
    code = getattr(err, "sqlite_errorcode", None)  # Python 3.11 and newer
    if isinstance(code, int):
        return code & 0xFF in _DAMAGED_CODES
    return any(text in str(err) for text in _DAMAGED_TEXT)


def is_read_only(err: BaseException) -> bool:
    """Whether an SQLite error says the index could not be written to (read-only)."""
    code = getattr(err, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF == _READONLY_CODE
    return "readonly" in str(err)


def damaged(paths: TreePaths, err: object) -> IndexDamagedError:
    """The error that tells the user the index is damaged, and what to do (the
    paragraph docs/format.md shows under "A damaged index")."""
    return IndexDamagedError(
        f"The index {paths.db} of the job tree {paths.root} is damaged ({err}): parts of "
        f"the file hold what SQLite never wrote there, so the tree can be neither read "
        f"nor continued. This comes from a failing disk or file system, or from another "
        f"program writing into the file. If you have a copy of the whole directory "
        f"(tree.db together with its tree.db-wal), put it back and continue with:  "
        f"jobTreeRun --jobTree {paths.root}. Otherwise run the pipeline again with a new "
        f"--jobTree; the logs in {paths.logs} stay readable, and jobTreeClean --jobTree "
        f"{paths.root} removes the tree once you no longer need them.")


class Watch:
    """The progress handler of a reader's connection: it stops a query when the
    user presses Ctrl-C (SQLite holds the interpreter's signal handlers off
    while a statement runs) or when the query's deadline has passed."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.deadline: float | None = None
        self.expired = False

    def __call__(self) -> int:
        # Python runs a pending SIGINT's handler when this is called; the
        # KeyboardInterrupt it raises stops the statement ("interrupted"), and
        # guarded() raises it again once sqlite3 has swallowed it
        if self.deadline is not None and self.clock() > self.deadline:
            self.expired = True
            return 1
        return 0

    def limit(self, seconds: float | None) -> None:
        """Gives the next queries ``seconds`` from now (None: no limit)."""
        self.deadline = None if seconds is None else self.clock() + seconds
        self.expired = False


def translate(paths: TreePaths, err: sqlite3.DatabaseError,
              watch: Watch | None) -> BaseException:
    """What to raise for an SQLite error: the error itself, unless it means a
    damaged index or a query that ``watch`` stopped."""
    if is_damaged(err):
        return damaged(paths, err)
    if watch is not None and isinstance(err, sqlite3.OperationalError) \
            and "interrupted" in str(err):
        if watch.expired:
            return QueryTimeout(str(err))
        return KeyboardInterrupt()
    return err


def guarded(method: F) -> F:
    """Wraps a method of an index class so that SQLite's errors reach the
    caller as :func:`translate` says."""

    @functools.wraps(method)
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.DatabaseError as err:
            found = translate(self.paths, err, self._watch)
            if found is err:
                raise
            raise found from err

    return call  # type: ignore[return-value]


def guard_class(cls: type) -> type:
    """Applies :func:`guarded` to every public method ``cls`` defines itself."""
    for name, value in list(vars(cls).items()):
        if not name.startswith("_") and callable(value) and not isinstance(
                value, (classmethod, staticmethod, type)):
            setattr(cls, name, guarded(value))
    return cls
