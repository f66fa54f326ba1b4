"""Resource requests (cpu, memory, time, disk) and the parsing of their values."""

from __future__ import annotations

import dataclasses
import math
import re
import sys
from typing import Union

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


@dataclasses.dataclass(frozen=True)
class Resources:
    """What one target asks for. None means "the tree's default".

    Attributes:
        cpu: cores.
        memory: bytes.
        time: expected wall time in seconds (the walltime asked of a scheduler).
        disk: bytes of local scratch.
    """

    cpu: float | None = None
    memory: int | None = None
    time: float | None = None
    disk: int | None = None

    @classmethod
    def parse(cls, time: SizeLike = None, memory: SizeLike = None,
              cpu: SizeLike = None, disk: SizeLike = None) -> Resources:
        """Builds Resources from user values, checking each.

        Raises:
            ResourceError: a value is not valid.
        """
        return cls(cpu=parse_cpu(cpu), memory=parse_size(memory, "memory"),
                   time=parse_duration(time), disk=parse_size(disk, "disk"))

    def with_defaults(self, defaults: Resources) -> Resources:
        """Returns these resources with unset values taken from ``defaults``."""
        return Resources(
            cpu=self.cpu if self.cpu is not None else defaults.cpu,
            memory=self.memory if self.memory is not None else defaults.memory,
            time=self.time if self.time is not None else defaults.time,
            disk=self.disk if self.disk is not None else defaults.disk)

    def to_dict(self) -> dict[str, float | int | None]:
        """The resources as a plain dict (for the job store)."""
        return dataclasses.asdict(self)

    def describe(self) -> str:
        """A short text such as ``1 cpu, 2.0 GiB``."""
        parts = []
        if self.cpu is not None:
            parts.append(f"{self.cpu:g} cpu")
        if self.memory is not None:
            parts.append(format_bytes(self.memory))
        if self.time is not None:
            parts.append(format_duration(self.time))
        if self.disk is not None:
            parts.append(f"{format_bytes(self.disk)} disk")
        return ", ".join(parts) or "defaults"
