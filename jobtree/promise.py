"""Return values and promises.

``target.rv()`` is a :class:`Promise` of the value ``target.run()`` will
return. Passed (at any depth inside lists, dicts or objects) to a target that
runs after ``target`` — one of its children, or the follow-on of the target
that added it — it is replaced by the value when that target is loaded on its
worker.

A promise names its target by a random token, given to the target the first
time ``rv()`` is called on it. When a worker pickles the targets a run added,
it collects the tokens their pickles hold (a target's *needs*); the master
binds each token to the job id the target gets, stores every value a run
returned, and hands a job the values it needs with its input. A worker never
reads the index.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import uuid
from typing import Any, Iterator

from .errors import JobTreeError

#: values up to this many pickled bytes are kept in the index; larger ones in
#: a file of the tree's values/ folder
INLINE_LIMIT = 64 * 1024


class PromiseError(JobTreeError):
    """A promised value is not available, or a promise went to a target that
    may run before the promised one."""


class ReturnValueError(PromiseError):
    """A stored return value cannot be read back: its file in the tree's
    ``values/`` folder is missing or damaged, or ``run()`` returned a value
    that could not be pickled. The message names the target, and the file or
    the value's type. A target that needs such a value fails for good (trying
    it again cannot bring the value back)."""


class Unstored:
    """Kept in place of a value ``run()`` returned that could not be pickled,
    so that whoever reads the value learns why there is none.

    Args:
        description: the target whose run() returned it.
        kind: the value's type, as :func:`type_name` names it.
        error: why it could not be pickled (``TypeError: ...``).
    """

    __slots__ = ("description", "kind", "error")

    def __init__(self, description: str, kind: str, error: str) -> None:
        self.description = description
        self.kind = kind
        self.error = error

    def __reduce__(self) -> tuple[Any, ...]:
        return (Unstored, (self.description, self.kind, self.error))

    def message(self) -> str:
        """The error of a reader of the value."""
        return (f"{self.description}.run() returned a {self.kind}, which could not be "
                f"pickled ({self.error}), so its value was not stored (the tree warned of "
                f"it when the target ran). Make run() return picklable data (numbers, "
                f"strings, lists, dicts, file names), then run the pipeline again in a new "
                f"tree.")


def type_name(value: Any) -> str:
    """The type of ``value`` as messages name it: ``Class (module.Class)``,
    or ``Class`` for a builtin."""
    kind = type(value)
    module = getattr(kind, "__module__", "builtins")
    name = kind.__qualname__
    return name if module == "builtins" else f"{name} ({module}.{name})"


class Promise:
    """The value ``run()`` of a target will return (or a part of it).

    Made by :meth:`jobtree.Target.rv`; resolved when a target holding it is
    loaded to run. Outside a run it stays a placeholder.
    """

    __slots__ = ("token", "path", "description")

    def __init__(self, token: str, path: tuple[Any, ...] = (), description: str = "") -> None:
        self.token = token
        self.path = tuple(path)
        self.description = description

    def __reduce__(self) -> tuple[Any, ...]:
        if _collecting:
            _collecting[-1].setdefault(self.token, self.description or self.token)
        return (_resolve, (self.token, self.path, self.description))

    def __repr__(self) -> str:
        index = "".join(f"[{p!r}]" for p in self.path)
        return f"<promise of {self.description or self.token}.run(){index}>"


def new_token() -> str:
    """A token for a target's promises."""
    return uuid.uuid4().hex


# ------------------------------------------------------------- pickling side
_collecting: list[dict[str, str]] = []


@contextlib.contextmanager
def collecting() -> Iterator[dict[str, str]]:
    """Collects the promises pickled inside the block: token -> description
    of the promised target."""
    found: dict[str, str] = {}
    _collecting.append(found)
    try:
        yield found
    finally:
        _collecting.pop()


