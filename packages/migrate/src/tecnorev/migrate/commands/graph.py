"""``tecnorev db graph``: the cross-module migration graph as Mermaid or Graphviz DOT.

By default one node per installed module, with an edge wherever a revision of one module names
a revision of another in ``depends_on``.  ``--revisions`` draws every revision instead, grouped
per module.  Arrows point from what is applied first to what builds on it.  No database needed.
"""

from __future__ import annotations

import heapq
import re
from argparse import ArgumentParser, Namespace
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from alembic.config import Config

if TYPE_CHECKING:
    from alembic.script import Script, ScriptDirectory

    from tecnorev.migrate.modules import Registry

NAME = "graph"
HELP = "draw the cross-module migration graph (Mermaid or Graphviz DOT), no database needed"
FORMATS = ("mermaid", "dot")
UNOWNED = "(no installed module)"


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument(
        "--format", choices=FORMATS, default="mermaid", help="output format (default: mermaid)"
    )
    parser.add_argument(
        "--revisions",
        action="store_true",
        help="one node per revision, grouped per module, with down_revision edges and "
        "depends_on edges (dashed)",
    )


@dataclass(frozen=True)
class Node:
    key: str
    label: str
    head: bool = False


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    label: str = ""
    dashed: bool = False


@dataclass
class Graph:
    """What is drawn, independent of the output format.  ``groups`` maps a cluster title to
    its nodes; the ``None`` group is drawn without a cluster."""

    groups: dict[str | None, list[Node]] = field(default_factory=dict)
    edges: list[Edge] = field(default_factory=list)


def run(config: Config, options: Namespace) -> int:
    from alembic.script import ScriptDirectory

    from tecnorev.migrate.modules import get_registry

    scripts = ScriptDirectory.from_config(config)
    registry = get_registry()
    graph = (
        revision_graph(scripts, registry) if options.revisions else module_graph(scripts, registry)
    )
    render = to_mermaid if options.format == "mermaid" else to_dot
    print(render(graph), end="")
    return 0


# --------------------------------------------------------------------------- building


def _owners(scripts: Iterable[Script], registry: Registry) -> dict[str, str]:
    """Revision id -> owning module, from the folder each file lives in."""
    folders = {m.migrations_path().resolve(): m.name for m in registry.modules}
    return {
        script.revision: folders.get(Path(script.path).resolve().parent, UNOWNED)
        for script in scripts
    }


