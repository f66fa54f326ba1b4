"""Pickling targets so that fixed code runs after a restart.

Classes and functions are pickled by reference to the module that defines
them, so a worker re-imports them and a user who fixes a script gets the fixed
code. A script run as ``__main__`` is not importable under that name: its
top-level classes and functions are pickled as (script path, qualified name),
and the worker imports the script file as a module of its own (its
``if __name__ == "__main__":`` block does not run). Only what cannot be
imported (lambdas, closures, interactive definitions) is pickled by value.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import io
import linecache
import os
import pickle
import sys
import types
from typing import Any

import cloudpickle

from .errors import TargetDefinitionError, UnpicklableTargetError

PROTOCOL = 5
#: set in the environment while a worker imports a pipeline script
IMPORTING_SCRIPT = "JOBTREE_IMPORTING_SCRIPT"


@functools.lru_cache(maxsize=256)
def _script_module_name(path: str) -> str:
    """The name under which the script at ``path`` is imported on workers."""
    stem = os.path.splitext(os.path.basename(path))[0]
    safe = "".join(c if c.isalnum() else "_" for c in stem)
    digest = hashlib.sha1(path.encode()).hexdigest()[:8]
    return f"_jobtree_script_{safe}_{digest}"


def import_script(path: str) -> types.ModuleType:
    """Imports the script file at ``path`` as a module (once per process).

    Its folder goes first on ``sys.path`` so its neighbours import too.
    """
    name = _script_module_name(path)
    folder = os.path.dirname(path)
    if folder not in sys.path:  # also for a module imported already: a chained
        sys.path.insert(0, folder)  # target's sys.path is the one its job began with
    module = sys.modules.get(name)
    if module is not None:
        return module
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import the script {path}")
    module = importlib.util.module_from_spec(spec)
    module.__jobtree_script__ = path  # type: ignore[attr-defined]
    sys.modules[name] = module
    os.environ[IMPORTING_SCRIPT] = path
    try:
        spec.loader.exec_module(module)
    except SystemExit as err:
        del sys.modules[name]
        raise TargetDefinitionError(
            f"Importing the script {path} (to load its target classes) ran its command "
            f"line, which exited with {err.code!r}. Workers import the script as a module, "
            f"so put the code that parses options and starts the tree under "
            f"`if __name__ == \"__main__\":`.") from None
    except BaseException:
        del sys.modules[name]
        raise
    finally:
        del os.environ[IMPORTING_SCRIPT]
    return module


def load_script_attribute(path: str, qualname: str) -> Any:
    """Finds ``qualname`` in the script at ``path`` (the unpickling side).

    In the process that runs the script as ``__main__`` (a Pool reading its
    results, say), that module is used, so its classes stay the same ones.
    """
    obj: Any = _running_script(path) or import_script(path)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _running_script(path: str) -> types.ModuleType | None:
    """``__main__``, if this process runs the script at ``path``."""
    main = sys.modules.get("__main__")
    file = getattr(main, "__file__", None)
    if (main is not None and getattr(main, "__spec__", None) is None
            and isinstance(file, str) and os.path.abspath(file) == path):
        return main
    return None


def _script_path_of(module_name: str | None) -> str | None:
    """The file of a script module whose objects must go by script reference."""
    if module_name is None:
        return None
    module = sys.modules.get(module_name)
    if module is None:
        return None
    path = getattr(module, "__jobtree_script__", None)
    if path is not None:
        return str(path)
    if module_name == "__main__" and getattr(module, "__spec__", None) is None:
        file = getattr(module, "__file__", None)
        if isinstance(file, str) and file.endswith(".py") and os.path.isfile(file):
            return os.path.abspath(file)
    return None


def load_module_attribute(module_name: str, qualname: str) -> Any:
    """Finds ``qualname`` in the importable module ``module_name``."""
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _main_module_name() -> str | None:
    """The importable name of ``__main__`` when run as ``python -m NAME``."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    name = getattr(spec, "name", None)
    return name if isinstance(name, str) and name != "__main__" else None


