"""``tecnorev db graph``: the cross-module migration graph, checked by parsing what it prints.

The DOT output is read back with a small parser of the DOT grammar (statements, attribute lists,
subgraphs, quoted IDs) and the Mermaid output with a checker of the flowchart constructs it
uses, so neither Graphviz nor Mermaid is needed.  When ``dot`` is installed it gets the last word.
"""

from __future__ import annotations

import html
import itertools
import re
import shutil
import subprocess
from dataclasses import dataclass, field

import pytest
from alembic.script import ScriptDirectory

from tecnorev.core.registry import get_registry
from tecnorev.migrate import cli
from tecnorev.migrate.commands.graph import (
    Edge,
    Graph,
    Node,
    _base_to_head,
    to_dot,
    to_mermaid,
)

# --------------------------------------------------------------------------- a DOT reader


@dataclass
class Dot:
    nodes: dict[str, dict[str, str]] = field(default_factory=dict)
    edges: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    clusters: dict[str, tuple[dict[str, str], list[str]]] = field(default_factory=dict)


_TOKEN = re.compile(
    r'\s+|//[^\n]*|/\*.*?\*/|^#[^\n]*|(?P<tok>->|--|[{}\[\];,=]|"(?:\\.|[^"\\])*"'
    r"|[A-Za-z_\x80-\uffff][\w\x80-\uffff]*|-?(?:\.\d+|\d+(?:\.\d*)?))",
    re.S | re.M,
)


def _tokens(text: str) -> list[str]:
    found, pos = [], 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        assert match, f"DOT: unexpected character at {text[pos : pos + 30]!r}"
        if match.group("tok"):
            found.append(match.group("tok"))
        pos = match.end()
    return found


def _id_value(token: str) -> str:
    if token.startswith('"'):
        return token[1:-1].replace('\\"', '"')
    return token


def _label_text(value: str) -> str:
    """A label's escString as shown: \\n is a line break, \\\\ a backslash."""
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


class _DotParser:
    KEYWORDS = {"node", "edge", "graph", "digraph", "subgraph", "strict"}

    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.pos = 0
        self.result = Dot()

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        token = self.peek()
        assert token is not None, "DOT: unexpected end of input"
        if expected is not None:
            assert token.lower() == expected, f"DOT: expected {expected!r}, got {token!r}"
        self.pos += 1
        return token

    def is_id(self, token: str | None) -> bool:
        return (
            token is not None
            and token not in "{}[];,=->"
            and token.lower() not in self.KEYWORDS
            and token not in ("->", "--")
        )

    def parse(self) -> Dot:
        if self.peek() and self.peek().lower() == "strict":
            self.take()
        assert self.take().lower() == "digraph", "DOT: a directed graph was expected"
        if self.is_id(self.peek()):
            self.take()
        self.take("{")
        self.statements(cluster=None)
        self.take("}")
        assert self.peek() is None, f"DOT: text after the graph: {self.tokens[self.pos :]}"
        return self.result

    def statements(self, cluster: str | None) -> None:
        while self.peek() not in ("}", None):
            self.statement(cluster)
            if self.peek() == ";":
                self.take()

    def attributes(self) -> dict[str, str]:
        found: dict[str, str] = {}
        while self.peek() == "[":
            self.take("[")
            while self.peek() != "]":
                key = self.take()
                assert self.is_id(key), f"DOT: bad attribute name {key!r}"
                self.take("=")
                value = self.take()
                assert self.is_id(value), f"DOT: bad attribute value {value!r}"
                found[_id_value(key)] = _id_value(value)
                if self.peek() in (";", ","):
                    self.take()
            self.take("]")
        return found

    def subgraph(self) -> list[str]:
        name = None
        if self.peek() and self.peek().lower() == "subgraph":
            self.take()
            if self.is_id(self.peek()):
                name = _id_value(self.take())
        self.take("{")
        before = set(self.result.nodes)
        if name and name.startswith("cluster"):
            self.result.clusters[name] = ({}, [])
        self.statements(cluster=name)
        self.take("}")
        return [n for n in self.result.nodes if n not in before]

    def statement(self, cluster: str | None) -> None:
        token = self.peek()
        assert token is not None
        if token.lower() in ("graph", "node", "edge"):
            self.take()
            self.attributes()
            return
        if token.lower() == "subgraph" or token == "{":
            self.subgraph()
            return
        assert self.is_id(token), f"DOT: unexpected {token!r}"
        first = _id_value(self.take())
        if self.peek() == "=":
            self.take()
            value = self.take()
            assert self.is_id(value)
            if cluster in self.result.clusters:
                self.result.clusters[cluster][0][first] = _id_value(value)
            return
        chain = [first]
        while self.peek() in ("->", "--"):
            assert self.take() == "->", "DOT: '--' in a digraph"
            target = self.take()
            assert self.is_id(target), f"DOT: bad edge target {target!r}"
            chain.append(_id_value(target))
        attrs = self.attributes()
        if len(chain) == 1:
            self.result.nodes.setdefault(first, {}).update(attrs)
            if cluster in self.result.clusters:
                self.result.clusters[cluster][1].append(first)
            return
        for name in chain:
            self.result.nodes.setdefault(name, {})
        for source, target in itertools.pairwise(chain):
            self.result.edges.append((source, target, attrs))


