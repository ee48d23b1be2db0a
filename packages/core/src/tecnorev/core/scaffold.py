"""``tecnorev module new <name>``: a new domain module laid out like every other one.

The module gets a distribution of its own (pyproject with its entry point), the usual files
(models, schemas, service, routes, tests), what a module owns besides (its permission codes,
its settings class, its command group) and a migrations folder holding the root revision of
its branch, so the guide's "Common Workflow" becomes: add a model, ``pip install -e``,
``tecnorev db generate <name> -m ...``, ``tecnorev db upgrade heads``.

A module the new one depends on (directly or not) may add or replace files through the
``tecnorev.scaffold`` entry point named after it: ``fn(Scaffold) -> {relative path: text}``.
auth uses it to declare a permission code, guard a route with it, and write the revision
granting it, so core stays ignorant of permissions' storage.
"""

from __future__ import annotations

import keyword
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, distribution, entry_points
from pathlib import Path

from tecnorev.core.errors import BadArgument, TecnorevError, UnknownModule

_NAME = re.compile(r"^[a-z][a-z0-9_]{1,30}$")
SCAFFOLD_ENTRY_POINT_GROUP = "tecnorev.scaffold"
REPOSITORY = "https://github.com/tecnorev/tecnorev"


@dataclass(frozen=True)
class Scaffold:
    """The module being written, as a contributing module sees it."""

    name: str
    package_dir: str  # relative to the distribution's root: src/tecnorev/<name>
    first_revision: str  # the root of its branch, for a revision to follow
    depends_on: tuple[str, ...]
    files: dict[str, str]  # what is written so far (read-only by convention)

    @property
    def settings_class(self) -> str:
        """The name of its settings class, in ``<package>/config.py``."""
        return "".join(part.capitalize() for part in self.name.split("_")) + "Settings"

    @property
    def title(self) -> str:
        return self.name.replace("_", " ")


def _check_name(name: str, depends_on: list[str], installed: list[str]) -> None:
    if not _NAME.match(name) or keyword.iskeyword(name):
        raise BadArgument(
            f"{name!r} is not a usable module name: use 2-31 lowercase letters, digits or "
            "underscores, starting with a letter"
        )
    if name in installed or name in ("core", "api"):
        raise TecnorevError(f"a module named {name!r} already exists")
    missing = [d for d in depends_on if d not in installed]
    if missing:
        from tecnorev.migrate.errors import did_you_mean

        raise UnknownModule(
            f"{name!r} would depend on {', '.join(missing)}, which "
            f"{'is' if len(missing) == 1 else 'are'} not installed "
            f"(installed: {', '.join(installed) or 'none'})." + did_you_mean(missing[0], installed)
        )


_FIRST_REVISION = '''"""start the {name} branch

Revision ID: {revision}
Revises:
Create Date: {created}
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "{revision}"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("{name}",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
'''


def revision_id(name: str) -> str:
    """A new revision id in the engine's form: <module>_<12 hex>, at most 32 characters."""
    return f"{name[:19]}_{secrets.token_hex(6)}"


def created_now() -> str:
    return datetime.now(UTC).replace(tzinfo=None).isoformat(" ")


def _first_revision(name: str) -> tuple[str, str, str]:
    """The root of the module's branch: no operations, only the branch label."""
    revision = revision_id(name)
    text = _FIRST_REVISION.format(name=name, revision=revision, created=created_now())
    return revision, f"{revision}_start_the_{name}_branch.py", text


def _license_text() -> str | None:
    """The project's licence as tecnorev-core ships it, for the new distribution to carry too;
    ``None`` from an install that predates it (the module then only declares ``MIT``)."""
    try:
        return distribution("tecnorev-core").read_text("licenses/LICENSE")
    except PackageNotFoundError:
        return None


def _tuple(items: list[str]) -> str:
    quoted = [f'"{item}"' for item in items]
    return f"({quoted[0]},)" if len(quoted) == 1 else f"({', '.join(quoted)})"


