"""The per-cluster config file and the options that override it.

The file is INI (``configparser``). Section ``[cluster]`` applies to every
scheduler; a section named after a batch system (``[slurm]``,
``[gridEngine]``, ``[torque]``, ``[pbspro]``, ``[lsf]``) overrides it for
that one. Command-line options (``--queue``, ``--account``, ``--maxJobs``,
``--submitRate``, ``--packTime``) override both. The file is found at
``--clusterConfig``, else ``$JOBTREE_CLUSTER_CONFIG``, else
``~/.config/jobtree/cluster.ini`` if it exists. See docs/clusters.md.
"""

from __future__ import annotations

import configparser
import dataclasses
import os
import re
from typing import Any, Callable

from ..errors import BadOptionError, ResourceError
from ..options import name_problem
from ..paths import control_character
from ..resources import parse_cpu, parse_duration, parse_size


#: the least memory asked of a scheduler for one job: a job's runner and the
#: worker it forks take 48 MB resident (61 MB virtual) before the pipeline's
#: imports and data (docs/resources.md has the measurements)
MEMORY_FLOOR = 256 * 1024 ** 2
#: what Grid Engine's h_vmem adds to the memory asked for: address space a
#: process maps beyond what it uses (each thread reserves an 8 MiB stack and
#: a 64 MiB malloc arena)
VMEM_ALLOWANCE = 512 * 1024 ** 2
#: a resource name the config may give for disk (letters, digits, _ . -)
_RESOURCE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


@dataclasses.dataclass(frozen=True)
class ClusterSettings:
    """How a cluster batch system behaves (defaults, config file, options).

    Attributes:
        workdir: the folder for job scripts, manifests, exit files and the
            schedulers' own output (``TREE/batch``); None until the tree exists.
        job_name: the name of every job of the tree.
        tree_id: the tree's id (the runner cleans its stale local temp dirs).
        queue: default partition or queue.
        account: default account or project.
        parallel_environment: Grid Engine's parallel environment for multi-slot jobs.
        extra: directives added to every job script, verbatim.
        prologue: shell lines run by every job before the worker (``module load …``).
        local_scratch: node-local folder for local temp dirs (may use $VARS of the node).
        max_jobs: most scheduler jobs (array tasks count one each) queued or running.
        submit_rate: most submit commands per second.
        poll_interval: seconds between status commands.
        arrays: whether to submit groups of targets as array jobs.
        pack_time: seconds a task may keep claiming further targets (0: one target a task).
        exit_grace: seconds to wait for an exit file after a task ended without one.
        launch_grace: seconds a task may be listed as running before its job
            script has started; after that it counts as a launch the scheduler
            lost, and is cancelled and its targets submitted again.
        command_timeout: seconds one scheduler command may take.
        max_cpus: the largest cpu request allowed, if known.
        max_memory: the largest memory request allowed, if known.
        memory_floor: the least memory asked of the scheduler for one job
            (what a worker needs to start); a target asking less is given this.
        vmem_allowance: Grid Engine only: virtual memory added to the memory
            asked for, since ``h_vmem`` limits virtual memory, and Python maps
            far more than it uses.
        disk_resource: the site's resource for node-local disk (``tmp`` on
            Slurm and LSF, a complex such as ``tmp_free`` on Grid Engine);
            None sends no disk request.
        walltime_floor: the least wall time asked for a target with a ``time``
            estimate (see :func:`jobtree.batch.plan.walltime_request`).
        walltime_factor: the estimate is multiplied by this for the request.
        walltime_max: the longest wall time the queue allows, if known: no
            request goes over it, and a longer ``timeLimit`` fails at once.
        max_job_duration: ``--maxJobDuration``: no request need go far past it.
        warn_before: seconds before a job's wall time ends at which it asks
            the scheduler for SIGUSR1 (Slurm ``--signal``, Grid Engine
            ``s_rt``, LSF ``-wa``/``-wt``); its runner then claims no further
            target. 0 asks for none.
        pilots: most pilot jobs at once (``--pilots``; 0: no pilots). A pilot
            is one scheduler job that runs ready targets one after another
            (:mod:`jobtree.batch.pilots`).
        pilot_nodes: nodes of a pilot (only 1 is supported).
        pilot_cores: cores of a pilot: it runs this many one-core targets at once.
        pilot_memory: memory of a pilot, shared evenly by its cores; None:
            2 GiB a core.
        pilot_walltime: the wall time a pilot asks for.
        pilot_idle: seconds a pilot waits for a target before it exits.
    """

    workdir: str | None = None
    job_name: str = "jobtree"
    tree_id: str | None = None
    queue: str | None = None
    account: str | None = None
    parallel_environment: str | None = None
    extra: tuple[str, ...] = ()
    prologue: tuple[str, ...] = ()
    local_scratch: str | None = None
    max_jobs: int = 1000
    submit_rate: float = 2.0
    poll_interval: float = 10.0
    arrays: bool = True
    pack_time: float = 60.0
    exit_grace: float = 30.0
    launch_grace: float = 300.0
    command_timeout: float = 60.0
    max_cpus: float | None = None
    max_memory: int | None = None
    # memory, cores and disk: guarantees, and their floors (docs/resources.md)
    memory_floor: int = MEMORY_FLOOR
    vmem_allowance: int = VMEM_ALLOWANCE
    disk_resource: str | None = None
    # time: the wall time asked for an estimate (docs/resources.md)
    walltime_floor: float = 3600.0
    walltime_factor: float = 3.0
    walltime_max: float | None = None
    max_job_duration: float | None = None
    warn_before: float = 120.0
    pilots: int = 0
    pilot_nodes: int = 1
    pilot_cores: int = 1
    pilot_memory: int | None = None
    pilot_walltime: float = 3600.0
    pilot_idle: float = 60.0


