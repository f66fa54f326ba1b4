"""The package's imports form no circle: every module of ``jobtree`` is read
with ``ast`` and each import it makes, at module level or inside a function
(a lazy import closes a circle just as well), is an edge of a graph that
must have no cycle.

Imports under ``if TYPE_CHECKING:`` count too: a circle of types is still a
circle to read. A submodule's implicit import of its parent package is not
an edge (a package's ``__init__`` importing its own submodules would
otherwise always be a circle); ``from a import b`` is an edge to ``a.b`` when
``b`` is a submodule, else to ``a``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import jobtree

PACKAGE = Path(jobtree.__file__).parent


def modules() -> dict[str, Path]:
    """Every module of the package: dotted name -> file."""
    found: dict[str, Path] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute name ``from ... import`` takes names from."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base.pop()  # a plain module's package
    if node.level > 1:
        base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(module: str, path: Path, known: set[str]) -> set[str]:
    """The modules of the package that ``module`` imports, anywhere in its code."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()

    def add(name: str) -> None:
        # `import a.b.c` imports a, a.b and a.b.c; the last known one is the edge
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name:
            found.add(name)

    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(module, is_package, node)
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                add(submodule if submodule in known else source)
    found.discard(module)
    return found


def import_graph() -> dict[str, set[str]]:
    """module -> the package's modules it imports."""
    found = modules()
    known = set(found)
    return {name: imports_of(name, path, known) for name, path in found.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``graph`` (its modules in order, the first repeated at the
    end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_package_has_no_import_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_graph_sees_every_kind_of_import() -> None:
    graph = import_graph()
    assert "jobtree.batch.base" in graph["jobtree.batch"]  # relative, from a package
    assert "jobtree.batch" in graph["jobtree.tree"]  # `from . import batch as ...`
    assert "jobtree.worker" in graph["jobtree.batch.forkserver"]  # lazy, `from .. import`
    assert "jobtree.paths" in graph["jobtree.batch.runner"]  # `from ..paths import ...`


def test_the_small_modules_started_processes_import_stay_small() -> None:
    graph = import_graph()
    # a worker job's command and exit codes, and the process supervisor, are
    # imported by the fork server and the node runner: nothing of jobtree
    assert graph["jobtree.workerjob"] == set()
    assert graph["jobtree.batch.supervise"] == set()
    assert not {m for m in graph["jobtree.worker"] if m.startswith("jobtree.batch")}


def test_find_cycle_names_the_modules() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


#: the package's layers, lowest first, and the layers each may import
#: (besides its own); docs/architecture.md explains them
LAYERS: dict[str, tuple[str, ...]] = {
    # import nothing of jobtree
    "leaves": ("_version", "errors", "metrics", "progress", "tempfiles", "workerjob",
               "batch.supervise", "batch.wire", "batch.native", "batch.drmaa_agent"),
    "foundations": ("paths", "resources", "escalation", "serialize", "options", "janitor",
                    "sshlink"),
    # the index, and what only reads it
    "store": ("jobstore*", "report", "graph", "timeline"),
    # the master's side of every batch system
    "batch": ("batch", "batch.base", "batch.settings", "batch.commands", "batch.adapter",
              "batch._pbs", "batch.slurm", "batch.gridengine", "batch.torque",
              "batch.pbspro", "batch.lsf", "batch.jobfiles", "batch.poll", "batch.plan",
              "batch.scheduler", "batch.cluster", "batch.local", "batch.drmaa_batch",
              "batch.hosts", "batch.allocation", "batch.pilots", "batch.pilot_shell"),
    "targets": ("promise", "target"),
    # what runs a target, on the node
    "job side": ("worker", "batch.forkserver", "batch.runner", "batch.pilot_runner"),
    "master side": ("placement", "results", "master", "tree", "start", "stack",
                    "pooltree", "poolcall", "poolserve", "poolecho", "pool", "remote",
                    "remotepool"),
    # the conformance suite, for jobtree's batch systems and plugins
    "testing": ("testing*",),
    "commands": ("cli*", "scriptTree*", ""),
}
MAY_IMPORT: dict[str, set[str]] = {
    "leaves": set(),
    "foundations": {"leaves"},
    "store": {"leaves", "foundations"},
    "batch": {"leaves", "foundations"},
    "targets": {"leaves", "foundations"},
    "job side": {"leaves", "foundations", "targets"},
    "master side": {"leaves", "foundations", "store", "batch", "targets", "job side"},
    "testing": {"leaves", "foundations", "batch", "targets", "job side"},
    "commands": set(LAYERS),
}


def layer_of(module: str) -> str | None:
    """The layer of a module of the package (None: in no layer)."""
    name = module.removeprefix("jobtree").removeprefix(".")
    for layer, members in LAYERS.items():
        for member in members:
            if name == member.rstrip("*") or (
                    member.endswith("*") and name.startswith(member.rstrip("*") + ".")):
                return layer
    return None


def test_every_module_is_in_a_layer() -> None:
    assert [m for m in modules() if layer_of(m) is None] == []


def test_each_layer_imports_only_the_layers_below_it() -> None:
    wrong = [f"{module} ({layer_of(module)}) imports {used} ({layer_of(used)})"
             for module, used_all in sorted(import_graph().items())
             for used in sorted(used_all)
             if layer_of(used) != layer_of(module)
             and layer_of(used) not in MAY_IMPORT[layer_of(module) or ""]]
    assert wrong == []


def test_no_module_is_too_long_to_read() -> None:
    lengths = {name: len(path.read_text(encoding="utf-8").splitlines())
               for name, path in modules().items()}
    assert {name: n for name, n in lengths.items() if n > 600} == {}
    assert lengths["jobtree.batch.cluster"] <= 500
