"""The job tree of one Pool call: its targets, and its results and failures
read back from the index.

A call's tree is a :class:`MapRoot` that adds one :class:`Chunk` per run of
consecutive inputs (through a level of :class:`Group` targets above
:data:`FANOUT` chunks). A chunk loads the call's function from the tree's
``pool/function`` file, so the version given at the latest call is the one
that runs, and returns ``(number, results)``, which the tree stores like any
return value. Workers import only this module (the fork server preloads it
for a Pool's tree), not the pool with its threads.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import re
import traceback
from typing import Any, Callable, Sequence

from . import serialize
from .errors import JobTreeError, TargetDefinitionError
from .paths import TreePaths, write_atomic
from .promise import load_value
from .resources import parse_duration
from .target import Target

#: chunks one target adds at most; more go through a level of group targets
FANOUT = 1000


def function_name(function: Callable[..., Any]) -> str:
    """A function's name as messages and tree names show it."""
    name = getattr(function, "__qualname__", None) or getattr(
        getattr(function, "func", None), "__qualname__", None) or type(function).__name__
    return str(name)


# ----------------------------------------------------------------- errors
@dataclasses.dataclass(frozen=True)
class TaskFailure:
    """One chunk of a call that failed for good.

    Attributes:
        inputs: the positions (in the call's input order) of the chunk's inputs.
        index: the position of the input that raised, if one did (else the
            chunk was killed, ran out of memory or time, or was lost).
        input: ``repr`` of that input, shortened.
        error: the exception, one line (``ValueError: bad value``), or what
            happened to the chunk.
        traceback: the traceback on the worker, if an input raised.
        log: the log of the chunk's last attempt.
        attempts: how many times the chunk was tried.
    """

    inputs: range
    index: int | None
    input: str | None
    error: str
    traceback: str | None
    log: str | None
    attempts: int


class PoolError(JobTreeError):
    """A call of a :class:`Pool` failed for good.

    Its message names the failing inputs, with the first one's traceback on
    the worker and its log. The call's tree is kept: fix the function and
    make the same call again to continue it (finished chunks are not run
    again).

    Attributes:
        tree: the call's job tree.
        failures: one :class:`TaskFailure` per failed chunk.
    """

    def __init__(self, message: str, tree: str, failures: Sequence[TaskFailure] = ()) -> None:
        super().__init__(message)
        self.tree = tree
        self.failures = list(failures)

    def __reduce__(self) -> tuple[Any, ...]:  # pickled whole, e.g. back from a remote pool
        return (type(self), (str(self), self.tree, self.failures))


class TaskError(Exception):
    """Raised on the worker when the function raised on an input; the chunk's
    failure record keeps its message (the input and the traceback)."""


# ---------------------------------------------------------------- targets
def short(value: Any, width: int = 80) -> str:
    """``repr(value)``, cut to ``width`` characters, for messages."""
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a broken __repr__ must not hide the error
        text = f"<{type(value).__name__}>"
    return text if len(text) <= width else text[: width - 3] + "..."


def load_function(path: str) -> Callable[..., Any]:
    """The call's function, after running the pool's initializer, if any."""
    with open(path, "rb") as handle:
        stored = serialize.loads(handle.read())
    function, initializer, initargs = stored if isinstance(stored, tuple) else (
        stored, None, ())
    if initializer is not None:
        initializer(*initargs)
    return function  # type: ignore[no-any-return]


class Chunk(Target):
    """Calls the function on consecutive inputs; returns (number, results)."""

    def __init__(self, function_file: str, name: str, mode: str, number: int, first: int,
                 items: list[Any], **resources: Any) -> None:
        super().__init__(**resources)
        self.function_file = function_file
        self.name = name
        self.mode = mode
        self.number = number
        self.first = first
        self.items = items

    def run(self) -> tuple[int, list[Any]]:
        function = load_function(self.function_file)
        results = []
        for offset, item in enumerate(self.items):
            try:
                if self.mode == "map":
                    results.append(function(item))
                elif self.mode == "starmap":
                    results.append(function(*item))
                else:
                    results.append(function(*item[0], **item[1]))
            except Exception as err:
                shown = short(item[0] if self.mode == "apply" else item)
                # from the function's frame down: this method's is not the user's
                trace = "".join(traceback.format_exception(
                    type(err), err, err.__traceback__.tb_next if err.__traceback__ else None))
                raise TaskError(
                    f"input #{self.first + offset} ({shown}) raised "
                    f"{''.join(traceback.format_exception_only(type(err), err)).strip()}"
                    f"\n\nRemote traceback:\n{trace.rstrip()}") from err
        return self.number, results

    def _jt_describe(self) -> str:
        last = self.first + len(self.items) - 1
        where = f"input {self.first}" if last == self.first else f"inputs {self.first}-{last}"
        return f"{self.name}: {where}"


