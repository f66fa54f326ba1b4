"""Target, the unit of work, and the targets that wrap functions and commands."""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import sys
from typing import Any, Callable, Mapping, Protocol, Sequence

from .errors import JobTreeError, ResourceError, TargetDefinitionError
from .promise import Promise, new_token
from .resources import Resources, SizeLike, format_bytes, parse_priority


class Runtime(Protocol):
    """What a running target reaches through its worker (which gives it a
    :class:`jobtree.worker.RunContext`): temp dirs, messages, the limits."""

    defaults: Resources
    messages: list[tuple[int, str]]

    def local_temp_dir(self) -> str:
        """The run's local temp dir (made on first use)."""

    def global_temp_dir(self) -> str:
        """The chain's global temp dir (made on first use)."""

    def check_fits(self, target: Target) -> None:
        """Raises ResourceError if ``target`` cannot run under the batch system's limits."""


class Target:
    """A piece of work: subclass it and override :meth:`run`.

    ``run()`` may add children (run in parallel once it returns) and at most
    one follow-on (run after every child and all their descendants finished).
    A target is pickled, so keep only picklable values as attributes; it may
    run more than once (after a crash or a retry), so write its outputs in a
    way that is safe to repeat.

    Args:
        time: expected wall time: seconds, ``"HH:MM:SS"`` or ``"90m"``. An
            estimate: it guides packing, chaining and the wall time asked of a
            scheduler (with a margin), and never stops the target.
        memory: bytes or a size such as ``"2G"``.
        cpu: cores.
        disk: bytes of local scratch, or a size such as ``"10G"``.
        gpus: GPUs (per node).
        nodes: nodes, for an MPI target; with ``processes`` processes per node,
            each with ``cpu`` cores (threads). Cluster batch systems only.
        processes: processes (MPI ranks) per node.
        queue: the partition or queue to run in (default: the cluster config's).
        account: the account or project to charge (default: the cluster config's).
        directives: scheduler directives for this target's job, verbatim and
            without the prefix (``["--constraint=avx2"]`` on Slurm).
        timeLimit: a hard wall-time limit, a duration like ``time``: a run
            longer than this is stopped and fails ("over its time limit"), on
            every batch system; a cluster job asks for it instead of ``time``.
        memoryRetryFactor: the try after one that ran out of memory asks for
            this many times the memory (default: ``--memoryRetryFactor``, 2;
            1 asks the same again).
        timeRetryFactor: the try after one that the scheduler stopped at its
            wall time asks for this many times the ``time`` estimate (default:
            ``--timeRetryFactor``, 2; 1 asks the same again).
        request: instead, the request of each try as a function of the
            try's number (1 for the first) and why the try before it failed
            (None for the first; ``"out of memory"``, ``"timeout"``, ...),
            returning a dict with any of ``memory``, ``time``, ``cpu`` and
            ``disk`` (e.g. ``lambda attempt, reason: {"memory": f"{4 *
            attempt}G"}``). It overrides those keywords, and the factors.
        priority: a whole number: of the targets ready to run, those of
            higher priority are issued first (default 0; it may be negative;
            ties go in the order the targets were created).
        Unset values take the tree's defaults (``--defaultMemory``, ...).
    """

    def __init__(self, time: SizeLike = None, memory: SizeLike = None,
                 cpu: SizeLike = None, disk: SizeLike = None, *, gpus: int | None = None,
                 nodes: int | None = None, processes: int | None = None,
                 queue: str | None = None, account: str | None = None,
                 directives: Sequence[str] | str | None = None,
                 timeLimit: SizeLike = None, memoryRetryFactor: float | None = None,
                 timeRetryFactor: float | None = None,
                 request: Callable[[int, str | None], Mapping[str, Any]] | None = None,
                 priority: int = 0) -> None:
        self._jt_resources = Resources.parse(
            time=time, memory=memory, cpu=cpu, disk=disk, gpus=gpus, nodes=nodes,
            processes=processes, queue=queue, account=account, directives=directives,
            time_limit=timeLimit, memory_retry_factor=memoryRetryFactor,
            time_retry_factor=timeRetryFactor, request=request)
        self._jt_priority = parse_priority(priority)
        self._jt_children: list[Target] = []
        self._jt_followon: Target | None = None
        self._jt_runtime: Runtime | None = None

    def run(self) -> Any:
        """Does the work; override it. The default does nothing.

        What it returns (if not None) is stored in the tree: see :meth:`rv`.
        """

    # ----------------------------------------------------------- the tree
    def addChildTarget(self, childTarget: Target) -> Target:
        """Adds a child, run in parallel with its siblings after this run.

        Returns:
            the child, for chaining.

        Raises:
            TargetDefinitionError: ``childTarget`` is already in the tree (a
                child or the follow-on of this or another target): one
                target object runs once, so make a new one for each place.
        """
        self._check_new(childTarget, "addChildTarget")
        self._jt_children.append(childTarget)
        childTarget._jt_added = self._jt_place("a child")
        return childTarget

    def addChildFn(self, fn: Callable[..., Any], args: Sequence[Any] = (),
                   kwargs: Mapping[str, Any] | None = None, time: SizeLike = None,
                   memory: SizeLike = None, cpu: SizeLike = None,
                   disk: SizeLike = None, **cluster: Any) -> Target:
        """Adds a child that calls ``fn(*args, **kwargs)``; the other keywords
        (``gpus``, ``timeLimit``, ``priority``, ...) are those of :class:`Target`."""
        return self.addChildTarget(FunctionWrappingTarget(
            fn, args, kwargs, time=time, memory=memory, cpu=cpu, disk=disk, **cluster))

    def addChildTargetFn(self, fn: Callable[..., Any], args: Sequence[Any] = (),
                         kwargs: Mapping[str, Any] | None = None, time: SizeLike = None,
                         memory: SizeLike = None, cpu: SizeLike = None,
                         disk: SizeLike = None, **cluster: Any) -> Target:
        """Adds a child that calls ``fn(target, *args, **kwargs)``; ``fn`` can
        use the target to add children, a follow-on and temp dirs."""
        return self.addChildTarget(TargetFunctionWrappingTarget(
            fn, args, kwargs, time=time, memory=memory, cpu=cpu, disk=disk, **cluster))

    def addChildCommand(self, childCommand: str, time: SizeLike = None,
                        runTime: SizeLike = None, *, timeLimit: SizeLike = None,
                        priority: int = 0) -> Target:
        """Adds a child that runs a shell command; a non-zero exit fails it."""
        return self.addChildTarget(CommandTarget(
            childCommand, time=time if time is not None else runTime, timeLimit=timeLimit,
            priority=priority))

    def setFollowOnTarget(self, followOnTarget: Target) -> Target:
        """Sets the follow-on: it runs after every child of this target and all
        their descendants have finished. A target has at most one.

        Raises:
            TargetDefinitionError: a follow-on is already set, or
                ``followOnTarget`` is already in the tree.
        """
        self._check_new(followOnTarget, "setFollowOnTarget")
        if self._jt_followon is not None:
            raise TargetDefinitionError(
                f"{self._jt_describe()} already has a follow-on "
                f"({self._jt_followon._jt_describe()}); a target has at most one. To run "
                f"several targets afterwards, make them children of the follow-on.")
        self._jt_followon = followOnTarget
        followOnTarget._jt_added = self._jt_place("the follow-on")
        return followOnTarget

    def setFollowOnFn(self, fn: Callable[..., Any], args: Sequence[Any] = (),
                      kwargs: Mapping[str, Any] | None = None, time: SizeLike = None,
                      memory: SizeLike = None, cpu: SizeLike = None,
                      disk: SizeLike = None, **cluster: Any) -> Target:
        """Sets a follow-on that calls ``fn(*args, **kwargs)``."""
        return self.setFollowOnTarget(FunctionWrappingTarget(
            fn, args, kwargs, time=time, memory=memory, cpu=cpu, disk=disk, **cluster))

    def setFollowOnTargetFn(self, fn: Callable[..., Any], args: Sequence[Any] = (),
                            kwargs: Mapping[str, Any] | None = None, time: SizeLike = None,
                            memory: SizeLike = None, cpu: SizeLike = None,
                            disk: SizeLike = None, **cluster: Any) -> Target:
        """Sets a follow-on that calls ``fn(target, *args, **kwargs)``."""
        return self.setFollowOnTarget(TargetFunctionWrappingTarget(
            fn, args, kwargs, time=time, memory=memory, cpu=cpu, disk=disk, **cluster))

    @staticmethod
    def makeTargetFn(fn: Callable[..., Any], args: Sequence[Any] = (),
                     kwargs: Mapping[str, Any] | None = None, time: SizeLike = None,
                     memory: SizeLike = None, cpu: SizeLike = None,
                     disk: SizeLike = None, **cluster: Any) -> Target:
        """Makes a target that calls ``fn(target, *args, **kwargs)``."""
        return TargetFunctionWrappingTarget(fn, args, kwargs, time=time, memory=memory,
                                            cpu=cpu, disk=disk, **cluster)

    def rv(self, *path: Any) -> Promise:
        """A promise of the value this target's ``run()`` returns.

        Pass it, alone or inside lists, dicts or other arguments, to a target
        that runs after this one: a child this target adds in its ``run()``, or
        the follow-on of the target that added this one. There it is replaced
        by the value before ``run()`` starts. ``rv(0)``, ``rv("key")`` promise
        a part of the value (``value[0]``, ``value["key"]``).

        Values are stored in the tree and survive restarts; large ones are
        kept as files.
        """
        token = self.__dict__.get("_jt_token")
        if token is None:
            token = self._jt_token = new_token()
        return Promise(token, path, self._jt_describe())

    # ------------------------------------------------------ during a run
    def getLocalTempDir(self) -> str:
        """An empty directory private to this run, removed when it ends
        (also when it fails or the process is killed)."""
        return self._context("getLocalTempDir").local_temp_dir()

    def getGlobalTempDir(self) -> str:
        """A directory shared by this target and its follow-ons (the chain),
        readable by their children, removed after the chain has finished."""
        return self._context("getGlobalTempDir").global_temp_dir()

    def logToMaster(self, string: str, level: int = logging.INFO) -> None:
        """Sends a message to the master's log (once, even if this target is
        re-run)."""
        self._context("logToMaster").messages.append((int(level), str(string)))

    # ------------------------------------------------------------ getters
    def getResources(self) -> Resources:
        """The resources asked for (None where the tree's default applies)."""
        return self._jt_resources

    def getMemory(self) -> int | None:
        """Bytes of memory asked for; inside a run, what this try was given (the
        default applied; more after a try that ran out of memory)."""
        return self._effective().memory

    def getCpu(self) -> float | None:
        """Cores asked for; inside a run, what this try was given."""
        return self._effective().cpu

    def getDisk(self) -> int | None:
        """Bytes of local disk asked for; inside a run, what this try was given."""
        return self._effective().disk

    def getRunTime(self) -> float | None:
        """Expected wall time in seconds (None if not given); inside a run, this
        try's (more after a try the scheduler stopped at its wall time)."""
        return self._effective().time

    getTime = getRunTime

    def getPriority(self) -> int:
        """The target's priority (0 unless given)."""
        return int(self.__dict__.get("_jt_priority", 0))  # pickled before priorities: 0

    def getTimeLimit(self) -> float | None:
        """The hard wall-time limit in seconds (None if not given)."""
        return self._jt_resources.time_limit

    def getFollowOn(self) -> Target | None:
        """The follow-on set so far, or None."""
        return self._jt_followon

    def getChildren(self) -> list[Target]:
        """The children added so far."""
        return list(self._jt_children)

    def getChildCommands(self) -> list[tuple[str, float | None]]:
        """The shell-command children added so far, as (command, time)."""
        return [(c.command, c._jt_resources.time) for c in self._jt_children
                if isinstance(c, CommandTarget)]

    # ------------------------------------------------------------ private
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_jt_runtime", None)
        state.pop("_jt_added", None)  # where it was added: known again when loaded
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._jt_runtime = None
        # what was added to this target before it was pickled is in the tree
        for child in self.__dict__.get("_jt_children") or ():
            child.__dict__.setdefault("_jt_added", self._jt_place("a child"))
        followon = self.__dict__.get("_jt_followon")
        if followon is not None:
            followon.__dict__.setdefault("_jt_added", self._jt_place("the follow-on"))

    def _context(self, method: str) -> Runtime:
        runtime: Runtime | None = getattr(self, "_jt_runtime", None)
        if runtime is None:
            raise TargetDefinitionError(
                f"{method}() works only while the target runs (inside run()); "
                f"{self._jt_describe()} is not running.")
        return runtime

    def _effective(self) -> Resources:
        runtime = getattr(self, "_jt_runtime", None)
        if runtime is None:
            return self._jt_resources
        effective = self._jt_resources.with_defaults(runtime.defaults)
        granted = getattr(runtime, "granted", None)
        if granted is None:
            return effective
        # what this try asks: grown after a try that ran out, or as jobTreeRun --set made it
        return dataclasses.replace(effective, **{
            name: getattr(granted, name) for name in ("cpu", "memory", "time", "disk")
            if getattr(granted, name) not in (None, getattr(effective, name))})

    def _jt_place(self, how: str) -> tuple[str, int, str]:
        """Where a target added to this one is: (how, this one's id, its class);
        cheap, and small (no reference to this target, which it must not pickle)."""
        return how, id(self), type(self).__qualname__

    def _check_new(self, other: object, method: str) -> None:
        if not isinstance(other, Target):
            raise TargetDefinitionError(
                f"{method}() takes a Target, not {type(other).__name__}; wrap a "
                f"function with addChildFn/setFollowOnFn instead.")
        if "_jt_resources" not in other.__dict__:
            raise TargetDefinitionError(
                f"{type(other).__name__}.__init__ does not call Target.__init__; add "
                f"`super().__init__()` (or Target.__init__(self, ...)) to it.")
        if other is self:
            raise TargetDefinitionError(f"{self._jt_describe()} cannot be its own {method[3:]}.")
        added = other.__dict__.get("_jt_added")
        if added is not None:
            how, owner_id, owner_class = added
            owner = "this target" if owner_id == id(self) else f"another target ({owner_class})"
            raise TargetDefinitionError(
                f"{method}({other._jt_describe()}) on {self._jt_describe()}: that target "
                f"object is already in the tree, as {how} of {owner}. A target object is "
                f"added once (as one child, or as one follow-on) and runs once; to run the "
                f"same work twice, or in two places, make a new object for each.")
        runtime = getattr(self, "_jt_runtime", None)
        if runtime is not None:
            runtime.check_fits(other)

    def _jt_describe(self) -> str:
        """A readable one-line description used in reports and status."""
        if type(self).__repr__ is not object.__repr__:
            try:
                return _clip(repr(self), 120)
            except Exception:  # noqa: BLE001 - a broken __repr__ must not break reports
                pass
        fields = [f"{k}={_clip(repr(v), 40)}" for k, v in vars(self).items()
                  if not k.startswith("_")]
        return _clip(f"{type(self).__name__}({', '.join(fields)})", 120)