def dump_with_needs(target: Any) -> tuple[bytes, dict[str, str], str | None]:
    """Pickles a target (as :func:`serialize.dump_target`), with the promises
    it holds (token -> description of the promised target: its needs) and its
    own promise token, if ``rv()`` was called on it. A promise of the target
    itself, held by what it added before it ran, is not a need: it is resolved
    when those run."""
    from . import serialize  # cloudpickle: not at `import jobtree`, which imports this

    with collecting() as needs:
        data = serialize.dump_target(target)
    token: str | None = target.__dict__.get("_jt_token")
    if token is not None:
        needs.pop(token, None)
    return data, needs, token


# ----------------------------------------------------------- unpickling side
class _Values:
    """The values a job was handed: token -> ("inline", bytes) |
    ("file", path) | ("missing", why), decoded once each."""

    def __init__(self, given: dict[str, tuple[str, Any]]) -> None:
        self.given = given
        self.decoded: dict[str, Any] = {}

    def value(self, token: str, description: str) -> Any:
        if token in self.decoded:
            return self.decoded[token]
        if token not in self.given:
            return _UNKNOWN
        kind, data = self.given[token]
        if kind == "missing":
            raise PromiseError(
                f"The value promised by {description or 'a target'}.rv() is not "
                f"available: {data or 'the master did not hand it over'}.")
        value = load_value((kind, data), description)
        self.decoded[token] = value
        return value


def load_value(stored: tuple[str, Any], description: str = "") -> Any:
    """Unpickles a stored value: ("inline", pickle) or ("file", path).

    Raises:
        ReturnValueError: its file is missing or damaged (naming the file), or
            run() returned a value that could not be pickled.
    """
    kind, data = stored
    target = description or "a target"
    where = "the tree's index"
    if kind == "file":
        where = str(data)
        try:
            with open(data, "rb") as handle:
                data = handle.read()
        except OSError as err:
            raise ReturnValueError(
                f"The value of {target} is stored in {where}, which cannot be read "
                f"({err.strerror}). If the file was removed, the value is lost: run that "
                f"target again in a new tree.") from None
    try:
        value = pickle.loads(data)
    except JobTreeError:
        raise  # a promise inside the value that cannot be resolved says why itself
    except Exception as err:  # noqa: BLE001 - damage shows in many ways
        raise ReturnValueError(
            f"The value that {target}.run() returned, stored in {where}, cannot be "
            f"unpickled ({type(err).__name__}: {err}). Either it is damaged (cut short or "
            f"overwritten: the value is lost, so run that target again in a new tree), or "
            f"a module or class it needs is missing here (install or restore it, then "
            f"continue the tree).") from None
    if isinstance(value, Unstored):
        raise ReturnValueError(value.message())
    return value


_resolving: list[_Values] = []
#: a promise the job was not handed a value for: it stays a promise (one that
#: a target holds of itself, say, for a follow-on added before it ran)
_UNKNOWN = object()


@contextlib.contextmanager
def resolving(values: dict[str, tuple[str, Any]] | None) -> Iterator[None]:
    """Makes the promises unpickled inside the block resolve to ``values``."""
    _resolving.append(_Values(values or {}))
    try:
        yield
    finally:
        _resolving.pop()


def _resolve(token: str, path: tuple[Any, ...], description: str) -> Any:
    """Unpickles a promise: its value inside a run, else the promise itself."""
    if not _resolving:
        return Promise(token, path, description)
    value = _resolving[-1].value(token, description)
    if value is _UNKNOWN:
        return Promise(token, path, description)
    for step in path:
        try:
            value = value[step]
        except (LookupError, TypeError) as err:
            raise PromiseError(
                f"{description}.rv({', '.join(map(repr, path))}) cannot be taken from the "
                f"value {description}.run() returned, a {type(value).__name__}: "
                f"{type(err).__name__}: {err}.") from None
    return value


def value_file(folder: str, job: int, attempt: int, step: int) -> str:
    """Where a worker keeps a large value: one file per (job, attempt, step)."""
    return os.path.join(folder, f"{job}.{attempt}.{step}")

