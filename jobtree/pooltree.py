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
    """Raised on the worker when the function raised on an input and the pool
    retries such chunks (``retryErrors=True``); the chunk's failure record
    keeps its message (the input and the traceback)."""


class FunctionError(TargetDefinitionError):
    """Raised on the worker when the function raised on an input (or returned
    what cannot be pickled): as in multiprocessing, the call fails at once,
    without trying the chunk again (a definition error is never retried)."""


# ---------------------------------------------------------------- targets
def short(value: Any, width: int = 80) -> str:
    """``repr(value)``, cut to ``width`` characters, for messages."""
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a broken __repr__ must not hide the error
        text = f"<{type(value).__name__}>"
    return text if len(text) <= width else text[: width - 3] + "..."


def load_function(path: str) -> tuple[Callable[..., Any], dict[str, Any]]:
    """The call's function and the pool's settings for its chunks (see
    :func:`pickled_function`), after running the pool's initializer, if any."""
    with open(path, "rb") as handle:
        stored = serialize.loads(handle.read())
    if not isinstance(stored, tuple):
        stored = (stored, None, ())
    function, initializer, initargs = stored[:3]
    settings = stored[3] if len(stored) > 3 else {"retry": True}
    if initializer is not None:
        initializer(*initargs)
    return function, settings


def error_file(function_file: str, index: int) -> str:
    """Where a chunk keeps the exception its function raised on input ``index``."""
    return f"{function_file}.error-{index}"


def keep_error(function_file: str, index: int, err: BaseException) -> None:
    """Keeps the exception in the call's tree, pickled, for the caller to
    raise as itself; one that cannot be pickled is not kept (the caller then
    raises a PoolError with its text)."""
    try:
        data = serialize.dumps(err)
        serialize.loads(data)  # one that pickles but cannot be rebuilt is not kept
        write_atomic(error_file(function_file, index), data)
    except Exception:  # noqa: BLE001 - the text in the failure record remains
        pass


def _unpicklable(results: list[Any], items: list[Any]) -> tuple[int, BaseException]:
    """The first result that cannot be pickled, and the error of pickling it."""
    for offset, value in enumerate(results):
        try:
            serialize.dumps(value)
        except Exception as err:  # noqa: BLE001
            return offset, err
    return 0, TypeError("the results cannot be pickled")


class Chunk(Target):
    """Calls the function on consecutive inputs; returns (number, results),
    the results pickled (so that one that cannot be is found here).

    ``call`` is the position of the chunk's call among those its tree runs
    (a tree may run several small calls made together); ``first`` is the
    position of its first input in that call."""

    def __init__(self, function_file: str, name: str, mode: str, number: int, first: int,
                 items: list[Any], call: int | None = None, **resources: Any) -> None:
        super().__init__(**resources)
        self.function_file = function_file
        self.name = name
        self.mode = mode
        self.number = number
        self.first = first
        self.items = items
        self.call = call

    def run(self) -> tuple[int, Any]:
        function, settings = load_function(self.function_file)
        echo = settings.get("echo")
        if not echo:
            return self._run(function, bool(settings.get("retry")))
        from .poolecho import tee

        restore = tee(echo)
        try:
            return self._run(function, bool(settings.get("retry")))
        finally:
            restore()

    def _run(self, function: Callable[..., Any], retry: bool) -> tuple[int, Any]:
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
                # from the function's frame down: this method's is not the user's
                trace = "".join(traceback.format_exception(
                    type(err), err, err.__traceback__.tb_next if err.__traceback__ else None))
                self._fail(offset, err, trace, retry)
        try:
            return self.number, serialize.dumps(results)
        except Exception:  # noqa: BLE001 - name the culprit
            offset, err = _unpicklable(results, self.items)
            from multiprocessing.pool import MaybeEncodingError

            self._fail(offset, MaybeEncodingError(err, results[offset]),
                       f"{type(err).__name__}: {err}: the result {short(results[offset])} "
                       f"of type {type(results[offset]).__qualname__} cannot be pickled, "
                       f"so it cannot reach the caller; return picklable values", False)
            raise  # not reached

    def _fail(self, offset: int, err: BaseException, trace: str, retry: bool) -> None:
        item = self.items[offset]
        shown = short(item[0] if self.mode == "apply" else item)
        keep_error(self.function_file, self.first + offset, err)
        error = TaskError if retry else FunctionError
        raise error(
            f"input #{self.first + offset} ({shown}) raised "
            f"{''.join(traceback.format_exception_only(type(err), err)).strip()}"
            f"{_TRACE_MARK}{trace.rstrip()}") from err

    def _jt_describe(self) -> str:
        last = self.first + len(self.items) - 1
        where = f"input {self.first}" if last == self.first else f"inputs {self.first}-{last}"
        call = "" if self.call is None else f" #{self.call}"
        return f"{self.name}{call}: {where}"


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
_TRACE_MARK = "\n\nRemote traceback:\n"
ROOT_CLASS = f"{__name__}.MapRoot"