def class_name(target: Target) -> str:
    """The class of a target as reports show it (module.Class; Class for scripts)."""
    module = type(target).__module__
    if module == "__main__":  # run as `python -m NAME`: name it as workers will
        spec = getattr(sys.modules["__main__"], "__spec__", None)
        module = getattr(spec, "name", None) or module
    if module.startswith("_jobtree_script_") or module == "__main__":
        return type(target).__qualname__
    return f"{module}.{type(target).__qualname__}"


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


class FunctionWrappingTarget(Target):
    """A target that calls ``fn(*args, **kwargs)``.

    The function is pickled by reference when it can be imported (so a fixed
    version runs after a restart) and by value otherwise (lambdas, closures).
    The resources given here are the ones the target asks for.
    """

    def __init__(self, fn: Callable[..., Any], args: Sequence[Any] = (),
                 kwargs: Mapping[str, Any] | None = None, time: SizeLike = None,
                 memory: SizeLike = None, cpu: SizeLike = None,
                 disk: SizeLike = None, **cluster: Any) -> None:
        super().__init__(time=time, memory=memory, cpu=cpu, disk=disk, **cluster)
        if not callable(fn):
            raise TargetDefinitionError(f"{fn!r} is not a function; pass a callable.")
        self._fn = fn
        self._args = tuple(args)
        self._kwargs = dict(kwargs or {})

    def run(self) -> Any:
        return self._fn(*self._args, **self._kwargs)

    def _jt_describe(self) -> str:
        name = getattr(self._fn, "__qualname__", repr(self._fn))
        parts = [_clip(repr(a), 30) for a in self._args]
        parts += [f"{k}={_clip(repr(v), 30)}" for k, v in self._kwargs.items()]
        return _clip(f"{name}({', '.join(parts)})", 120)


