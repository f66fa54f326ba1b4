"""Resource requests (cpu, memory, time, disk, the hard time limit) and the
parsing of their values."""

from __future__ import annotations

import base64
import dataclasses
import math
import re
import sys
from typing import Any, Union

from .errors import ResourceError

SizeLike = Union[int, float, str, None]

_UNITS = {"": 1, "B": 1,
          "K": 1024, "KB": 1024, "KIB": 1024,
          "M": 1024 ** 2, "MB": 1024 ** 2, "MIB": 1024 ** 2,
          "G": 1024 ** 3, "GB": 1024 ** 3, "GIB": 1024 ** 3,
          "T": 1024 ** 4, "TB": 1024 ** 4, "TIB": 1024 ** 4}
_SIZE_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*$")
_DURATION_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def _unset(value: object) -> bool:
    """Classic jobTree scripts pass sys.maxsize (sys.maxint) to mean "not set"."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= sys.maxsize


def parse_size(value: SizeLike, what: str = "memory") -> int | None:
    """Turns a size (bytes as a number, or a string like ``"2G"``) into bytes.

    Units are binary (K = 1024). None stays None (use the default).

    Raises:
        ResourceError: the value is negative or not a size.
    """
    if value is None or _unset(value):
        return None
    if isinstance(value, bool):
        raise ResourceError(f"{what} must be a size such as 2G or 512M, not {value!r}.")
    if isinstance(value, (int, float)):
        number, unit = float(value), ""
    else:
        match = _SIZE_RE.match(str(value))
        if not match or match.group(2).upper() not in _UNITS:
            raise ResourceError(
                f"{what} {value!r} is not a size: give bytes, or a number with "
                f"K, M, G or T (binary units), for example 2G or 512M.")
        number, unit = float(match.group(1)), match.group(2).upper()
    if number < 0 or math.isnan(number) or math.isinf(number):
        raise ResourceError(f"{what} must be a positive size, not {value!r}.")
    return int(math.ceil(number * _UNITS[unit]))


def parse_duration(value: SizeLike, what: str = "time") -> float | None:
    """Turns a duration into seconds.

    Accepts seconds as a number, ``"[D-]HH:MM:SS"``, ``"MM:SS"``, or a number
    with a unit (``"90s"``, ``"30m"``, ``"2h"``, ``"1d"``). None stays None.

    Raises:
        ResourceError: the value is negative or not a duration.
    """
    if value is None or _unset(value):
        return None
    if isinstance(value, bool):
        raise ResourceError(f"{what} must be a duration, not {value!r}.")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        seconds = _parse_duration_text(str(value).strip(), what)
    if seconds < 0 or math.isnan(seconds):
        raise ResourceError(f"{what} must be a positive duration, not {value!r}.")
    return seconds


def _parse_duration_text(text: str, what: str) -> float:
    bad = ResourceError(
        f"{what} {text!r} is not a duration: give seconds, HH:MM:SS, D-HH:MM:SS, "
        f"or a number with s, m, h or d (for example 1:30:00 or 90m).")
    days = 0.0
    if "-" in text[1:]:
        day_text, text = text.split("-", 1)
        try:
            days = float(day_text)
        except ValueError:
            raise bad from None
    if ":" in text:
        parts = text.split(":")
        if len(parts) > 3:
            raise bad
        try:
            numbers = [float(p) for p in parts]
        except ValueError:
            raise bad from None
        seconds = 0.0
        for number in numbers:
            seconds = seconds * 60 + number
        if len(parts) == 2 and days:
            seconds *= 60  # D-HH:MM
        return days * 86400 + seconds
    match = re.match(r"^([0-9]*\.?[0-9]+)\s*([a-z]*)$", text.lower())
    if not match or match.group(2) not in ("", *_DURATION_UNITS):
        raise bad
    return days * 86400 + float(match.group(1)) * _DURATION_UNITS.get(match.group(2) or "s", 1)


def parse_cpu(value: SizeLike, what: str = "cpu") -> float | None:
    """Checks a cpu count (a positive number; fractions are allowed locally)."""
    if value is None or _unset(value):
        return None
    try:
        cpu = float(value)
    except (TypeError, ValueError):
        raise ResourceError(f"{what} must be a number of cores, not {value!r}.") from None
    if cpu <= 0 or math.isnan(cpu) or math.isinf(cpu):
        raise ResourceError(f"{what} must be a positive number of cores, not {value!r}.")
    return int(cpu) if cpu == int(cpu) else cpu


def parse_factor(value: object, what: str) -> float | None:
    """Checks a retry factor: a number of at least 1 (1 asks the same again).

    Raises:
        ResourceError: the value is not a number, or is under 1.
    """
    if value is None:
        return None
    try:
        factor = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ResourceError(f"{what} must be a number of at least 1, not {value!r}.") from None
    if isinstance(value, bool) or not 1 <= factor < math.inf:
        raise ResourceError(f"{what} must be a number of at least 1 (1 asks the same again "
                            f"after a try that ran out of it), not {value!r}.")
    return factor


def parse_priority(value: object, what: str = "priority") -> int:
    """Checks a target's priority: a whole number, negative or not (None: 0).

    Raises:
        ResourceError: the value is not a whole number.
    """
    if value is None:
        return 0
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number) or number != int(number):
        raise ResourceError(f"{what} must be a whole number (higher runs first; the default "
                            f"is 0, and it may be negative), not {value!r}.")
    return int(number)


#: what a ``request`` function may return, and how each value is read
_REQUESTED = {"memory": parse_size, "time": parse_duration, "cpu": parse_cpu, "disk": parse_size}


def call_request(function: Any, attempt: int, reason: str | None) -> dict[str, Any]:
    """Calls a target's ``request`` function for one try, and checks its answer.

    Args:
        function: the function, or its pickle as :func:`pickle_request` made it.
        attempt: the number of the try (1 for the first).
        reason: why the try before it failed (``"out of memory"``,
            ``"timeout"``, ...), None for the first.

    Returns:
        the values it gave, read as Resources holds them (bytes, seconds).

    Raises:
        ResourceError: it cannot be loaded, raises, or returns something else
            than a dict of memory, time, cpu and disk.
    """
    if isinstance(function, str):
        from . import serialize  # only where a target gives a request function
        try:
            function = serialize.loads(base64.b64decode(function))
        except Exception as err:  # noqa: BLE001 - any failure to load is the user's
            raise ResourceError(
                f"the target's request function cannot be loaded ({type(err).__name__}: "
                f"{err}); define it where the master can import it (at the top level of "
                f"the script or of a module), or as a lambda") from None
    try:
        answer = function(attempt, reason)
    except Exception as err:  # noqa: BLE001 - the user's function
        raise ResourceError(f"the target's request function raised {type(err).__name__}: "
                            f"{err} (for try {attempt} after {reason or 'nothing'})") from None
    if not isinstance(answer, dict) or not set(answer) <= set(_REQUESTED):
        raise ResourceError(
            f"the target's request function must return a dict with some of "
            f"{', '.join(_REQUESTED)} (e.g. {{'memory': f'{{2 * attempt}}G'}}), not "
            f"{answer!r}.")
    return {key: _REQUESTED[key](value, key) for key, value in answer.items()}


def pickle_request(function: object) -> str | None:
    """A ``request`` function as Resources keeps it (None stays None).

    Raises:
        ResourceError: it cannot be pickled.
    """
    if function is None:
        return None
    from . import serialize
    try:
        return base64.b64encode(serialize.dumps(function)).decode()
    except Exception as err:  # noqa: BLE001
        raise ResourceError(f"the target's request function cannot be pickled "
                            f"({type(err).__name__}: {err}).") from None


def format_bytes(size: float | None) -> str:
    """Formats bytes for people: ``2.0 GiB``."""
    if size is None:
        return "default"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def format_duration(seconds: float | None) -> str:
    """Formats seconds for people: ``1:02:03`` or ``4.2s``."""
    if seconds is None:
        return "default"
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(round(seconds))
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{days}-{text}" if days else text


def format_seconds(value: float | None) -> str:
    """Formats a measured run time for tables: ``-`` if unknown, then
    ``0.05ms``, ``12ms``, ``3.25s``, or ``1:02:03`` from a minute on."""
    if value is None:
        return "-"
    if value == 0:
        return "0"
    if value < 0.001:
        return f"{value * 1000:.2f}ms"
    if value < 1:
        return f"{value * 1000:.0f}ms"
    if value < 60:
        return f"{value:.2f}s"
    return format_duration(value)


def _count(value: object, what: str) -> int | None:
    """A whole positive count (gpus, nodes, processes); None stays None."""
    if value is None or _unset(value):
        return None
    if isinstance(value, bool):
        raise ResourceError(f"{what} must be a whole number, not {value!r}.")
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ResourceError(f"{what} must be a whole number, not {value!r}.") from None
    if number != int(number) or number < 0:
        raise ResourceError(f"{what} must be a whole number of at least 0, not {value!r}.")
    return int(number)


def _name(value: object, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or any(c.isspace() for c in value):
        raise ResourceError(f"{what} must be a name without spaces, not {value!r}.")
    return value


def _directives(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    try:
        items = tuple(str(v).strip() for v in value)  # type: ignore[attr-defined]
    except TypeError:
        raise ResourceError(f"directives must be a list of strings, not {value!r}.") from None
    if any("\n" in item for item in items):
        raise ResourceError("each directive must be one line.")
    return tuple(item for item in items if item)


@dataclasses.dataclass(frozen=True)
class Resources:
    """What one target asks for. None means "the tree's default".

    Attributes:
        cpu: cores (of each process, for an MPI target).
        memory: bytes (of each node, for a multi-node target).
        time: expected wall time in seconds: an estimate, which guides packing,
            chaining and the wall time asked of a scheduler, and never stops a target.
        disk: bytes of local scratch.
        gpus: GPUs (of each node).
        nodes: nodes, for an MPI target (cluster batch systems only).
        processes: processes per node, for an MPI target (cluster batch systems only).
        queue: the partition or queue (default: the cluster config's).
        account: the account or project to charge (default: the cluster config's).
        directives: scheduler directives added verbatim to this target's job,
            without the prefix (e.g. ``["--constraint=avx2"]`` on Slurm).
        time_limit: a hard wall-time limit in seconds (the target's ``timeLimit``):
            a run over it is stopped and fails, on every batch system.
        memory_retry_factor: what the memory asked is multiplied by for the
            try after one that ran out of memory (the target's
            ``memoryRetryFactor``; 1: ask the same again).
        time_retry_factor: what the ``time`` estimate is multiplied by for the
            try after one the scheduler stopped at its wall time (the
            target's ``timeRetryFactor``; 1: ask the same again).

        request_fn: the target's ``request`` function (the request of each
            try from its number and the last try's reason), pickled and in
            base64; see :func:`call_request`.
    """

    cpu: float | None = None
    memory: int | None = None
    time: float | None = None
    disk: int | None = None
    gpus: int | None = None
    nodes: int | None = None
    processes: int | None = None
    queue: str | None = None
    account: str | None = None
    directives: tuple[str, ...] = ()
    time_limit: float | None = None
    memory_retry_factor: float | None = None
    time_retry_factor: float | None = None
    request_fn: str | None = None

    @classmethod
    def parse(cls, time: SizeLike = None, memory: SizeLike = None,
              cpu: SizeLike = None, disk: SizeLike = None, gpus: object = None,
              nodes: object = None, processes: object = None, queue: object = None,
              account: object = None, directives: object = None,
              time_limit: SizeLike = None, memory_retry_factor: object = None,
              time_retry_factor: object = None, request: object = None) -> Resources:
        """Builds Resources from user values, checking each.

        Raises:
            ResourceError: a value is not valid.
        """
        nodes_n, processes_n = _count(nodes, "nodes"), _count(processes, "processes")
        if nodes_n == 0 or processes_n == 0:
            raise ResourceError("nodes and processes must be at least 1.")
        limit = parse_duration(time_limit, "timeLimit")
        if limit == 0:
            raise ResourceError("timeLimit must be more than 0 seconds; leave it out (None) "
                                "for no limit.")
        if request is not None and not callable(request):
            raise ResourceError(f"request must be a function of (attempt, reason) that "
                                f"returns a dict such as {{'memory': '4G'}}, not {request!r}.")
        first = call_request(request, 1, None) if request is not None else {}
        return cls(cpu=first.get("cpu", parse_cpu(cpu)),
                   memory=first.get("memory", parse_size(memory, "memory")),
                   time=first.get("time", parse_duration(time)),
                   disk=first.get("disk", parse_size(disk, "disk")),
                   gpus=_count(gpus, "gpus") or None, nodes=nodes_n, processes=processes_n,
                   queue=_name(queue, "queue"), account=_name(account, "account"),
                   directives=_directives(directives), time_limit=limit,
                   memory_retry_factor=parse_factor(memory_retry_factor, "memoryRetryFactor"),
                   time_retry_factor=parse_factor(time_retry_factor, "timeRetryFactor"),
                   request_fn=pickle_request(request))

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Resources:
        """The inverse of :meth:`to_dict` (unknown keys are ignored)."""
        if not data:
            return cls()
        values = {name: data[name] for name in _FIELDS if name in data}
        values["directives"] = tuple(data.get("directives") or ())
        return cls(**values)

    def with_defaults(self, defaults: Resources) -> Resources:
        """Returns these resources with unset values taken from ``defaults``."""
        # getattr: a target pickled before a field existed lacks it in __dict__
        mine = {name: getattr(self, name) for name in _FIELDS}
        return Resources(**{name: mine[name] if mine[name] not in (None, ())
                            else getattr(defaults, name) for name in _FIELDS})

    def to_dict(self) -> dict[str, Any]:
        """The resources as a plain dict (for the job store)."""
        data = {name: getattr(self, name) for name in _FIELDS}
        data["directives"] = list(self.directives)
        return data

    def cluster_only(self) -> dict[str, Any]:
        """The values beyond cpu, memory, time and disk that are set (stored as
        the job's ``extra`` resources: the cluster-only ones, and ``time_limit``),
        or an empty dict."""
        return {k: v for k, v in self.to_dict().items()
                if k not in ("cpu", "memory", "time", "disk") and v not in (None, [], ())}

    def describe(self) -> str:
        """A short text such as ``1 cpu, 2.0 GiB``."""
        parts = []
        if self.cpu is not None:
            parts.append(f"{self.cpu:g} cpu")
        if self.memory is not None:
            parts.append(format_bytes(self.memory))
        if self.time is not None:
            parts.append(format_duration(self.time))
        if self.time_limit is not None:
            parts.append(f"timeLimit {format_duration(self.time_limit)}")
        if self.disk is not None:
            parts.append(f"{format_bytes(self.disk)} disk")
        if self.gpus:
            parts.append(f"{self.gpus} gpu")
        if self.nodes or self.processes:
            parts.append(f"{self.nodes or 1} nodes x {self.processes or 1} processes")
        if self.queue:
            parts.append(f"queue {self.queue}")
        return ", ".join(parts) or "defaults"


#: the names of Resources' fields, in order
_FIELDS = tuple(f.name for f in dataclasses.fields(Resources))