def pickled_function(function: Callable[..., Any], initializer: Callable[..., Any] | None,
                      initargs: Sequence[Any], settings: dict[str, Any] | None = None) -> bytes:
    """The function, the pool's initializer and its settings for the chunks
    (``retry``: retry a chunk whose function raised; ``echo``: where its
    output also goes), pickled as the call's tree keeps them.

    Raises:
        TargetDefinitionError: one of them cannot be pickled.
    """
    try:
        return serialize.dumps((function, initializer, tuple(initargs), settings or {}))
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
                resources: dict[str, Any], call: int | None = None,
                numbered_from: int = 0) -> list[Chunk]:
    """The chunk targets of a call: ``size`` consecutive inputs each, asking
    for ``resources`` (whose ``time`` and ``timeLimit`` are per input),
    numbered from ``numbered_from`` (a tree of several calls numbers all
    their chunks in one row; ``call`` is the call's position among them)."""
    resources = dict(resources)
    per_input = {key: resources.pop(key) for key in ("time", "timeLimit") if key in resources}
    chunks = []
    for number, first in enumerate(range(0, len(items), size), numbered_from):
        part = items[first:first + size]
        wanted = dict(resources)
        for key, value in per_input.items():
            seconds = parse_duration(value, key)
            wanted[key] = None if seconds is None else seconds * len(part)
        chunks.append(Chunk(function_file, name, mode, number, first, part, call, **wanted))
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
    if isinstance(results, bytes):  # pickled by the chunk
        results = serialize.loads(results)
    return int(number), list(results)


def collect(paths: TreePaths, name: str, chunks: range) -> list[Any]:
    """The results of a finished call (the chunks numbered ``chunks`` of its
    tree), in input order."""
    from .jobstore import JobStore

    store = JobStore.open(paths, readonly=True)
    try:
        by_number = {}
        for _, stored in store.returned_by_class(CHUNK_CLASS):
            number, results = decode(stored)
            if number in chunks:
                by_number[number] = results
    finally:
        store.close()
    missing = [n for n in chunks if n not in by_number]
    if missing:
        raise PoolError(
            f"The tree {paths.root} of {name} finished, but it holds no results for "
            f"{len(missing)} of its {len(chunks)} chunks (the first is chunk "
            f"{missing[0]}). The tree was changed outside jobtree; remove it with "
            f"jobTreeClean --jobTree {paths.root} and make the call again.", paths.root)
    return list(itertools.chain.from_iterable(by_number[n] for n in chunks))


_INPUT = re.compile(r"input #(\d+) \((.*)\) raised (.*)", re.DOTALL)
_CALL = re.compile(r" #(\d+): inputs? \d+(?:-\d+)?$")


def failure(paths: TreePaths, name: str, call: int | None = None) -> PoolError:
    """The error of a call whose tree has targets that failed for good (in a
    tree of several calls, those of the call at position ``call``)."""
    from .jobstore import JobStore

    store = JobStore.open(paths, readonly=True)
    try:
        records = store.failures()
        tries = dict(store.attempts([r["job"] for r in records]))
    finally:
        store.close()
    failures = []
    for record in records:
        description = record["description"] or ""
        owner = _CALL.search(description)
        if call is not None and (owner is None or int(owner.group(1)) != call):
            continue
        message = str(record.get("message") or record["reason"])
        for prefix in (f"{__name__}.TaskError: ", "FunctionError: "):
            message = message.split(": ", 1)[1] if message.startswith(prefix) else message
        found = _INPUT.match(message)
        span = re.search(r"inputs? (\d+)(?:-(\d+))?$", description)
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
    trace = f"{_TRACE_MARK}{first.traceback}" if first.traceback else ""
    log = f"\nLog: {first.log}" if first.log else ""
    return PoolError(
        f"{name} failed for good after {first.attempts} "
        f"{'try' if first.attempts == 1 else 'tries'}: {what}.{others} The tree is kept in "
        f"{paths.root}: fix the function and make the same call again to continue it "
        f"(finished inputs are not run again); jobTreeStatus --jobTree {paths.root} "
        f"--verbose shows every failure.{trace}{log}", paths.root, failures)


def as_raised(error: PoolError, function_file: str) -> BaseException:
    """What the caller raises for a failed call: the exception the function
    raised on the first failing input, as itself (as multiprocessing raises
    it), its ``__cause__`` a ``multiprocessing.pool.RemoteTraceback`` whose
    text is the PoolError's (the input, the traceback on the worker, the log
    and the tree; its ``error`` attribute is the PoolError); else (a chunk killed, out of memory or time, or lost; an
    exception that cannot be pickled) the PoolError itself."""
    first = next((f for f in error.failures if f.index is not None), None)
    if first is None or first.index is None:
        return error
    try:
        with open(error_file(function_file, first.index), "rb") as handle:
            raised = serialize.loads(handle.read())
    except Exception:  # noqa: BLE001 - not kept, or not readable: the PoolError says it
        return error
    if not isinstance(raised, BaseException):
        return error
    from multiprocessing.pool import RemoteTraceback

    cause = RemoteTraceback(f"\n{error}")
    cause.error = error  # type: ignore[attr-defined] # its tree and failures, for a program
    raised.__cause__ = cause
    raised.__traceback__ = None
    return raised
