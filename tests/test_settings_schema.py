"""One settings schema: every setting read anywhere is declared, listed and documented.

The source scan reads every product module (not revisions: they read no settings) and fails
on a read of the environment outside the schema's own readers, and on any setting name a
message or docstring mentions that the schema does not declare.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tecnorev.core.errors import ConfigError
from tecnorev.core.settings_schema import MASK, describe_settings, validate_settings

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted(
    path
    for pattern in ("packages/*/src/**/*.py", "services/*/src/**/*.py")
    for path in ROOT.glob(pattern)
    if "migrations" not in path.parts
)
# The only places that read the environment by name: the schema's readers.
READERS = {
    "packages/core/src/tecnorev/core/settings.py",
    "packages/migrate/src/tecnorev/migrate/project.py",
}
# Variables of other programs, read to pass them on, not settings of ours.
FOREIGN = {
    "PGOPTIONS": "libpq's server options, kept ahead of the API's own",
    "ALEMBIC_CONFIG": "Alembic's choice of ini file",
    "PROMETHEUS_MULTIPROC_DIR": "prometheus-client's folder of the workers' metric files",
    "OTEL_TRACES_EXPORTER": "OpenTelemetry's standard choice of trace exporter",
}
TECNOREV = str(Path(sys.executable).parent / "tecnorev")
NAME = re.compile(r"\b(TECNOREV_[A-Z][A-Z0-9_]*|DATABASE_URL|SECRET_KEY|TEST_DATABASE_URL)\b")
# the engine reads its settings as setting("LOCK_TIMEOUT"), named with the project's prefix
ENGINE_CALLS = {"setting", "setting_name", "duration"}


@pytest.fixture(scope="module")
def schema() -> dict[str, object]:
    return {s.name: s for s in describe_settings()}


def _environment_reads(tree: ast.AST) -> list[tuple[int, str | None]]:
    """(line, variable name if literal) of each read of ``os.environ`` / ``os.getenv`` and
    of each ``envvar=`` handed to typer."""
    reads = []
    for node in ast.walk(tree):
        target = None
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and (
                (func.attr == "get" and ast.unparse(func.value) in ("os.environ", "environ"))
                or ast.unparse(func) in ("os.getenv", "getenv")
            ):
                target = node.args[0] if node.args else None
            else:
                envvar = next((k.value for k in node.keywords if k.arg == "envvar"), None)
                if envvar is None:
                    continue
                target = envvar
        elif (
            isinstance(node, ast.Subscript)
            and isinstance(node.ctx, ast.Load)
            and ast.unparse(node.value) in ("os.environ", "environ")
        ):
            target = node.slice
        else:
            continue
        literal = target.value if isinstance(target, ast.Constant) else None
        reads.append((node.lineno, literal if isinstance(literal, str) else None))
    return reads


def test_the_scan_sees_the_source():
    # guard against a glob that silently matches nothing
    names = {p.relative_to(ROOT).as_posix() for p in SOURCES}
    assert names >= READERS
    assert len(SOURCES) > 80


def test_no_setting_is_read_outside_the_schema():
    bypasses = []
    for path in SOURCES:
        relative = path.relative_to(ROOT).as_posix()
        for line, name in _environment_reads(ast.parse(path.read_text(encoding="utf-8"))):
            if relative in READERS or name in FOREIGN:
                continue
            bypasses.append(f"{relative}:{line} reads {name or 'the environment'}")
    assert not bypasses, "settings read around the schema:\n" + "\n".join(bypasses)


def test_every_setting_named_in_the_source_is_declared(schema):
    undeclared = []
    for path in SOURCES:
        relative = path.relative_to(ROOT).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found = set(NAME.findall(node.value))
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name | ast.Attribute)
                and ast.unparse(node.func).rpartition(".")[2] in ENGINE_CALLS
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and str(node.args[0].value).isupper()
            ):
                value = node.args[0].value
                prefixed = not any(k.arg == "prefixed" for k in node.keywords)
                found = {f"TECNOREV_{value}" if prefixed else value}
            else:
                continue
            undeclared.extend(f"{relative}:{node.lineno} {n}" for n in found - schema.keys())
    assert not undeclared, "named but not declared:\n" + "\n".join(sorted(set(undeclared)))


def _readme_table() -> dict[str, str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        names = [n.strip().strip("`") for n in cells[0].split(",")]
        defaults = [d.strip().replace("`", "") for d in cells[2].split(", ")]
        if len(defaults) != len(names):
            defaults = [cells[2].replace("`", "")] * len(names)
        rows.update(zip(names, defaults, strict=True))
    return rows


def test_the_readme_documents_every_setting_with_its_default(schema):
    table = _readme_table()
    assert sorted(table) == sorted(schema), (
        f"missing from the README: {sorted(schema.keys() - table.keys())}; "
        f"not in the schema: {sorted(table.keys() - schema.keys())}"
    )
    wrong = {n: (table[n], schema[n].default) for n in table if table[n] != schema[n].default}
    assert not wrong, f"README default != schema default: {wrong}"


def test_every_setting_says_what_it_does(schema):
    assert all(s.description and s.owner for s in schema.values())
    # each part that reads settings is listed as an owner
    owners = {o for s in schema.values() for o in s.owner.split(", ")}
    assert {"core", "auth", "api", "migrate"} <= owners


def test_every_bad_setting_is_named_in_one_error(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TECNOREV_WORKERS", "0")  # api's
    monkeypatch.setenv("TECNOREV_ACCESS_TOKEN_MINUTES", "soon")  # a module's (auth)
    monkeypatch.setenv("TECNOREV_ADMISSION_WAIT", "-1s")  # core's
    monkeypatch.setenv("TECNOREV_LOCK_RETRIES", "many")  # the engine's
    with pytest.raises(ConfigError) as caught:
        validate_settings()
    message = str(caught.value)
    assert message.startswith("4 settings cannot be used: ")
    for expected in (
        "TECNOREV_WORKERS='0' must be a whole number of at least 1",
        "TECNOREV_ACCESS_TOKEN_MINUTES='soon' must be a whole number",
        "TECNOREV_ADMISSION_WAIT='-1s' must be a duration above 0",
        "TECNOREV_LOCK_RETRIES='many' is not a whole number",
    ):
        assert expected in message


def _settings_command(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not NAME.fullmatch(k)}
    return subprocess.run(
        [TECNOREV, "settings", *args],
        cwd=cwd,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_settings_command_shows_value_source_and_masks_secrets(tmp_path):
    (tmp_path / ".env").write_text(
        "TECNOREV_WORKERS=3\nSECRET_KEY=from-the-file-and-secret\n", encoding="utf-8"
    )
    shown = _settings_command(
        tmp_path,
        {"TECNOREV_READ_THREADS": "4", "TECNOREV_ADMIN_PASSWORD": "hunter2hunter2"},
        "--json",
    )
    assert shown.returncode == 0, shown.stderr
    listed = {s["name"]: s for s in json.loads(shown.stdout)}
    assert listed["TECNOREV_WORKERS"]["value"] == "3"
    assert listed["TECNOREV_WORKERS"]["source"] == f".env ({tmp_path / '.env'})"
    assert listed["TECNOREV_READ_THREADS"] | {"description": ""} == listed[
        "TECNOREV_READ_THREADS"
    ] | {"value": "4", "source": "environment", "description": ""}
    assert listed["TECNOREV_ACCESS_TOKEN_MINUTES"]["source"] == "default"
    assert listed["TECNOREV_ACCESS_TOKEN_MINUTES"]["owner"] == "auth"
    for secret in ("SECRET_KEY", "TECNOREV_ADMIN_PASSWORD"):
        assert listed[secret]["value"] == MASK and listed[secret]["secret"]
    assert "hunter2" not in shown.stdout and "from-the-file" not in shown.stdout
    assert listed["TECNOREV_LOCK_TIMEOUT"]["owner"] == "migrate"
    assert listed["TECNOREV_DB_CONNECT_TIMEOUT"]["owner"] == "core, migrate"


def test_the_settings_command_marks_bad_values_and_exits_3(tmp_path):
    shown = _settings_command(tmp_path, {"TECNOREV_PORT": "http", "TECNOREV_LOCK_TIMEOUT": "soon"})
    assert shown.returncode == 3
    assert "error: 2 setting(s) cannot be used" in shown.stderr
    assert "error: TECNOREV_PORT='http'" in shown.stdout
    assert "error: TECNOREV_LOCK_TIMEOUT='soon' is not a duration" in shown.stdout
    assert "Traceback" not in shown.stderr


def test_serve_refuses_to_start_naming_every_bad_setting(tmp_path):
    env = {k: v for k, v in os.environ.items() if not NAME.fullmatch(k)}
    env |= {"TECNOREV_SHUTDOWN_GRACE": "never", "TECNOREV_PASSWORD_HASHES": "0"}
    started = subprocess.run(
        [TECNOREV, "serve"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert started.returncode != 0
    assert "2 settings cannot be used" in started.stderr
    assert "TECNOREV_SHUTDOWN_GRACE='never'" in started.stderr
    assert "TECNOREV_PASSWORD_HASHES='0'" in started.stderr
    assert not (tmp_path / "tecnorev.db").exists()  # refused before touching the database
