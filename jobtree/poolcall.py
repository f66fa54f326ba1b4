"""A Pool's calls: what one call is, the key that names its tree, and how
the caller gets its results (an AsyncResult, or a stream of them as the
call's chunks finish). The pool's thread that runs each call's tree is in
:mod:`jobtree.pool`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import sys
import threading
import types
from typing import Any, Callable, Iterable, Iterator, Sequence

from . import serialize
from .pooltree import Reader, function_name, pickled_function, short

#: seconds between looks at the index while an imap waits for results
POLL_SECONDS = 0.2


@dataclasses.dataclass
class Call:
    """One call of the pool: what to run, its tree, and how it ended."""

    mode: str
    function: Callable[..., Any]
    items: list[Any]
    chunksize: int
    resources: dict[str, Any]
    tree: str
    key: str
    name: str
    pickled: bytes  # the function and the pool's initializer
    callback: Callable[[Any], Any] | None = None
    error_callback: Callable[[BaseException], Any] | None = None
    single: bool = False  # apply: the result is the one value, not a list
    blocking: bool = False  # made by map, starmap or apply, which wait for it
    count: int = 0  # how many inputs
    done: threading.Event = dataclasses.field(default_factory=threading.Event)
    results: list[Any] | None = None
    error: BaseException | None = None
    #: where it runs: its tree is known (``tree``, and in a tree of several
    #: calls, its position ``index`` there and its first chunk's number)
    placed: threading.Event = dataclasses.field(default_factory=threading.Event)
    index: int | None = None
    first_chunk: int = 0

    @property
    def chunk_count(self) -> int:
        """How many chunks (targets) the inputs make."""
        return -(-self.count // self.chunksize)

    @property
    def chunks(self) -> range:
        """The numbers of its chunks in its tree."""
        return range(self.first_chunk, self.first_chunk + self.chunk_count)

    @property
    def function_file(self) -> str:
        """Where its tree keeps its function."""
        name = "function" if self.index is None else f"function-{self.index}"
        return os.path.join(self.tree, "pool", name)


def function_id(function: Callable[..., Any]) -> str:
    """What names a function in a call's key: its module and name when it
    has a name of its own (so fixing its body continues the call's tree),
    else a hash of its pickle (lambdas, closures, partials, callable objects,
    methods of an object)."""
    qualname = getattr(function, "__qualname__", None)
    module = getattr(function, "__module__", None)
    if module == "__main__":
        file = getattr(sys.modules.get("__main__"), "__file__", None)
        module = os.path.realpath(file) if isinstance(file, str) else "__main__"
    bound = getattr(function, "__self__", None)
    if isinstance(qualname, str) and "<" not in qualname and (
            bound is None or isinstance(bound, types.ModuleType)):
        return f"{module}:{qualname}"
    # a method of an object depends on the object, a lambda on its code
    return f"{module}:{qualname}:{hashlib.sha256(serialize.dumps(function)).hexdigest()}"


def pickled_inputs(items: list[Any]) -> bytes:
    """The inputs, pickled (for the call's key). One that cannot be pickled
    raises its pickling error as itself (as multiprocessing raises it), with
    a note that names it."""
    try:
        return serialize.dumps(items)
    except Exception as err:  # noqa: BLE001 - find and name the culprit
        for index, item in enumerate(items):
            try:
                serialize.dumps(item)
            except Exception as inner:  # noqa: BLE001
                inner.add_note(
                    f"Input #{index} ({short(item)}) of a jobtree.Pool call cannot be "
                    f"pickled. A Pool sends its inputs to other processes and keeps them "
                    f"in a job tree, so pass picklable values (numbers, strings, file "
                    f"names, lists, dicts).")
                raise inner.with_traceback(None) from None
        raise err


def default_chunksize(count: int, slots: int) -> int:
    """About four chunks per slot, as multiprocessing.Pool.map chooses."""
    if count == 0:
        return 1
    size, extra = divmod(count, slots * 4)
    return max(1, size + (1 if extra else 0))


def new_call(mode: str, function: Callable[..., Any], items: list[Any], size: int,
             resources: dict[str, Any], folder: str, *,
             initializer: Callable[..., Any] | None, initargs: Sequence[Any],
             callback: Callable[[Any], Any] | None = None,
             error_callback: Callable[[BaseException], Any] | None = None,
             size_given: bool = True, settings: dict[str, Any] | None = None,
             fresh: bool = False) -> Call:
    """A call of ``function`` on ``items`` (``size`` to a chunk), named by its
    key (the mode, the function, the chunk size if ``size_given`` and the
    inputs): its tree in the pool's ``folder`` is the same whenever the same
    call is made. A default chunk size depends on the pool's processes, so it
    is not part of the key: the same call from a pool of another size
    continues the same tree (with the chunks it has). A ``fresh`` call (of a
    pool without a folder of its own) is a new one every time: its key is
    unique.

    Raises:
        TargetDefinitionError: the function, the initializer or an input
            cannot be pickled.
    """
    name = function_name(function)
    pickled = pickled_function(function, initializer, initargs, settings)
    digest = hashlib.sha256()
    for part in (mode, function_id(function), str(size) if size_given else "default"):
        digest.update(part.encode() + b"\0")
    digest.update(pickled_inputs(items))
    if fresh:
        digest.update(os.urandom(16))
    key = digest.hexdigest()
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:40] or "call"
    return Call(mode=mode, function=function, items=items, chunksize=size,
                resources={k: v for k, v in resources.items() if v is not None},
                tree=os.path.join(folder, f"{mode}-{safe}-{key[:12]}"), key=key,
                name=name, pickled=pickled, callback=callback,
                error_callback=error_callback, count=len(items))


class AsyncResult:
    """The result of an ``apply_async`` or ``map_async`` call."""

    def __init__(self, call: Call, pool: object) -> None:
        self._call = call
        self._pool = pool  # kept alive while its result is held

    @property
    def tree(self) -> str:
        """The call's job tree."""
        return self._call.tree

    def ready(self) -> bool:
        """Whether the call has finished (successfully or not)."""
        return self._call.done.is_set()

    def successful(self) -> bool:
        """Whether the call finished without an error.

        Raises:
            ValueError: it has not finished yet.
        """
        if not self.ready():
            raise ValueError(f"the call of {self._call.name} has not finished yet")
        return self._call.error is None

    def wait(self, timeout: float | None = None) -> None:
        """Waits until the call has finished, or ``timeout`` seconds."""
        self._call.done.wait(timeout)

    def get(self, timeout: float | None = None) -> Any:
        """The call's result: waits for it, at most ``timeout`` seconds.

        Raises:
            multiprocessing.TimeoutError: it did not finish in time.
            Exception: what the function raised on the first failing input,
                as itself (its ``__cause__`` names the input, log and tree).
            PoolError: a chunk was killed, lost or out of memory on every
                try (or the pool was stopped).
        """
        if not self._call.done.wait(timeout):
            import multiprocessing

            raise multiprocessing.TimeoutError(
                f"the call of {self._call.name} did not finish within {timeout} s")
        if self._call.error is not None:
            raise self._call.error
        results = self._call.results or []
        return results[0] if self._call.single else results


def stream(call: Call, ordered: bool) -> Iterator[Any]:
    """Yields a call's results as its chunks finish (in input order if
    ``ordered``), reading them from its tree while it runs."""
    waiting: dict[int, list[Any]] = {}  # finished chunks not yielded yet
    taken: set[int] = set()  # chunks read so far
    following = 0  # the next chunk to yield, in order
    while not call.placed.wait(POLL_SECONDS):
        pass
    reader = Reader(call.tree)
    try:
        while True:
            finished = call.done.is_set()
            fresh: Iterable[tuple[int, list[Any]]]
            if finished and call.results is not None:
                fresh = enumerate(split(call.results, call.chunksize))
            else:
                fresh = ((number - call.first_chunk, results)
                         for number, results in reader.new_chunks() if number in call.chunks)
            for number, results in fresh:
                if number not in taken:
                    taken.add(number)
                    waiting[number] = results
            progressed = False
            if ordered:
                while following in waiting:
                    yield from waiting.pop(following)
                    following += 1
                    progressed = True
            else:
                for number in sorted(waiting):
                    yield from waiting.pop(number)
                    progressed = True
            if finished:
                if call.error is not None:
                    raise call.error
                if not waiting:
                    return
            elif not progressed:
                call.done.wait(POLL_SECONDS)
    finally:
        reader.close()


class Waves:
    """Streams a call over an iterator of inputs, read as they are needed:
    ``size`` inputs at a time make one call (``submit``), the next made while
    the results of the one before are yielded. An error of the iterator is
    raised once the inputs before it are yielded; the inputs of a chunk (of
    ``unit`` inputs) that it cut short are not run, as with multiprocessing.

    When the pool is closed, :meth:`read_all` reads the rest of the inputs
    at once (the calls they make were made before the pool was closed)."""

    def __init__(self, submit: Callable[[list[Any]], Call], items: Iterator[Any], unit: int,
                 size: int, ordered: bool) -> None:
        self._submit = submit
        self._items = items
        self._unit, self._size, self._ordered = unit, size, ordered
        self._calls: list[Call] = []  # made, not yielded yet
        self._error: BaseException | None = None
        self._ended = False
        self._lock = threading.Lock()

    def _pull(self, size: float) -> None:
        """Reads up to ``size`` inputs and makes their call (holding the lock)."""
        taken: list[Any] = []
        while len(taken) < size and not self._ended:
            chunk = []
            try:
                for _ in range(self._unit):
                    chunk.append(next(self._items))
            except StopIteration:
                self._ended = True
                taken.extend(chunk)
                break
            except Exception as err:  # noqa: BLE001 - raised at its place in the results
                self._ended, self._error = True, err
                break
            taken.extend(chunk)
        if taken:
            self._calls.append(self._submit(taken))

    def read_all(self) -> None:
        """Reads every input left now, making its calls."""
        with self._lock:
            self._pull(float("inf"))

    def __iter__(self) -> Iterator[Any]:
        with self._lock:
            self._pull(self._size)
        while True:
            with self._lock:
                if not self._calls:
                    break
                call = self._calls.pop(0)
                if not self._calls:
                    self._pull(self._size)  # the next, while this one's results come
            yield from stream(call, self._ordered)
        if self._error is not None:
            raise self._error


def split(results: list[Any], size: int) -> list[list[Any]]:
    """The results, cut back into the chunks they came from."""
    return [results[i:i + size] for i in range(0, len(results), size)]
