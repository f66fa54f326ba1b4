"""Every jobtree option in one table: its name, kind, default and help.

The parser holds None for an option the user did not give, so that on a
restart the values stored with the tree apply unless the user overrides them.
:func:`resolve` turns parsed options (argparse or optparse) into a checked
:class:`Config`.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import optparse
import os
import re
from typing import Any, Callable

from .errors import BadOptionError, ResourceError
from .paths import check_tree_path, control_character
from .resources import format_bytes, parse_cpu, parse_duration, parse_factor, parse_size

LOG_LEVELS = {"DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARNING": logging.WARNING,
              "ERROR": logging.ERROR, "CRITICAL": logging.CRITICAL,
              "OFF": logging.CRITICAL + 10}


def _int_at_least(minimum: int) -> Callable[[Any, str], int]:
    def parse(value: Any, name: str) -> int:
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise BadOptionError(f"--{name} must be a whole number, not {value!r}.") from None
        if number < minimum:
            raise BadOptionError(f"--{name} must be at least {minimum}, not {number}.")
        return number
    return parse


def _checked(parser: Callable[[Any, str], Any]) -> Callable[[Any, str], Any]:
    def parse(value: Any, name: str) -> Any:
        try:
            return parser(value, f"--{name}")
        except ResourceError as err:
            raise BadOptionError(str(err)) from None
    return parse


def _log_level(value: Any, name: str) -> str:
    text = str(value).upper()
    if text not in LOG_LEVELS:
        raise BadOptionError(f"--{name} must be one of {', '.join(LOG_LEVELS)}, not {value!r}.")
    return text


def _text(value: Any, name: str) -> str:
    return str(value)


#: what a queue, partition, account, project or parallel environment name may
#: hold: it is written into the directive lines of job scripts (``#SBATCH``,
#: ``#$``, ``#PBS``, ``#BSUB``), where a quote, a blank or a line break would
#: change what the scheduler or the shell reads
_NAME = re.compile(r"[A-Za-z0-9_.@,:+=/-]+")
#: the characters :data:`_NAME` allows, as a message shows them
NAME_CHARACTERS = "letters, digits and _ . - @ , : + = /"


def name_problem(value: str) -> str | None:
    """Why ``value`` cannot be a scheduler name (queue, account, ...) on a
    directive line, or None if it can."""
    bad = control_character(value)
    if bad is not None:
        return f"holds a control character ({bad})"
    if not _NAME.fullmatch(value):
        odd = next((c for c in value if not _NAME.fullmatch(c)), "")
        return (f"holds {odd!r}, which a job script's directive line cannot carry safely "
                f"(a name may hold only {NAME_CHARACTERS})" if odd else "is empty")
    if value.startswith("-"):
        return "starts with '-', which the scheduler would read as an option of its own"
    return None


def _scheduler_name(value: Any, name: str) -> str:
    text = str(value)
    problem = name_problem(text)
    if problem is not None:
        raise BadOptionError(f"--{name} {text!r} {problem}. Give the name of a {name} "
                             f"of your cluster.")
    return text


def _tree(value: Any, name: str) -> str:
    return check_tree_path(str(value))


def _path(value: Any, name: str) -> str:
    """A file name, made absolute: it is stored with the tree and must mean
    the same file when the tree is continued from another folder."""
    return os.path.abspath(os.path.expanduser(str(value)))


def _flag(value: Any, name: str) -> bool:
    return bool(value)


_SIZE = _checked(parse_size)
_DURATION = _checked(parse_duration)
_CPU = _checked(parse_cpu)
_FACTOR = _checked(parse_factor)


def _FLOAT(value: Any, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BadOptionError(f"--{name} must be a number, not {value!r}.") from None
    if not number > 0:
        raise BadOptionError(f"--{name} must be more than 0, not {value!r}.")
    return number


@dataclasses.dataclass(frozen=True)
class Option:
    """One option: ``--name``, how to parse it, its default and help."""

    name: str
    parse: Callable[[Any, str], Any]
    default: Any
    help: str
    flag: bool = False
    metavar: str | None = None


OPTIONS: tuple[Option, ...] = (
    Option("jobTree", _tree, "./jobTree",
           "Directory holding the job tree; created if absent, continued if it exists "
           "(default: %(default)s).", metavar="DIR"),
    Option("batchSystem", _text, "singleMachine",
           "Where targets run: singleMachine (this machine), slurm, gridEngine, "
           "torque (pbs), pbspro, lsf, drmaa, or allocation (the nodes of the "
           "salloc/sbatch/qsub/bsub job this runs in) (default: %(default)s). A tree may move to "
           "another one when it is continued.", metavar="NAME"),
    Option("clusterConfig", _path, None,
           "The cluster config file (INI) with defaults for the scheduler: queue, "
           "account, parallel environment, extra directives, prologue lines, local "
           "scratch, limits (default: $JOBTREE_CLUSTER_CONFIG, else "
           "~/.config/jobtree/cluster.ini if it exists).", metavar="FILE"),
    Option("queue", _scheduler_name, None,
           "Partition or queue of cluster jobs (default: the config file's, else the "
           "scheduler's).", metavar="NAME"),
    Option("account", _scheduler_name, None,
           "Account or project cluster jobs are charged to (default: the config file's).",
           metavar="NAME"),
    Option("maxJobs", _int_at_least(1), None,
           "Most scheduler jobs (array tasks count one each) queued or running at once "
           "on a cluster (default: the config file's, else 1000).", metavar="N"),
    Option("submitRate", _FLOAT, None,
           "Most submit commands per second on a cluster (default: the config file's, "
           "else 2).", metavar="N"),
    Option("packTime", _DURATION, None,
           "Seconds a cluster job may go on running further small targets one after "
           "another (default: the config file's, else 60; 0 gives every target a "
           "job of its own).", metavar="TIME"),
    Option("pilots", _int_at_least(0), None,
           "Most pilot jobs at once on a cluster: long-lived jobs that run ready "
           "one-core targets one after another, each in its own process (default: the "
           "config file's, else 0: none). Their size is set in the config file "
           "(pilot_cores, pilot_memory, pilot_walltime, pilot_idle).", metavar="N"),
    Option("maxThreads", _int_at_least(1), None,
           "Most targets run at once by singleMachine (default: the number of usable cores).",
           metavar="N"),
    Option("maxCpus", _CPU, None,
           "Most cores in use at once, and the largest cpu request allowed "
           "(default: all cores for singleMachine; the scheduler's limit otherwise).",
           metavar="N"),
    Option("maxMemory", _SIZE, None,
           "Most memory in use at once, and the largest memory request allowed, e.g. 64G "
           "(default: physical memory for singleMachine).", metavar="SIZE"),
    Option("defaultMemory", _SIZE, 1024 ** 3,
           "Memory of targets that do not say, e.g. 2G (default: 1 GiB).", metavar="SIZE"),
    Option("defaultCpu", _CPU, 1, "Cores of targets that do not say (default: 1).",
           metavar="N"),
    Option("defaultDisk", _SIZE, None,
           "Local scratch of targets that do not say (default: no request).", metavar="SIZE"),
    Option("defaultTime", _DURATION, None,
           "Estimated wall time of targets that do not say, e.g. 4:00:00; an estimate "
           "never stops a target (default: none, and no wall time is asked of a cluster).",
           metavar="TIME"),
    Option("retryCount", _int_at_least(0), 2,
           "Times a failed target is tried again before it counts as failed "
           "(default: 2, so 3 tries).", metavar="N"),
    Option("memoryRetryFactor", _FACTOR, 2.0,
           "The try after one that ran out of memory asks for this many times the memory, "
           "up to --maxMemory (default: 2; 1 asks the same again).", metavar="X"),
    Option("timeRetryFactor", _FACTOR, 2.0,
           "The try after one that the scheduler stopped at its wall time asks for this "
           "many times the time estimate, up to --maxJobDuration (default: 2; 1 asks the "
           "same again).", metavar="X"),
    Option("maxJobDuration", _DURATION, None,
           "Kill (and retry) a target running longer than this, e.g. 12:00:00, on every "
           "batch system (default: never).", metavar="TIME"),
    Option("rescueJobsFrequency", _DURATION, 300.0,
           "Seconds between checks for targets the batch system lost (default: 300).",
           metavar="TIME"),
    Option("jobTime", _DURATION, 30.0,
           "A worker that finished a target with no children runs its follow-on itself "
           "while it has run for less than this many seconds (default: 30; 0 turns "
           "chaining off).", metavar="TIME"),
    Option("stats", _flag, False,
           "Record wall time, CPU time, wait and memory of every target, for jobTreeStats.",
           flag=True),
    Option("logLevel", _log_level, "INFO",
           "Master log level: DEBUG, INFO, WARNING, ERROR, CRITICAL or OFF (default: INFO).",
           metavar="LEVEL"),
    Option("logInfo", _flag, False, "Same as --logLevel INFO.", flag=True),
    Option("logDebug", _flag, False, "Same as --logLevel DEBUG.", flag=True),
    Option("logOff", _flag, False, "Same as --logLevel OFF.", flag=True),
    Option("logFile", _path, None, "Also write the master's log to this file.",
           metavar="FILE"),
    Option("rotatingLogging", _flag, False,
           "Rotate --logFile when it reaches --maxLogFileSize (keeps 3 old files).",
           flag=True),
    Option("maxLogFileSize", _SIZE, 64 * 1024 ** 2,
           "Largest log kept: the log of a failed attempt is cut to its last SIZE bytes, "
           "and --rotatingLogging rotates --logFile at this size (default: 64M).",
           metavar="SIZE"),
    Option("bigBatchSystem", _text, None,
           "A second batch system for big targets (those at or above a --big*Threshold).",
           metavar="NAME"),
    Option("bigMemoryThreshold", _SIZE, None,
           "Targets asking for at least this much memory go to --bigBatchSystem.",
           metavar="SIZE"),
    Option("bigCpuThreshold", _CPU, None,
           "Targets asking for at least this many cores go to --bigBatchSystem.",
           metavar="N"),
    Option("bigMaxCpus", _CPU, None, "--maxCpus for --bigBatchSystem.", metavar="N"),
    Option("bigMaxMemory", _SIZE, None, "--maxMemory for --bigBatchSystem.", metavar="SIZE"),
    Option("remotePython", _text, None,
           "For a remote --jobTree ssh://host/path: the Python on that host that has jobtree "
           "installed (default: $JOBTREE_REMOTE_PYTHON, else python3 on its PATH).",
           metavar="PATH"),
    Option("detach", _flag, False,
           "For a remote --jobTree ssh://host/path: return once the master runs there, "
           "instead of following it.", flag=True),
)

_BY_NAME = {option.name: option for option in OPTIONS}
# Options that only shape how this run logs, never stored with the tree.
_NOT_STORED = {"jobTree", "logInfo", "logDebug", "logOff", "remotePython", "detach"}


@dataclasses.dataclass(frozen=True)
class Config:
    """The checked options of one run of the master."""

    jobTree: str
    batchSystem: str
    clusterConfig: str | None
    queue: str | None
    account: str | None
    maxJobs: int | None
    submitRate: float | None
    packTime: float | None
    pilots: int | None
    maxThreads: int | None
    maxCpus: float | None
    maxMemory: int | None
    defaultMemory: int | None
    defaultCpu: float | None
    defaultDisk: int | None
    defaultTime: float | None
    retryCount: int
    memoryRetryFactor: float
    timeRetryFactor: float
    maxJobDuration: float | None
    rescueJobsFrequency: float
    jobTime: float
    stats: bool
    logLevel: str
    logInfo: bool
    logDebug: bool
    logOff: bool
    logFile: str | None
    rotatingLogging: bool
    maxLogFileSize: int
    bigBatchSystem: str | None
    bigMemoryThreshold: int | None
    bigCpuThreshold: float | None
    bigMaxCpus: float | None
    bigMaxMemory: int | None
    remotePython: str | None
    detach: bool

    def stored(self) -> dict[str, Any]:
        """The values kept with the tree (to be the defaults of a restart)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in _NOT_STORED}

    @property
    def log_level(self) -> int:
        """The numeric logging level."""
        return LOG_LEVELS[self.logLevel]