class Group(Target):
    """Adds a run of chunks (a tree of many chunks has a level of groups)."""

    def __init__(self, chunks: list[Chunk], name: str) -> None:
        super().__init__()
        self.chunks = chunks
        self.name = name

    def run(self) -> None:
        for chunk in self.chunks:
            self.addChildTarget(chunk)

    def _jt_describe(self) -> str:
        return f"{self.name}: chunks {self.chunks[0].number}-{self.chunks[-1].number}"


class MapRoot(Target):
    """The root of a call's tree: adds its chunks (or groups of them)."""

    def __init__(self, chunks: list[Chunk], name: str, inputs: int) -> None:
        super().__init__()
        self.chunks = chunks
        self.name = name
        self.inputs = inputs

    def run(self) -> None:
        if len(self.chunks) <= FANOUT:
            for chunk in self.chunks:
                self.addChildTarget(chunk)
            return
        for start in range(0, len(self.chunks), FANOUT):
            self.addChildTarget(Group(self.chunks[start:start + FANOUT], self.name))

    def _jt_describe(self) -> str:
        return f"{self.name} over {self.inputs} inputs in {len(self.chunks)} chunks"


CHUNK_CLASS = f"{__name__}.Chunk"
ROOT_CLASS = f"{__name__}.MapRoot"


def pickled_function(function: Callable[..., Any], initializer: Callable[..., Any] | None,
                      initargs: Sequence[Any]) -> bytes:
    """The function and the pool's initializer, pickled as the call's tree keeps them.

    Raises:
        TargetDefinitionError: one of them cannot be pickled.
    """
    try:
        return serialize.dumps((function, initializer, tuple(initargs)))
    except Exception as err:  # noqa: BLE001 - any pickling failure is reported
        raise TargetDefinitionError(
            f"The function {function_name(function)} (or the pool's initializer and its "
            f"arguments) cannot be pickled ({type(err).__name__}: {err}). Define it at "
            f"the top level of a module or script, or make sure what it refers to can be "
            f"pickled.") from None


def write_function(path: str, data: bytes) -> None:
    """Keeps the function (and the pool's initializer) in the call's tree: the
    versions given now, so a fixed function is what continues a failed call."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_atomic(path, data)


def make_chunks(function_file: str, name: str, mode: str, items: list[Any], size: int,
                resources: dict[str, Any]) -> list[Chunk]:
    """The chunk targets of a call: ``size`` consecutive inputs each, asking
    for ``resources`` (whose ``time`` and ``timeLimit`` are per input)."""
    resources = dict(resources)
    per_input = {key: resources.pop(key) for key in ("time", "timeLimit") if key in resources}
    chunks = []
    for number, first in enumerate(range(0, len(items), size)):
        part = items[first:first + size]
        wanted = dict(resources)
        for key, value in per_input.items():
            seconds = parse_duration(value, key)
            wanted[key] = None if seconds is None else seconds * len(part)
        chunks.append(Chunk(function_file, name, mode, number, first, part, **wanted))
    return chunks


class Reader:
    """Reads the finished chunks of a call's tree while its master runs."""

    def __init__(self, tree: str) -> None:
        self.paths = TreePaths(tree)
        self.store: Any = None
        self.seen: set[int] = set()  # the chunk jobs read

    def new_chunks(self) -> list[tuple[int, list[Any]]]:
        """(number, results) of the chunks that finished since the last look."""
        from .jobstore import JobStore

        if self.store is None:
            if not os.path.isfile(self.paths.db):
                return []
            try:
                self.store = JobStore.open(self.paths, readonly=True)
            except JobTreeError:
                return []
        found = []
        for job, stored in self.store.returned_by_class(CHUNK_CLASS, skip=self.seen):
            self.seen.add(job)
            found.append(decode(stored))
        return found

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


