"""Writing a squash: one revision file that runs a range of a module's revisions.

Each original becomes a function of the new file holding its code as it was (its helpers,
table stubs and imports included, only indented), which returns its ``upgrade`` and
``downgrade``; the squash calls them in order (downgrades in reverse).  So what a fresh database
runs is exactly what the originals ran, two originals may define the same name, and nothing is
rewritten.  What cannot move into a function is refused with file and line: code that runs on
import, ``global``.  An original that runs SQL or touches rows (a data migration) is kept only
when asked (``keep_data``): it is never dropped silently.
"""

from __future__ import annotations

import ast
import io
import tokenize
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
class _Step:
    """One original, as a closure of the new file: its code verbatim (minus docstring, revision
    identifiers and ``__future__`` imports), indented, returning its upgrade and downgrade."""

    script: Script
    title: str
    code: list[str]
    future: list[str] = field(default_factory=list)


def data_steps(script: Script) -> list[str]:
    """The calls in ``script``'s file (outside ``downgrade``) that run SQL or touch rows, as
    ``line: call``."""
    tree = ast.parse(Path(script.path).read_text(encoding="utf-8"))
    found = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "downgrade":
            continue
        for call in ast.walk(node):
            if (
                isinstance(call, ast.Call)
                and isinstance(call.func, ast.Attribute)
                and call.func.attr in DATA_CALLS
            ):
                found.append(f"line {call.lineno}: .{call.func.attr}()")
    return found


def _inside_strings(source: str) -> set[int]:
    """Line numbers (1-based) that continue a multi-line string: indenting them would change
    the string."""
    inside: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type in _STRING_TOKENS and token.end[0] > token.start[0]:
            inside.update(range(token.start[0] + 1, token.end[0] + 1))
    return inside


_STRING_TOKENS = {
    tokenize.STRING,
    *(getattr(tokenize, n) for n in ("FSTRING_MIDDLE", "FSTRING_END") if hasattr(tokenize, n)),
}


def _names(node: ast.stmt) -> set[str]:
    if isinstance(node, ast.Assign):
        return {n.id for t in node.targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return {node.target.id}
    return set()


def _step(script: Script) -> _Step:
    path = Path(script.path)
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source)
    drop: set[int] = set()  # line numbers left out of the closure
    future: list[str] = []
    defined = set()
    for index, node in enumerate(tree.body):
        lines = set(range(node.lineno, (node.end_lineno or node.lineno) + 1))
        if index == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            drop |= lines  # the docstring
        elif isinstance(node, ast.ImportFrom) and node.module == "__future__":
            future.append(ast.get_source_segment(source, node) or "")
            drop |= lines
        elif _names(node) and _names(node) <= IDENTIFIERS:
            drop |= lines
        elif isinstance(node, ast.Expr):
            raise MigrationError(
                f"{path}, line {node.lineno}: top-level code that runs on import cannot be "
                "squashed (the squash would run it at upgrade time instead); move it into "
                "upgrade() or end the range before this revision (--to)"
            )
        elif isinstance(node, ast.FunctionDef):
            defined.add(node.name)
    for inner in ast.walk(tree):
        if isinstance(inner, (ast.Global, ast.Nonlocal)):
            raise MigrationError(
                f"{path}, line {inner.lineno}: '{type(inner).__name__.lower()}' cannot be "
                "squashed (the revision's top level becomes a function's body)"
            )
    missing = {"upgrade", "downgrade"} - defined
    if missing:
        raise MigrationError(
            f"{path} has no {' or '.join(sorted(missing))}(): a squash runs both as the "
            "originals did"
        )
    strings = _inside_strings(source)
    code = []
    for number, line in enumerate(source.splitlines(), start=1):
        if number in drop:
            continue
        code.append(line if number in strings or not line.strip() else "    " + line)
    while code and not code[0].strip():
        code.pop(0)
    title = (script.doc or "").strip().splitlines()[0] if script.doc else ""
    return _Step(script, title, code, future)


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
    steps = [_step(script) for script in scripts]
    future = list(dict.fromkeys(f for step in steps for f in step.future))

    out = [
        f'"""{message}',
        "",
        f"Squashes {len(ids)} revisions of {module}, {ids[0]} to {ids[-1]}: a fresh database",
        "runs this one; a database partway through them goes on with the originals while they",
        f"are shipped ({project().command} squash).  Each original is a function below",
        "holding its code as it was, returning its upgrade() and downgrade().",
        "",
        f"Revision ID: {revision}",
        f"Revises: {', '.join(parents)}",
        f"Create Date: {created}",
        '"""',
        "",
        *future,
        "from types import SimpleNamespace",
        "",
        f"revision = {revision!r}",
        f"down_revision = {_literal(tuple(parents))}",
        f"branch_labels = {_literal(tuple(labels))}",
        f"depends_on = {_literal(tuple(depends))}",
        "replaces = (",
        *(f"    {r!r}," for r in ids),
        ")",
        "",
        "",
        "def upgrade() -> None:",
        *(f"    _{step.script.revision}().upgrade()" for step in steps),
        "",
        "",
        "def downgrade() -> None:",
        *(f"    _{step.script.revision}().downgrade()" for step in reversed(steps)),
    ]
    for step in steps:
        heading = f"# -- {step.script.revision}" + (f": {step.title}" if step.title else "")
        out += ["", "", heading, "", "", f"def _{step.script.revision}() -> SimpleNamespace:"]
        out += step.code
        out += ["", "    return SimpleNamespace(upgrade=upgrade, downgrade=downgrade)"]
    return "\n".join(out).rstrip() + "\n"
