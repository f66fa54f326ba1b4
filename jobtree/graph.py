"""The tree as a graph (networkx): checking its invariants and drawing it."""

from __future__ import annotations

import networkx as nx

from .jobstore import JobState, ReadError, TreeIndex

CHILD = "child"
FOLLOW_ON = "follow-on"


def build(store: TreeIndex, limit: int | None = None) -> nx.DiGraph:
    """The jobs as a directed graph: parent → child and target → follow-on edges.

    Each node carries ``state``, ``cls``, ``description``, ``pending``,
    ``chain`` and ``closed`` (whether the chain it founds has finished).

    Args:
        limit: only the first ``limit`` jobs (the top of the tree), so that
            drawing a huge tree reads only what is drawn.
    """
    graph = nx.DiGraph()
    for job, state, parent, predecessor, chain, pending, cls, description, closed in (
            store.links(limit)):
        graph.add_node(job, state=JobState(state), cls=cls, description=description,
                       pending=pending, chain=chain, closed=bool(closed))
        if predecessor is not None:
            graph.add_edge(predecessor, job, kind=FOLLOW_ON)
        elif parent is not None:
            graph.add_edge(parent, job, kind=CHILD)
    return graph


def check(store: TreeIndex) -> list[str]:
    """Checks the tree's invariants; returns one line per problem (none if sound)."""
    try:
        graph = build(store)
    except ReadError as err:
        return [f"the index cannot be read: {err}"]
    problems: list[str] = []
    roots = [n for n in graph if graph.in_degree(n) == 0]
    if roots != [1] and graph.number_of_nodes():
        problems.append(f"expected one root (job 1), found {sorted(roots)[:10]}")
    if not nx.is_directed_acyclic_graph(graph):
        problems.append("the tree has a cycle")
    for job, data in graph.nodes(data=True):
        if graph.in_degree(job) > 1:
            problems.append(f"job {job} has {graph.in_degree(job)} parents")
        followons = [n for n in graph.successors(job) if graph[job][n]["kind"] == FOLLOW_ON]
        children = [n for n in graph.successors(job) if graph[job][n]["kind"] == CHILD]
        if len(followons) > 1:
            problems.append(f"job {job} has {len(followons)} follow-ons")
        open_chains = sum(1 for c in children if not graph.nodes[c]["closed"])
        state = data["state"]
        if state is JobState.RAN and data["pending"] != open_chains:
            problems.append(f"job {job} waits for {data['pending']} child chains but "
                            f"{open_chains} are open")
        if state is JobState.DONE and open_chains:
            problems.append(f"job {job} is done but {open_chains} child chains are open")
        for follow in followons:
            follow_state = graph.nodes[follow]["state"]
            if follow_state is not JobState.WAITING and state is not JobState.DONE:
                problems.append(f"follow-on {follow} of job {job} left WAITING before "
                                f"job {job} was done")
            if graph.nodes[follow]["chain"] != data["chain"]:
                problems.append(f"follow-on {follow} is not in the chain of job {job}")
    return problems


#: the most targets --dot draws
DOT_LIMIT = 5000


def to_dot(graph: nx.DiGraph, limit: int = DOT_LIMIT) -> str:
    """The graph in Graphviz DOT (children solid, follow-ons dashed), coloured
    by state; at most ``limit`` nodes, breadth first from the root."""
    colours = {JobState.WAITING: "lightgrey", JobState.READY: "lightyellow",
               JobState.ISSUED: "lightblue", JobState.RAN: "lightcyan",
               JobState.DONE: "palegreen", JobState.FAILED: "salmon"}
    keep = list(nx.bfs_tree(graph, 1))[:limit] if 1 in graph else []
    kept = set(keep)
    lines = ["digraph jobtree {", "  node [shape=box, style=filled, fontsize=10];"]
    for job in keep:
        data = graph.nodes[job]
        label = f"{job}: {data['description']}".replace("\\", "\\\\").replace('"', '\\"')
        lines.append(f'  {job} [label="{label}", fillcolor={colours[data["state"]]}];')
    for source, target, kind in graph.edges(data="kind"):
        if source in kept and target in kept:
            style = " [style=dashed]" if kind == FOLLOW_ON else ""
            lines.append(f"  {source} -> {target}{style};")
    lines.append("}")
    return "\n".join(lines) + "\n"