class _Pickler(cloudpickle.Pickler):  # type: ignore[misc]
    """cloudpickle, but script-level definitions go by (path, qualname)."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, io.IOBase) and not isinstance(obj, (io.BytesIO, io.StringIO)) \
                and obj not in (sys.stdout, sys.stderr):
            _refuse_open_file(obj)
        if isinstance(obj, types.MethodType) and isinstance(obj.__self__, type) and getattr(
                obj.__self__, obj.__name__, None) == obj:
            # a classmethod, by its class and name: the class goes by reference
            # when it can, so the method's code is imported (not copied)
            return getattr, (obj.__self__, obj.__name__)
        if isinstance(obj, (type, types.FunctionType)):
            qualname = getattr(obj, "__qualname__", "")
            module = getattr(obj, "__module__", None)
            if "<" not in qualname and _is_top_level(obj, qualname):
                path = _script_path_of(module)
                if path is not None and (module != "__main__" or _defined_unindented(obj)):
                    return load_script_attribute, (path, qualname)
                if module == "__main__" and _main_module_name():
                    return load_module_attribute, (_main_module_name(), qualname)
        return super().reducer_override(obj)


def _refuse_open_file(handle: Any) -> None:
    """Refuses to pickle an open file (cloudpickle would keep a snapshot of a
    text file's contents, which is not the file a target would read later).

    Raises:
        pickle.PicklingError: naming the file.
    """
    name = getattr(handle, "name", None)
    shown = f" {name!r}" if isinstance(name, (str, bytes)) else ""
    raise pickle.PicklingError(
        f"cannot pickle the open file{shown} ({type(handle).__name__}); keep its name and "
        f"open it inside run()")


def _defined_unindented(obj: Any) -> bool:
    """Whether a definition of the running script starts at column 0: one in
    an indented block (``if __name__ == "__main__":``) does not exist when a
    worker imports the script, so it must go by value."""
    code = getattr(obj, "__code__", None)
    line = code.co_firstlineno if code is not None else getattr(obj, "__firstlineno__", None)
    filename = code.co_filename if code is not None else getattr(
        sys.modules.get("__main__"), "__file__", None)
    if not isinstance(line, int) or not isinstance(filename, str):
        return True  # a class before Python 3.13: assume it is importable
    text = linecache.getline(filename, line)
    return not text or not text[0].isspace()


def _is_top_level(obj: Any, qualname: str) -> bool:
    module = sys.modules.get(obj.__module__)
    found: Any = module
    for part in qualname.split("."):
        found = getattr(found, part, None)
    return found is obj


def dumps(obj: Any) -> bytes:
    """Pickles ``obj`` with the rules of this module."""
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=PROTOCOL).dump(obj)
    return buffer.getvalue()


def loads(data: bytes) -> Any:
    """Unpickles what :func:`dumps` wrote."""
    return pickle.loads(data)


def dump_target(target: Any) -> bytes:
    """Pickles a target, explaining which attribute is at fault if it cannot.

    Raises:
        UnpicklableTargetError: naming the target and the attribute.
    """
    try:
        return dumps(target)
    except Exception as err:  # noqa: BLE001 - any pickling failure is reported
        raise UnpicklableTargetError(_explain(target, err)) from err


def _explain(target: Any, err: Exception) -> str:
    name = type(target).__name__
    culprit = _find_unpicklable(target, f"{name}", depth=3)
    where = (f"its attribute {culprit[0]} holds a {culprit[1]}, which cannot be pickled"
             if culprit else "it cannot be pickled")
    return (f"The target {name} cannot be saved to the job tree: {where} "
            f"({type(err).__name__}: {err}). Targets are pickled so they can run in "
            f"other processes and after a restart; keep only picklable values "
            f"(file names, numbers, strings, lists, dicts) as attributes, and open "
            f"files, connections and locks inside run().")


def _find_unpicklable(obj: Any, path: str, depth: int) -> tuple[str, str] | None:
    """Walks attributes and containers to find the first unpicklable leaf."""
    if depth < 0:
        return None
    items: list[tuple[str, Any]] = []
    state = getattr(obj, "__dict__", None)
    if isinstance(obj, dict):
        items = [(f"{path}[{k!r}]", v) for k, v in obj.items()]
    elif isinstance(obj, (list, tuple, set, frozenset)):
        items = [(f"{path}[{i}]", v) for i, v in enumerate(obj)]
    elif isinstance(state, dict):
        items = [(f"{path}.{k}", v) for k, v in state.items()
                 if not k.startswith("_Target__") and not k.startswith("_jt_")]
    for label, value in items:
        try:
            dumps(value)
        except Exception:  # noqa: BLE001
            deeper = _find_unpicklable(value, label, depth - 1)
            return deeper or (f"'{label.split('.', 1)[-1]}'" if "." in label else f"'{label}'",
                              type(value).__qualname__)
    return None