def _files(name: str, depends_on: list[str], description: str) -> tuple[str, dict[str, str]]:
    title = name.replace("_", " ")
    deps = "".join(f'  "tecnorev-{d}>=0.1.0,<0.2",\n' for d in depends_on)
    package = f"src/tecnorev/{name}"
    settings_class = Scaffold(name, package, "", (), {}).settings_class
    revision, first_revision, first_revision_text = _first_revision(name)
    license_text = _license_text()
    license_files = 'license-files = ["LICENSE"]\n' if license_text else ""
    return revision, {
        # the same shape as the project's own packages (packages/catalog/pyproject.toml)
        "pyproject.toml": f"""[build-system]
requires = ["hatchling>=1.27"]
build-backend = "hatchling.build"

[project]
name = "tecnorev-{name}"
version = "0.1.0"
description = "Tecno Rev {title}: {description}"
readme = "README.md"
requires-python = ">=3.11"
license = "MIT"
{license_files}classifiers = [
  "Development Status :: 3 - Alpha",
  "Framework :: FastAPI",
  "Intended Audience :: Developers",
  "Operating System :: OS Independent",
  "Programming Language :: Python :: 3",
  "Programming Language :: Python :: 3 :: Only",
  "Programming Language :: Python :: 3.11",
  "Programming Language :: Python :: 3.12",
  "Topic :: Office/Business",
  "Typing :: Typed",
]
dependencies = [
  "tecnorev-core>=0.1.0,<0.2",
  # applies this package's migrations (tecnorev db)
  "tecnorev-migrate>=0.1.0,<0.2",
{deps}]

[project.urls]
Homepage = "{REPOSITORY}"
Documentation = "{REPOSITORY}/blob/main/packages/{name}/README.md"
Source = "{REPOSITORY}/tree/main/packages/{name}"
Issues = "{REPOSITORY}/issues"

[project.optional-dependencies]
test = ["pytest>=8.3", "pytest-timeout>=2.4", "httpx2>=2.16", "tecnorev-testing>=0.1.0,<0.2"]

[project.entry-points."tecnorev.modules"]
{name} = "tecnorev.{name}:module"

[tool.hatch.build.targets.wheel]
# PEP 420 namespace: ship src/tecnorev without an __init__.py of its own.
packages = ["src/tecnorev"]

[tool.hatch.build.targets.sdist]
include = ["src", "tests", "README.md"]
""",
        "README.md": f"# tecnorev-{name}\n\nTecno Rev {title}: {description}.\n",
        **({"LICENSE": license_text} if license_text else {}),
        # its type hints are part of its interface (PEP 561)
        f"{package}/py.typed": "",
        f"{package}/__init__.py": f'''"""{description.capitalize()}."""

from tecnorev.core import Module
from tecnorev.{name}.permissions import PERMISSIONS

module = Module(
    name="{name}",
    package="tecnorev.{name}",
    depends_on={_tuple(depends_on)},
    description="{description}",
    permissions=PERMISSIONS,
    settings="tecnorev.{name}.config:{settings_class}",
    commands=(("{name}", "tecnorev.{name}.cli:app"),),
)
''',
        f"{package}/permissions.py": f'''\
"""The permission codes {name}'s routes demand (``Permission(code, description, roles)``)."""

from tecnorev.core import Permission

PERMISSIONS: tuple[Permission, ...] = ()
''',
        f"{package}/config.py": f'''\
"""{title.capitalize()}'s settings: TECNOREV_{name.upper()}_ + the field's name, from the
environment or .env; listed by ``tecnorev settings``."""

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from tecnorev.core.settings import SettingsGroup, WholeNumber


class {settings_class}(SettingsGroup):
    model_config = SettingsConfigDict(env_prefix="TECNOREV_{name.upper()}_")
    owner: ClassVar[str] = "{name}"

    page_size: WholeNumber = Field(50, description="items per page of {title}'s listings")
''',
        f"{package}/cli.py": f'''\
"""``tecnorev {name} ...``: {title}'s commands."""

import typer

app = typer.Typer(help="{description.capitalize()}.", no_args_is_help=True)


@app.command("info")
def info() -> None:
    """Show what {name} is configured with."""
    from tecnorev.{name}.config import {settings_class}

    settings = {settings_class}()
    typer.echo(f"{name}: page size {{settings.page_size}}")


@app.callback()
def group() -> None:
    """{description.capitalize()}."""
''',
        f"{package}/models.py": f'''\
"""Tables of the {name} module: every table class of it lives here."""

from __future__ import annotations

from sqlmodel import Field  # noqa: F401  (used by the table classes you add)

from tecnorev.core.mixins import AuditMixin  # noqa: F401
''',
        f"{package}/schemas.py": f'''\
"""Request and response models of the {name} module (no tables)."""

from __future__ import annotations
''',
        f"{package}/service.py": f'''\
"""Business rules of {name}: functions taking a Session, never committing."""

from __future__ import annotations
''',
        f"{package}/routes.py": f'''\
"""HTTP routes of {name}: parse, authorize, call the service, return."""

from __future__ import annotations

from tecnorev.core.web import Router
from tecnorev.{name} import module

router = Router(prefix="/{name}", tags=["{name}"])


@router.get("/")
def describe() -> dict[str, object]:
    return {{"module": module.name, "depends_on": list(module.depends_on)}}
''',
        f"{package}/migrations/{first_revision}": first_revision_text,
        "tests/conftest.py": (
            "from tecnorev.testing.core import backend, database_url, postgres_url  # noqa: F401\n"
        ),
        f"tests/test_{name}.py": f'''from fastapi import FastAPI
from fastapi.testclient import TestClient

from tecnorev.core.registry import get_registry
from tecnorev.testing.core import downgrade, migrate, schema_objects
from tecnorev.{name}.routes import router


def test_routes_answer():
    app = FastAPI()
    app.include_router(router)
    response = TestClient(app).get("/{name}/")
    assert response.status_code == 200
    assert response.json()["module"] == "{name}"


def test_settings_are_read_with_their_prefix(monkeypatch):
    from tecnorev.{name}.config import {settings_class}

    assert {settings_class}().page_size == 50
    monkeypatch.setenv("TECNOREV_{name.upper()}_PAGE_SIZE", "20")
    assert {settings_class}().page_size == 20


def test_branch_applies_and_reverts(database_url):
    migrate(database_url, "{name}@head")
    assert get_registry().tables_of("{name}") <= schema_objects(database_url)["tables"]
    downgrade(database_url, "{name}@base")
    assert not get_registry().tables_of("{name}") & schema_objects(database_url)["tables"]
''',
    }