class TargetFunctionWrappingTarget(FunctionWrappingTarget):
    """A target that calls ``fn(target, *args, **kwargs)``, so the function can
    add children and a follow-on and use the temp dirs."""

    def run(self) -> Any:
        return self._fn(self, *self._args, **self._kwargs)


class CommandTarget(Target):
    """A target that runs a shell command; a non-zero exit fails the target."""

    def __init__(self, command: str, time: SizeLike = None, memory: SizeLike = None,
                 cpu: SizeLike = None, disk: SizeLike = None, **cluster: Any) -> None:
        super().__init__(time=time, memory=memory, cpu=cpu, disk=disk, **cluster)
        self.command = str(command)

    def run(self) -> None:
        completed = subprocess.run(self.command, shell=True, check=False,
                                   cwd=os.getcwd())  # the user's own shell command
        if completed.returncode != 0:
            raise CommandFailedError(
                f"The command `{self.command}` exited with status {completed.returncode}.")

    def _jt_describe(self) -> str:
        return _clip(f"command({self.command})", 120)


class CommandFailedError(JobTreeError):
    """A child command exited with a non-zero status."""


def check_fits(target: Target, resources: Resources, limits: Resources,
               where: str) -> None:
    """Raises ResourceError if ``resources`` exceed ``limits``.

    Args:
        target: the target (named in the message).
        resources: its resources, defaults applied.
        limits: the largest cpu and memory that can be given (None = no limit).
        where: which option or machine sets the limit, for the message.
    """
    problems = []
    if limits.cpu is not None and resources.cpu is not None and resources.cpu > limits.cpu:
        problems.append(f"{resources.cpu:g} cores (the most is {limits.cpu:g})")
    if (limits.memory is not None and resources.memory is not None
            and resources.memory > limits.memory):
        problems.append(f"{format_bytes(resources.memory)} of memory "
                        f"(the most is {format_bytes(limits.memory)})")
    if problems:
        raise ResourceError(
            f"The target {target._jt_describe()} asks for {' and '.join(problems)}, more "
            f"than {where} can give. Ask for less in its Target(...) arguments, or "
            f"raise --maxCpus/--maxMemory (or use a --bigBatchSystem for big targets).")