def decode(stored: tuple[str, Any]) -> tuple[int, list[Any]]:
    """A chunk's stored value: its number and its results."""
    number, results = load_value(stored, "a chunk")
    return int(number), list(results)


def collect(paths: TreePaths, name: str, chunk_count: int) -> list[Any]:
    """The results of a finished call's tree, in input order."""
    from .jobstore import JobStore

    store = JobStore.open(paths, readonly=True)
    try:
        by_number = dict(decode(stored) for _, stored in
                         store.returned_by_class(CHUNK_CLASS))
    finally:
        store.close()
    missing = [n for n in range(chunk_count) if n not in by_number]
    if missing:
        raise PoolError(
            f"The tree {paths.root} of {name} finished, but it holds no results for "
            f"{len(missing)} of its {chunk_count} chunks (the first is chunk "
            f"{missing[0]}). The tree was changed outside jobtree; remove it with "
            f"jobTreeClean --jobTree {paths.root} and make the call again.", paths.root)
    return list(itertools.chain.from_iterable(by_number[n] for n in range(chunk_count)))


_INPUT = re.compile(r"input #(\d+) \((.*)\) raised (.*)", re.DOTALL)
_TRACE_MARK = "\n\nRemote traceback:\n"


def failure(paths: TreePaths, name: str) -> PoolError:
    """The error of a call whose tree has targets that failed for good."""
    from .jobstore import JobStore

    store = JobStore.open(paths, readonly=True)
    try:
        records = store.failures()
        tries = dict(store.attempts([r["job"] for r in records]))
    finally:
        store.close()
    failures = []
    for record in records:
        message = str(record.get("message") or record["reason"])
        message = message.split(": ", 1)[1] if message.startswith(
            f"{__name__}.TaskError: ") else message
        found = _INPUT.match(message)
        span = re.search(r"inputs? (\d+)(?:-(\d+))?$", record["description"] or "")
        inputs = (range(int(span.group(1)), int(span.group(2) or span.group(1)) + 1)
                  if span else range(0))
        index = shown = trace = None
        error = message
        if found:
            index, shown = int(found.group(1)), found.group(2)
            error, _, trace = found.group(3).partition(_TRACE_MARK)
        failures.append(TaskFailure(inputs=inputs, index=index, input=shown,
                                    error=error.strip() or record["reason"],
                                    traceback=trace or None, log=record.get("log"),
                                    attempts=tries.get(record["job"], 1)))
    if not failures:
        return PoolError(f"The tree {paths.root} of {name} did not finish. See "
                         f"jobTreeStatus --jobTree {paths.root} --verbose.", paths.root)
    first = failures[0]
    what = (f"input #{first.index} ({first.input}) raised {first.error}"
            if first.index is not None else
            f"the target for inputs {first.inputs.start}-{first.inputs.stop - 1} failed: "
            f"{first.error}" if first.inputs else f"its setup failed: {first.error}")
    others = ""
    if len(failures) > 1:
        named = ", ".join(f"#{f.index}" if f.index is not None else
                          f"#{f.inputs.start}-{f.inputs.stop - 1}" for f in failures[1:6])
        more = len(failures) - 1
        others = (f" {more} more {'chunk' if more == 1 else 'chunks'} failed too (inputs {named}"
                  f"{', ...' if len(failures) > 6 else ''}).")
    trace = f"\n\nRemote traceback:\n{first.traceback}" if first.traceback else ""
    log = f"\nLog: {first.log}" if first.log else ""
    return PoolError(
        f"{name} failed for good after {first.attempts} "
        f"{'try' if first.attempts == 1 else 'tries'}: {what}.{others} The tree is kept in "
        f"{paths.root}: fix the function and make the same call again to continue it "
        f"(finished inputs are not run again); jobTreeStatus --jobTree {paths.root} "
        f"--verbose shows every failure.{trace}{log}", paths.root, failures)