def _base_to_head(scripts: Iterable[Script], rank: dict[str, int]) -> list[Script]:
    """Every revision after its parents; ties go by ``rank`` then id.  alembic's own order of
    independent branches follows set iteration and changes from run to run."""
    by_id = {script.revision: script for script in scripts}
    waiting: dict[str, int] = {}
    children: dict[str, list[str]] = {}
    for script in by_id.values():
        parents = {*script._versioned_down_revisions, *_dependencies(script)}
        waiting[script.revision] = len(parents)
        for parent in parents:
            children.setdefault(parent, []).append(script.revision)
    ready = [(rank[r], r) for r, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    ordered = []
    while ready:
        revision = heapq.heappop(ready)[1]
        ordered.append(by_id[revision])
        for child in children.get(revision, ()):
            waiting[child] -= 1
            if not waiting[child]:
                heapq.heappush(ready, (rank[child], child))
    return ordered


def _ordered(scripts: ScriptDirectory, registry: Registry) -> tuple[list[Script], dict[str, str]]:
    every = list(scripts.walk_revisions())
    owners = _owners(every, registry)
    position = {name: i for i, name in enumerate(_module_order(registry, owners))}
    rank = {revision: position[owner] for revision, owner in owners.items()}
    return _base_to_head(every, rank), owners


def _dependencies(script: Script) -> tuple[str, ...]:
    # depends_on may name branch labels; alembic resolves them to revision ids here.
    return tuple(script._resolved_dependencies)


def _module_order(registry: Registry, owners: dict[str, str]) -> list[str]:
    extra = sorted(set(owners.values()) - set(registry.names))
    return [*registry.names, *extra]


def module_graph(scripts: ScriptDirectory, registry: Registry) -> Graph:
    ordered, owners = _ordered(scripts, registry)
    links: dict[tuple[str, str], list[str]] = {}
    for script in ordered:
        mine = owners[script.revision]
        for dep in _dependencies(script):
            if owners.get(dep, UNOWNED) != mine:
                pair = (owners.get(dep, UNOWNED), mine)
                links.setdefault(pair, []).append(f"{script.revision} depends on {dep}")
    graph = Graph({None: [Node(name, name) for name in _module_order(registry, owners)]})
    graph.edges = [Edge(src, dst, "\n".join(why)) for (src, dst), why in links.items()]
    return graph


def revision_graph(scripts: ScriptDirectory, registry: Registry) -> Graph:
    from tecnorev.migrate.phases import Phase, phase_of

    ordered, owners = _ordered(scripts, registry)
    graph = Graph({name: [] for name in _module_order(registry, owners)})
    for script in ordered:
        label = script.revision + (f"\n{script.doc}" if script.doc else "")
        if phase_of(script) is Phase.CONTRACT:
            label += "\n(contract)"
        graph.groups[owners[script.revision]].append(Node(script.revision, label, script.is_head))
        for parent in script._versioned_down_revisions:
            graph.edges.append(Edge(parent, script.revision))
        for dep in _dependencies(script):
            graph.edges.append(Edge(dep, script.revision, dashed=True))
    graph.groups = {name: nodes for name, nodes in graph.groups.items() if nodes}
    return graph


# --------------------------------------------------------------------------- rendering


def _identifiers(keys: Iterable[str], prefix: str) -> dict[str, str]:
    """Safe, unique Mermaid identifiers (a module named ``end`` would close a subgraph)."""
    found: dict[str, str] = {}
    taken: set[str] = set()
    for key in keys:
        base = prefix + re.sub(r"\W", "_", key, flags=re.ASCII)
        ident, n = base, 1
        while ident in taken:
            n += 1
            ident = f"{base}_{n}"
        taken.add(ident)
        found[key] = ident
    return found


def _mermaid_text(text: str) -> str:
    lines = [
        line.replace("#", "#35;").replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")
        for line in text.splitlines()
    ]
    return '"' + "<br/>".join(lines) + '"'


def to_mermaid(graph: Graph) -> str:
    nodes = [node for group in graph.groups.values() for node in group]
    ids = _identifiers([n.key for n in nodes], "n_")
    groups = _identifiers([g for g in graph.groups if g is not None], "g_")
    out = [
        "%% Tecno Rev migrations: arrows point from what is applied first to what builds on it",
        "flowchart LR",
    ]
    for title, members in graph.groups.items():
        indent = "    "
        if title is not None:
            out.append(f"    subgraph {groups[title]} [{_mermaid_text(title)}]")
            indent = "        "
        for node in members:
            out.append(f"{indent}{ids[node.key]}[{_mermaid_text(node.label)}]")
        if title is not None:
            out.append("    end")
    for edge in graph.edges:
        arrow = "-.->" if edge.dashed else "-->"
        label = f"|{_mermaid_text(edge.label)}|" if edge.label else ""
        out.append(f"    {ids[edge.source]} {arrow}{label} {ids[edge.target]}")
    heads = [ids[n.key] for n in nodes if n.head]
    if heads:
        out.append("    classDef head stroke-width:3px")
        out.append(f"    class {','.join(heads)} head")
    return "\n".join(out) + "\n"


def _dot_text(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + "\\n".join(escaped.splitlines()) + '"'


def to_dot(graph: Graph) -> str:
    out = [
        "// Tecno Rev migrations: arrows point from what is applied first to what builds on it",
        "digraph migrations {",
        "    rankdir=LR;",
        "    node [shape=box];",
    ]
    for index, (title, members) in enumerate(graph.groups.items()):
        indent = "    "
        if title is not None:
            # Graphviz draws a subgraph as a box only when its name starts with "cluster".
            out.append(f"    subgraph cluster_{index} {{")
            out.append(f"        label={_dot_text(title)};")
            indent = "        "
        for node in members:
            bold = ", penwidth=2" if node.head else ""
            out.append(f"{indent}{_dot_text(node.key)} [label={_dot_text(node.label)}{bold}];")
        if title is not None:
            out.append("    }")
    for edge in graph.edges:
        attributes = [f"label={_dot_text(edge.label)}"] if edge.label else []
        if edge.dashed:
            attributes.append("style=dashed")
        suffix = f" [{', '.join(attributes)}]" if attributes else ""
        out.append(f"    {_dot_text(edge.source)} -> {_dot_text(edge.target)}{suffix};")
    out.append("}")
    return "\n".join(out) + "\n"
