"""Writing a squash: one revision file that runs a range of a module's revisions.

Each original's ``upgrade()`` and ``downgrade()`` bodies become two private functions of the
new file, called in order (downgrades in reverse), so what a fresh database runs is exactly what
the originals ran, only read from one file.  Imports are merged; other top-level definitions
(helpers, table stubs, constants) are kept once, and two originals defining one name
differently are refused rather than renamed.  An original that runs SQL or touches rows (a data
migration) is kept only when asked (``keep_data``): it is never dropped silently.
"""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from alembic.script import Script
from alembic.util import to_tuple

from tecnorev.migrate.errors import MigrationError
from tecnorev.migrate.project import project

IDENTIFIERS = {"revision", "down_revision", "branch_labels", "depends_on", "replaces"}
# calls that run SQL or touch rows: a revision making them is a data migration (or may be)
DATA_CALLS = {"execute", "exec_driver_sql", "bulk_insert", "get_bind", "get_context"}


@dataclass
class _Parts:
    """What the originals bring to the new file."""

    future: list[str] = field(default_factory=list)
    imports: list[str] = field(default_factory=list)
    shared: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (source, origin)
    steps: list[tuple[Script, str, str, str]] = field(default_factory=list)  # up, down, title


def data_steps(script: Script) -> list[str]:
    """The calls in ``script``'s file (outside ``downgrade``) that run SQL or touch rows, as
    ``line: call``."""
    tree = ast.parse(Path(script.path).read_text(encoding="utf-8"))
    found = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "downgrade":
            continue
        for call in ast.walk(node):
            called = isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
            if called and call.func.attr in DATA_CALLS:
                found.append(f"line {call.lineno}: .{call.func.attr}()")
    return found


def _body(source: str, function: ast.FunctionDef) -> str:
    lines = source.splitlines()
    start = function.body[0].lineno - 1
    # comments between the signature and the first statement belong to the body
    while start > function.lineno and lines[start - 1].strip().startswith("#"):
        start -= 1
    return textwrap.dedent("\n".join(lines[start : function.end_lineno])).rstrip()


def _names(node: ast.stmt) -> list[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    if isinstance(node, ast.Assign):
        return [n.id for t in node.targets for n in ast.walk(t) if isinstance(n, ast.Name)]
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return [node.target.id]
    return []


def _gather(scripts: Sequence[Script]) -> _Parts:
    parts = _Parts()
    for script in scripts:
        source = Path(script.path).read_text(encoding="utf-8")
        tree = ast.parse(source)
        functions: dict[str, ast.FunctionDef] = {}
        for index, node in enumerate(tree.body):
            segment = ast.get_source_segment(source, node) or ""
            if index == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
                continue  # the docstring
            if isinstance(node, ast.ImportFrom) and node.module == "__future__":
                if segment not in parts.future:
                    parts.future.append(segment)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                if segment not in parts.imports:
                    parts.imports.append(segment)
            elif isinstance(node, ast.FunctionDef) and node.name in ("upgrade", "downgrade"):
                functions[node.name] = node
            elif set(_names(node)) & IDENTIFIERS and set(_names(node)) <= IDENTIFIERS:
                continue
            else:
                _share(parts, node, segment, script)
        if "upgrade" not in functions:
            raise MigrationError(f"{script.path} has no upgrade(): it cannot be squashed")
        up = _body(source, functions["upgrade"])
        down = _body(source, functions["downgrade"]) if "downgrade" in functions else None
        if down is None:
            raise MigrationError(
                f"{script.path} has no downgrade(): a squash must be able to go back as the "
                "originals did"
            )
        title = (script.doc or "").strip().splitlines()[0] if script.doc else ""
        parts.steps.append((script, up, down, title))
    return parts


def _share(parts: _Parts, node: ast.stmt, segment: str, script: Script) -> None:
    names = _names(node)
    if not names:
        raise MigrationError(
            f"{script.path}, line {node.lineno}: top-level code other than imports, "
            "definitions and assignments cannot be squashed (it ran once per import); move it "
            "into upgrade() or leave this revision out of the range (--to)"
        )
    for name in names:
        known = parts.shared.get(name)
        if known is not None and known[0] != segment:
            raise MigrationError(
                f"{name!r} is defined differently in {known[1]} and {Path(script.path).name}: "
                "rename it in one of them (a reviewed, repaired edit) or squash a shorter range"
            )
    if all(name in parts.shared for name in names):
        return
    for name in names:
        parts.shared[name] = (segment, Path(script.path).name)


def _literal(value: tuple[str, ...]) -> str:
    if not value:
        return "None"
    if len(value) == 1:
        return repr(value[0])
    return "(" + ", ".join(repr(v) for v in value) + ")"


def render(
    module: str, revision: str, scripts: Sequence[Script], created: str, message: str
) -> str:
    """The squash of ``scripts`` (oldest first) as revision ``revision`` of ``module``."""
    ids = [s.revision for s in scripts]
    inside = set(ids)
    parents: list[str] = []
    labels: list[str] = []
    depends: list[str] = []
    for script in scripts:
        raw = script.module
        for parent in to_tuple(getattr(raw, "down_revision", None), default=()):
            if parent not in inside and parent not in parents:
                parents.append(parent)
        for label in to_tuple(getattr(raw, "branch_labels", None), default=()):
            if label not in labels:
                labels.append(label)
        for dependency in to_tuple(getattr(raw, "depends_on", None), default=()):
            if dependency not in inside and dependency not in depends:
                depends.append(dependency)
    parts = _gather(scripts)

    out = [
        f'"""{message}',
        "",
        f"Squashes {len(ids)} revisions of {module}, {ids[0]} to {ids[-1]}: a fresh database",
        "runs this one; a database partway through them goes on with the originals while they",
        f"are shipped ({project().command} squash).",
        "",
        f"Revision ID: {revision}",
        f"Revises: {', '.join(parents)}",
        f"Create Date: {created}",
        '"""',
        "",
        *parts.future,
        *parts.imports,
        "",
        f"revision = {revision!r}",
        f"down_revision = {_literal(tuple(parents))}",
        f"branch_labels = {_literal(tuple(labels))}",
        f"depends_on = {_literal(tuple(depends))}",
        "replaces = (",
        *(f"    {r!r}," for r in ids),
        ")",
        "",
    ]
    for source, _origin in parts.shared.values():
        if source not in out:
            out += ["", source, ""]
    out += ["", "def upgrade() -> None:"]
    out += [f"    _upgrade_{s.revision}()" for s, *_ in parts.steps]
    out += ["", "", "def downgrade() -> None:"]
    out += [f"    _downgrade_{s.revision}()" for s, *_ in reversed(parts.steps)]
    for script, up, down, title in parts.steps:
        out += ["", "", f"# -- {script.revision}: {title}" if title else f"# -- {script.revision}"]
        out += ["", "", f"def _upgrade_{script.revision}() -> None:"]
        out += [textwrap.indent(up, "    ")]
        out += ["", "", f"def _downgrade_{script.revision}() -> None:"]
        out += [textwrap.indent(down, "    ")]
    return "\n".join(out).rstrip() + "\n"