def parse_dot(text: str) -> Dot:
    return _DotParser(text).parse()


# --------------------------------------------------------------------------- a Mermaid checker

_MERMAID_RESERVED = {"end", "graph", "subgraph", "flowchart", "style", "class", "classdef", "click"}
_MID = r"[A-Za-z_][A-Za-z0-9_]*"
_MSTR = r'"[^"]*"'
_M_NODE = re.compile(rf"^\s*(?P<id>{_MID})\[(?P<label>{_MSTR})\]$")
_M_SUB = re.compile(rf"^\s*subgraph (?P<id>{_MID}) \[(?P<label>{_MSTR})\]$")
_M_EDGE = re.compile(
    rf"^\s*(?P<src>{_MID}) (?P<arrow>-->|-\.->)(?:\|(?P<label>{_MSTR})\|)? (?P<dst>{_MID})$"
)


@dataclass
class Mermaid:
    nodes: dict[str, str] = field(default_factory=dict)  # id -> label
    edges: list[tuple[str, str, str, bool]] = field(default_factory=list)  # src, dst, label, dashed
    subgraphs: dict[str, tuple[str, list[str]]] = field(default_factory=dict)
    classes: dict[str, list[str]] = field(default_factory=dict)


def _mermaid_label(quoted: str) -> str:
    inner = quoted[1:-1]
    assert "<" not in inner.replace("<br/>", ""), f"raw '<' in a Mermaid label: {inner!r}"
    inner = inner.replace("<br/>", "\n")
    return html.unescape(re.sub(r"#(\w+);", r"&\1;", inner).replace("&35;", "&#35;"))


def parse_mermaid(text: str) -> Mermaid:
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("%%")]
    assert lines[0] == "flowchart LR", lines[0]
    found = Mermaid()
    open_subgraph: str | None = None
    pending: list[tuple[str, str, str, bool]] = []
    for line in lines[1:]:
        stripped = line.strip()
        if m := _M_SUB.match(line):
            assert open_subgraph is None, "nested subgraph"
            open_subgraph = m["id"]
            found.subgraphs[m["id"]] = (_mermaid_label(m["label"]), [])
        elif stripped == "end":
            assert open_subgraph is not None, "'end' without a subgraph"
            open_subgraph = None
        elif m := _M_NODE.match(line):
            assert m["id"] not in found.nodes, f"node {m['id']} declared twice"
            found.nodes[m["id"]] = _mermaid_label(m["label"])
            if open_subgraph:
                found.subgraphs[open_subgraph][1].append(m["id"])
        elif m := _M_EDGE.match(line):
            label = _mermaid_label(m["label"]) if m["label"] else ""
            pending.append((m["src"], m["dst"], label, m["arrow"] == "-.->"))
        elif stripped.startswith("classDef "):
            continue
        elif stripped.startswith("class "):
            _, members, name = stripped.split(" ")
            found.classes[name] = members.split(",")
        else:
            raise AssertionError(f"not a Mermaid flowchart line: {line!r}")
    assert open_subgraph is None, "subgraph left open"
    for ident in [*found.nodes, *found.subgraphs]:
        assert ident.lower() not in _MERMAID_RESERVED, f"reserved word used as an id: {ident}"
    for source, target, _label, _dashed in pending:
        assert source in found.nodes and target in found.nodes, (source, target)
    found.edges = pending
    return found