DEFAULT_PATH = os.path.join("~", ".config", "jobtree", "cluster.ini")


def _lines(text: str) -> tuple[str, ...]:
    """One shell line per line (an indented continuation line is the next one)."""
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def _directives(text: str) -> tuple[str, ...]:
    """One directive per line, none with a control character (a directive
    line of a job script is a shell comment: nothing may end it early)."""
    lines = _lines(text)
    for line in lines:
        bad = control_character(line)
        if bad is not None:
            raise ValueError(f"has a line {line!r} with a control character ({bad})")
    return lines


def _name(text: str) -> str | None:
    """A queue, account or parallel environment: one plain name. An indented
    continuation line makes the value two lines, which is refused: it would
    reach the job script's directive line."""
    name = text.strip()
    if not name:
        return None
    problem = name_problem(name)
    if problem is not None:
        raise ValueError(f"{problem}; give one name"
                         + (" on one line" if "\n" in name else ""))
    return name


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError("must be at least 1")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError("must be 0 or more")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise ValueError("must be more than 0")
    return value


def _seconds(text: str) -> float:
    value = parse_duration(text)
    if value is None:
        raise ValueError("is not a duration")
    return value


def _factor(text: str) -> float:
    value = float(text)
    if not 1 <= value < float("inf"):
        raise ValueError("must be a number of at least 1 (a request is never below the "
                         "estimate)")
    return value


def _positive_seconds(text: str) -> float:
    value = _seconds(text)
    if value <= 0:
        raise ValueError("must be more than 0")
    return value


def _boolean(text: str) -> bool:
    word = text.strip().lower()
    if word in ("1", "yes", "true", "on"):
        return True
    if word in ("0", "no", "false", "off"):
        return False
    raise ValueError("must be yes or no")


def _text(text: str) -> str | None:
    return text.strip() or None


def _resource(text: str) -> str | None:
    name = text.strip()
    if name and not _RESOURCE_NAME.match(name):
        raise ValueError("is not a resource name (letters, digits, _ . -)")
    return name or None


#: every key of the file: the ClusterSettings field it sets, and its parser
KEYS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "queue": ("queue", _name), "partition": ("queue", _name),
    "account": ("account", _name), "project": ("account", _name),
    "parallel_environment": ("parallel_environment", _name),
    "extra": ("extra", _directives), "prologue": ("prologue", _lines),
    "local_scratch": ("local_scratch", _text),
    "max_jobs": ("max_jobs", _positive_int), "submit_rate": ("submit_rate", _positive_float),
    "poll_interval": ("poll_interval", _seconds), "arrays": ("arrays", _boolean),
    "pack_time": ("pack_time", _seconds), "exit_grace": ("exit_grace", _seconds),
    "launch_grace": ("launch_grace", _seconds), "warn_before": ("warn_before", _seconds),
    "command_timeout": ("command_timeout", _seconds),
    "max_cpus": ("max_cpus", lambda t: parse_cpu(t, "max_cpus")),
    "max_memory": ("max_memory", lambda t: parse_size(t, "max_memory")),
    "memory_floor": ("memory_floor", lambda t: parse_size(t, "memory_floor")),
    "vmem_allowance": ("vmem_allowance", lambda t: parse_size(t, "vmem_allowance")),
    "disk_resource": ("disk_resource", _resource),
    # time: the wall time asked for an estimate
    "walltime_floor": ("walltime_floor", _seconds),
    "walltime_factor": ("walltime_factor", _factor), "walltime_max": ("walltime_max", _positive_seconds),
    # pilots (docs/clusters.md, "Pilots")
    "pilots": ("pilots", _count), "pilot_nodes": ("pilot_nodes", _positive_int),
    "pilot_cores": ("pilot_cores", _positive_int),
    "pilot_memory": ("pilot_memory", lambda t: parse_size(t, "pilot_memory")),
    "pilot_walltime": ("pilot_walltime", _positive_seconds),
    "pilot_idle": ("pilot_idle", _positive_seconds),
}