def add_options(parser: Any) -> None:
    """Adds jobtree's options to an argparse or optparse parser."""
    if isinstance(parser, argparse.ArgumentParser):
        group: Any = parser.add_argument_group("jobtree options")
        add, percent = group.add_argument, "%%"  # argparse formats help with %
    elif isinstance(parser, optparse.OptionParser):
        group = optparse.OptionGroup(parser, "jobtree options")
        parser.add_option_group(group)
        add, percent = group.add_option, "%"
    else:
        raise BadOptionError(
            f"addJobTreeOptions needs an argparse.ArgumentParser or optparse.OptionParser, "
            f"not {type(parser).__name__}.")
    for option in OPTIONS:
        kwargs: dict[str, Any] = {
            "dest": option.name,
            "help": option.help.replace("%(default)s", str(option.default)).replace(
                "%", percent),
            # None means "not given", so a restart keeps the tree's stored values
            "default": option.default if option.name == "jobTree" else None}
        if option.flag:
            kwargs["action"] = "store_true"
        else:
            kwargs["metavar"] = option.metavar
        add(f"--{option.name}", **kwargs)


def default_options() -> argparse.Namespace:
    """Options as a parser would give them with nothing on the command line."""
    namespace = argparse.Namespace()
    for option in OPTIONS:
        setattr(namespace, option.name, option.default if option.name == "jobTree" else None)
    return namespace


