"""Which package may import which: core knows no domain package and not the engine; the engine
knows no domain package, not core, and not the web (its command line is Typer's, which is not
the web).  Read from the source (every import
statement, at any depth), so an import inside a function counts too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOMAIN = ("tecnorev.auth", "tecnorev.catalog", "tecnorev.inventory", "tecnorev.sales",
          "tecnorev.logistics", "tecnorev.payments", "tecnorev.api")  # fmt: skip
WEB = ("fastapi", "starlette", "uvicorn", "sqlmodel")

# The only places core reaches the engine, each for a reason a user relies on.
CORE_MAY_IMPORT_ENGINE = {
    # revisions and env.py files written against tecnorev.core.migration keep working
    "tecnorev/core/migration/_moved.py",
    # `tecnorev db` is the engine's command group, mounted in `tecnorev`; one exit-code table
    "tecnorev/core/cli.py",
    "tecnorev/core/errors.py",
    # a module that does not load is the engine's kind of error (exit 4) wherever it is found
    "tecnorev/core/registry.py",
    # `module new` formats what it writes as `db generate` does
    "tecnorev/core/scaffold.py",
}


def imports_of(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "id", getattr(node.func, "attr", None)) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.JoinedStr | ast.Constant)
        ):
            first = node.args[0]
            text = (
                first.value
                if isinstance(first, ast.Constant)
                else "".join(v.value for v in first.values if isinstance(v, ast.Constant))
            )
            found.add(str(text))
    return found


def sources(package: str) -> list[Path]:
    root = REPO / "packages" / package / "src"
    return sorted(root.rglob("*.py"))


def offending(files: list[Path], forbidden: tuple[str, ...], allowed: set[str] = frozenset()):
    bad = []
    for path in files:
        rel = Path(*path.parts[len(path.parts) - path.parts[::-1].index("src") :]).as_posix()
        if rel in allowed:
            continue
        for name in imports_of(path):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                bad.append(f"{rel}: {name}")
    return bad


def test_core_imports_no_domain_package_and_not_the_engine():
    files = sources("core")
    assert files
    assert offending(files, DOMAIN) == []
    assert offending(files, ("tecnorev.migrate",), CORE_MAY_IMPORT_ENGINE) == []


def test_the_engine_imports_no_domain_package_no_core_and_no_web():
    files = sources("migrate")
    assert len(files) > 20
    assert offending(files, (*DOMAIN, "tecnorev.core", *WEB)) == []


@pytest.mark.parametrize(
    "module", ["auth", "catalog", "inventory", "sales", "logistics", "payments"]
)
def test_a_module_imports_only_what_it_declares(module):
    import tomllib

    pyproject = tomllib.loads((REPO / "packages" / module / "pyproject.toml").read_text())
    declared = {d.split(">")[0].split("<")[0].split("[")[0].strip().removeprefix("tecnorev-")
                for d in pyproject["project"]["dependencies"] if d.startswith("tecnorev-")}  # fmt: skip
    others = tuple(
        f"tecnorev.{name}"
        for name in ("core", "migrate", *(d.split(".")[1] for d in DOMAIN))
        if name != module and name not in declared
    )
    assert offending(sources(module), others) == []


def test_test_support_is_out_of_the_runtime_packages():
    """pytest is the test support's (tecnorev-testing), never a runtime package's."""
    runtime = [p.name for p in (REPO / "packages").iterdir() if p.name != "testing"]
    for package in [*runtime, "../services/api"]:
        assert offending(sources(package), ("pytest", "tecnorev.testing")) == [], package


def test_the_core_test_support_needs_no_domain_module():
    """tecnorev.testing.core is for every module; .auth and .inventory each need their own."""
    files = {path.name: path for path in sources("testing")}
    assert offending([files["core.py"], files["__init__.py"]], DOMAIN) == []
    assert offending([files["auth.py"]], tuple(d for d in DOMAIN if d != "tecnorev.auth")) == []
    inventory = tuple(d for d in DOMAIN if d not in ("tecnorev.inventory", "tecnorev.catalog"))
    assert offending([files["inventory.py"]], inventory) == []


def test_the_check_sees_imports_inside_functions(tmp_path):
    probe = tmp_path / "src" / "tecnorev" / "probe.py"
    probe.parent.mkdir(parents=True)
    probe.write_text("def f():\n    from tecnorev.sales import service\n    import fastapi\n")
    assert sorted(offending([probe], ("tecnorev.sales", "fastapi"))) == [
        "tecnorev/probe.py: fastapi",
        "tecnorev/probe.py: tecnorev.sales",
    ]