def config_path(given: str | None) -> str | None:
    """The config file to read, or None if there is none."""
    if given:
        return os.path.abspath(os.path.expanduser(given))
    env = os.environ.get("JOBTREE_CLUSTER_CONFIG")
    if env:
        return os.path.abspath(os.path.expanduser(env))
    default = os.path.expanduser(DEFAULT_PATH)
    return default if os.path.isfile(default) else None


def read_config(path: str | None, batch_system: str) -> dict[str, Any]:
    """The settings the file gives for ``batch_system``.

    Raises:
        BadOptionError: the file is missing, not INI, or has a bad key or value.
    """
    if path is None:
        return {}
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with open(path, encoding="utf-8") as handle:
            parser.read_file(handle)
    except OSError as err:
        raise BadOptionError(f"The cluster config {path} cannot be read: {err.strerror}. "
                             f"Check --clusterConfig (or $JOBTREE_CLUSTER_CONFIG).") from None
    except configparser.Error as err:
        raise BadOptionError(f"The cluster config {path} is not a valid INI file: "
                             f"{err.message}. See docs/clusters.md for its form.") from None
    values: dict[str, Any] = {}
    for section in ("cluster", batch_system):
        if not parser.has_section(section):
            continue
        for key, text in parser.items(section):
            if key not in KEYS:
                raise BadOptionError(
                    f"The cluster config {path} has an unknown key {key!r} in [{section}]. "
                    f"Known keys: {', '.join(sorted(KEYS))}.")
            field, parse = KEYS[key]
            try:
                values[field] = parse(text)
            except (ValueError, ResourceError) as err:
                raise BadOptionError(f"The cluster config {path}: {key} = {text!r} in "
                                     f"[{section}] {err}.") from None
    return values


def cluster_settings(batch_system: str, options: Any, workdir: str | None,
                     tree_id: str | None, max_threads: int | None, max_cpus: float | None,
                     max_memory: int | None) -> ClusterSettings:
    """The settings of a cluster batch system: defaults, then the config file,
    then the options given (``options`` is a Config, or None).

    Raises:
        BadOptionError: the config file or an option is bad.
    """
    values = read_config(config_path(getattr(options, "clusterConfig", None)), batch_system)
    for option, field in (("queue", "queue"), ("account", "account"),
                          ("maxJobs", "max_jobs"), ("submitRate", "submit_rate"),
                          ("packTime", "pack_time"), ("pilots", "pilots")):
        value = getattr(options, option, None)
        if value is not None:
            values[field] = value
    if getattr(options, "maxJobDuration", None) is not None:
        values["max_job_duration"] = float(options.maxJobDuration)
    if max_cpus is not None:
        values["max_cpus"] = max_cpus
    if max_memory is not None:
        values["max_memory"] = max_memory
    if max_threads is not None:  # at most this many jobs at once, as on singleMachine
        values["max_jobs"] = min(values.get("max_jobs", max_threads), max_threads)
        # and at most this many targets at once in pilots
        cores = values["pilot_cores"] = min(values.get("pilot_cores", 1), max_threads)
        if values.get("pilots"):
            values["pilots"] = max(1, min(values["pilots"], max_threads // cores))
    for field in ("queue", "account"):  # also a value stored by an older jobtree
        value = values.get(field)
        problem = name_problem(value) if isinstance(value, str) else None
        if problem is not None:
            raise BadOptionError(f"The {field} {value!r} {problem}. Give --{field} the name "
                                 f"of a {field} of your cluster.")
    if values.get("pilots") and values.get("pilot_nodes", 1) > 1:
        raise BadOptionError(
            f"pilot_nodes = {values['pilot_nodes']} in the cluster config: pilots run on one "
            f"node each. Set pilot_nodes = 1 and give --pilots the number of nodes to use "
            f"instead (targets that need several nodes go as jobs of their own).")
    name = f"jt-{tree_id[:10]}" if tree_id else "jobtree"
    return dataclasses.replace(ClusterSettings(), workdir=workdir, tree_id=tree_id,
                               job_name=name, **values)