def resolve(options: Any, stored: dict[str, Any] | None = None) -> tuple[Config, list[str]]:
    """Checks parsed options, filling what was not given from ``stored`` (the
    tree's values from its last run) and then from the defaults.

    Returns:
        the Config, and a list of "name: old -> new" for values that differ
        from the stored ones.

    Raises:
        BadOptionError: naming the first bad option.
    """
    given_values = {option.name: getattr(options, option.name, None) for option in OPTIONS}
    for flag, level in (("logOff", "OFF"), ("logInfo", "INFO"), ("logDebug", "DEBUG")):
        if given_values[flag]:
            given_values["logLevel"] = level
    values: dict[str, Any] = {}
    changed: list[str] = []
    for option in OPTIONS:
        given = given_values[option.name]
        if option.flag and not given:
            given = None
        if given is not None:
            value = option.parse(given, option.name)
        elif stored is not None and option.name in stored:
            value = stored[option.name]
        else:
            value = option.default
        if (stored is not None and option.name in stored and given is not None
                and stored[option.name] != value):
            changed.append(f"{option.name}: {_show(stored[option.name])} -> {_show(value)}")
        values[option.name] = value
    if not values["jobTree"]:
        raise BadOptionError("--jobTree must name a directory.")
    values["jobTree"] = os.path.abspath(os.path.expanduser(values["jobTree"]))
    return Config(**values), changed


def _show(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1024 ** 2:
        return format_bytes(value)
    return repr(value)