# --------------------------------------------------------------------------- the installed graph


def graph_output(capsys, *args: str) -> str:
    assert cli.main(["graph", *args]) == 0
    return capsys.readouterr().out


def installed() -> tuple[ScriptDirectory, dict[str, str]]:
    """The scripts and each revision's module (named by its id: ``<module>_<hex>``)."""
    scripts = ScriptDirectory.from_config(cli.make_config())
    owners = {s.revision: s.revision.rpartition("_")[0] for s in scripts.walk_revisions()}
    return scripts, owners


def assert_module_edges(edges: set[tuple[str, str]]) -> None:
    """Every declared dependency is an edge, and every edge goes into what the module depends
    on (directly or not: a module's grants revision reaches auth, which it needs through
    others)."""
    registry = get_registry()
    assert {(dep, m.name) for m in registry.modules for dep in m.depends_on} <= edges
    assert all(source in registry.dependencies(target) for source, target in edges), edges


def test_module_graph_mermaid_has_a_node_per_module_and_the_cross_module_edges(capsys):
    parsed = parse_mermaid(graph_output(capsys))
    assert sorted(parsed.nodes.values()) == sorted(get_registry().names)
    by_id = parsed.nodes
    edges = {(by_id[s], by_id[t]) for s, t, _label, _dashed in parsed.edges}
    assert_module_edges(edges)
    scripts, owners = installed()
    for source, target, label, _dashed in parsed.edges:
        for line in label.splitlines():
            dependent, _, dependency = line.partition(" depends on ")
            assert owners[dependent] == by_id[target] and owners[dependency] == by_id[source]
            assert dependency in scripts.get_revision(dependent)._resolved_dependencies


def test_module_graph_dot_parses_and_has_the_same_edges(capsys):
    parsed = parse_dot(graph_output(capsys, "--format", "dot"))
    assert sorted(parsed.nodes) == sorted(get_registry().names)
    assert_module_edges({(s, t) for s, t, _a in parsed.edges})
    assert all("depends on" in attrs["label"] for _s, _t, attrs in parsed.edges)


def test_revision_graph_dot_groups_every_revision_in_its_module(capsys):
    parsed = parse_dot(graph_output(capsys, "--format", "dot", "--revisions"))
    scripts, owners = installed()
    assert set(parsed.nodes) == set(owners)
    clusters = {attrs["label"]: members for attrs, members in parsed.clusters.values()}
    assert set(clusters) == set(get_registry().names)
    for module, members in clusters.items():
        assert {owners[m] for m in members} == {module}
    solid = {(s, t) for s, t, attrs in parsed.edges if "style" not in attrs}
    dashed = {(s, t) for s, t, attrs in parsed.edges if attrs.get("style") == "dashed"}
    scripts_all = list(scripts.walk_revisions())
    assert solid == {(p, s.revision) for s in scripts_all for p in s._versioned_down_revisions}
    assert dashed == {(d, s.revision) for s in scripts_all for d in s._resolved_dependencies}
    assert dashed, "the installed modules have cross-module depends_on"
    for script in scripts_all:
        label = _label_text(parsed.nodes[script.revision]["label"])
        assert label.splitlines() == [script.revision, script.doc]
        assert ("penwidth" in parsed.nodes[script.revision]) == script.is_head