def _needed(depends_on: list[str], requires: dict[str, tuple[str, ...]]) -> list[str]:
    """``depends_on`` and what they depend on, each once."""
    seen: list[str] = []
    pending = list(depends_on)
    while pending:
        name = pending.pop(0)
        if name not in seen:
            seen.append(name)
            pending.extend(requires.get(name, ()))
    return seen


def _contributions(scaffold: Scaffold, modules: Iterable[str]) -> dict[str, str]:
    files: dict[str, str] = {}
    for name in modules:
        for ep in entry_points(group=SCAFFOLD_ENTRY_POINT_GROUP, name=name):
            files.update(ep.load()(scaffold))
    return files


def new_module(
    name: str,
    *,
    directory: Path,
    depends_on: list[str],
    description: str,
    installed: dict[str, tuple[str, ...]],
) -> Path:
    """Write the module's distribution into ``directory/name`` and return that folder.
    ``installed`` maps each installed module to what it depends on."""
    _check_name(name, depends_on, list(installed))
    root = directory / name
    if root.exists():
        raise TecnorevError(f"{root} already exists: choose another name or --path")
    first, files = _files(name, depends_on, description)
    scaffold = Scaffold(name, f"src/tecnorev/{name}", first, tuple(depends_on), dict(files))
    files.update(_contributions(scaffold, _needed(depends_on, installed)))
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    from tecnorev.migrate.formatting import format_paths

    format_paths([root])
    return root