def test_revision_graph_mermaid_uses_subgraphs_and_dashed_depends_on(capsys):
    parsed = parse_mermaid(graph_output(capsys, "--revisions"))
    _, owners = installed()
    revision_of = {ident: label.splitlines()[0] for ident, label in parsed.nodes.items()}
    assert set(revision_of.values()) == set(owners)
    for title, members in parsed.subgraphs.values():
        assert {owners[revision_of[m]] for m in members} == {title}
    dashed = [(revision_of[s], revision_of[t]) for s, t, _l, d in parsed.edges if d]
    assert all(owners[s] != owners[t] for s, t in dashed)
    assert parsed.classes["head"], "module heads are marked"


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz is not installed")
@pytest.mark.parametrize("extra", [[], ["--revisions"]])
def test_graphviz_accepts_the_dot_output(capsys, extra):
    text = graph_output(capsys, "--format", "dot", *extra)
    result = subprocess.run(
        ["dot", "-Tsvg"], input=text, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "<svg" in result.stdout


def test_revisions_are_ordered_the_same_whatever_order_alembic_gives():
    """alembic orders independent branches by set iteration (it changes with the hash seed);
    a graph kept in the docs must not change when nothing changed."""
    from types import SimpleNamespace

    def script(revision, down=(), deps=()):
        return SimpleNamespace(
            revision=revision, _versioned_down_revisions=down, _resolved_dependencies=deps
        )

    scripts = [
        script("a1"),
        script("a2", ("a1",)),
        script("b1", deps=("a2",)),
        script("c1", deps=("a1",)),
        script("c2", ("c1",), ("b1",)),
    ]
    rank = {"a1": 0, "a2": 0, "b1": 1, "c1": 2, "c2": 2}
    orders = {
        tuple(s.revision for s in _base_to_head(permutation, rank))
        for permutation in itertools.permutations(scripts)
    }
    assert orders == {("a1", "a2", "b1", "c1", "c2")}


def test_an_unknown_format_is_refused(capsys):
    assert cli.main(["graph", "--format", "png"]) == 2
    err = capsys.readouterr().err
    assert "error: Invalid value for '--format': 'png' is not one of mermaid, dot" in err


# --------------------------------------------------------------------------- awkward names


def awkward_graph() -> Graph:
    """Names that break naive output: Mermaid keywords, quotes, '#', '<', backslashes."""
    return Graph(
        groups={
            "end": [Node("end_0123456789ab", 'end_0123456789ab\nsay "hi" <b> #1 \\ ok', True)],
            "a-b": [Node("a-b_1", "a-b_1"), Node("a_b_1", "a_b_1")],
        },
        edges=[
            Edge("end_0123456789ab", "a-b_1", 'needs "x"\nand <y>'),
            Edge("a-b_1", "a_b_1", dashed=True),
        ],
    )


def test_mermaid_escapes_labels_and_never_uses_keywords_as_ids():
    parsed = parse_mermaid(to_mermaid(awkward_graph()))
    assert sorted(parsed.nodes.values()) == sorted(
        ['end_0123456789ab\nsay "hi" <b> #1 \\ ok', "a-b_1", "a_b_1"]
    )
    assert len(parsed.nodes) == 3, "a-b_1 and a_b_1 stay two nodes"
    assert sorted(title for title, _ in parsed.subgraphs.values()) == ["a-b", "end"]
    labels = {label for _s, _t, label, _d in parsed.edges}
    assert 'needs "x"\nand <y>' in labels


def test_dot_escapes_labels_and_quotes_every_id():
    parsed = parse_dot(to_dot(awkward_graph()))
    assert set(parsed.nodes) == {"end_0123456789ab", "a-b_1", "a_b_1"}
    label = _label_text(parsed.nodes["end_0123456789ab"]["label"])
    assert label == 'end_0123456789ab\nsay "hi" <b> #1 \\ ok'
    edge_labels = [_label_text(a["label"]) for _s, _t, a in parsed.edges if "label" in a]
    assert edge_labels == ['needs "x"\nand <y>']
    assert sorted(a["label"] for a, _m in parsed.clusters.values()) == ["a-b", "end"]


def test_the_dot_reader_rejects_broken_dot():
    good = to_dot(awkward_graph())
    for broken in (good.rstrip()[:-1], good.replace("->", "-> ->", 1), good.replace("];", "", 1)):
        with pytest.raises(AssertionError):
            parse_dot(broken)
