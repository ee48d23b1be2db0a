"""``tecnorev module new <name>``: a new domain module laid out like every other one.

The module gets a distribution of its own (pyproject with its entry point), the usual files
(models, schemas, service, routes, tests) and a migrations folder holding the root revision of
its branch, so the guide's "Common Workflow" becomes: add a model, ``pip install -e``,
``tecnorev db generate <name> -m ...``, ``tecnorev db upgrade heads``.
"""

from __future__ import annotations

import keyword
import re
import secrets
from datetime import UTC, datetime
from pathlib import Path

from tecnorev.core.errors import TecnorevError

_NAME = re.compile(r"^[a-z][a-z0-9_]{1,30}$")


def _check_name(name: str, depends_on: list[str], installed: list[str]) -> None:
    if not _NAME.match(name) or keyword.iskeyword(name):
        raise TecnorevError(
            f"{name!r} is not a usable module name: use 2-31 lowercase letters, digits or "
            "underscores, starting with a letter"
        )
    if name in installed or name in ("core", "api"):
        raise TecnorevError(f"a module named {name!r} already exists")
    missing = [d for d in depends_on if d not in installed]
    if missing:
        raise TecnorevError(
            f"{name!r} would depend on {', '.join(missing)}, which "
            f"{'is' if len(missing) == 1 else 'are'} not installed "
            f"(installed: {', '.join(installed) or 'none'})"
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


def _first_revision(name: str) -> tuple[str, str]:
    """The root of the module's branch: no operations, only the branch label."""
    # the engine's revision ids: <module>_<12 hex>, at most 32 characters
    revision = f"{name[:19]}_{secrets.token_hex(6)}"
    created = datetime.now(UTC).replace(tzinfo=None).isoformat(" ")
    text = _FIRST_REVISION.format(name=name, revision=revision, created=created)
    return f"{revision}_start_the_{name}_branch.py", text


def _files(name: str, depends_on: list[str], description: str) -> dict[str, str]:
    title = name.replace("_", " ")
    deps = "".join(f'  "tecnorev-{d}>=0.1.0,<0.2",\n' for d in depends_on)
    package = f"src/tecnorev/{name}"
    first_revision, first_revision_text = _first_revision(name)
    return {
        "pyproject.toml": f"""[build-system]
requires = ["hatchling>=1.27"]
build-backend = "hatchling.build"

[project]
name = "tecnorev-{name}"
version = "0.1.0"
description = "Tecno Rev {title}: {description}"
readme = "README.md"
requires-python = ">=3.11"
dependencies = [
  "tecnorev-core>=0.1.0,<0.2",
  "tecnorev-migrate>=0.1.0,<0.2",
{deps}  "fastapi>=0.118",
]

[project.optional-dependencies]
test = ["pytest>=8.3", "pytest-timeout>=2.4", "httpx>=0.28"]

[project.entry-points."tecnorev.modules"]
{name} = "tecnorev.{name}:module"

[tool.hatch.build.targets.wheel]
# PEP 420 namespace: ship src/tecnorev without an __init__.py of its own.
packages = ["src/tecnorev"]
""",
        "README.md": f"# tecnorev-{name}\n\nTecno Rev {title}: {description}.\n",
        f"{package}/__init__.py": f'''"""{description.capitalize()}."""

from tecnorev.core import Module

module = Module(
    name="{name}",
    package="tecnorev.{name}",
    depends_on={tuple(depends_on)!r},
    description="{description}",
)
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

from fastapi import APIRouter

from tecnorev.{name} import module

router = APIRouter(prefix="/{name}", tags=["{name}"])


@router.get("/")
def describe() -> dict[str, object]:
    return {{"module": module.name, "depends_on": list(module.depends_on)}}
''',
        f"{package}/migrations/{first_revision}": first_revision_text,
        "tests/conftest.py": (
            "from tecnorev.core.testing import backend, database_url, postgres_url  # noqa: F401\n"
        ),
        f"tests/test_{name}.py": f'''from fastapi import FastAPI
from fastapi.testclient import TestClient

from tecnorev.core.registry import get_registry
from tecnorev.core.testing import downgrade, migrate, schema_objects
from tecnorev.{name}.routes import router


def test_routes_answer():
    app = FastAPI()
    app.include_router(router)
    response = TestClient(app).get("/{name}/")
    assert response.status_code == 200
    assert response.json()["module"] == "{name}"


def test_branch_applies_and_reverts(database_url):
    migrate(database_url, "{name}@head")
    assert get_registry().tables_of("{name}") <= schema_objects(database_url)["tables"]
    downgrade(database_url, "{name}@base")
    assert not get_registry().tables_of("{name}") & schema_objects(database_url)["tables"]
''',
    }


def new_module(
    name: str, *, directory: Path, depends_on: list[str], description: str, installed: list[str]
) -> Path:
    """Write the module's distribution into ``directory/name`` and return that folder."""
    _check_name(name, depends_on, installed)
    root = directory / name
    if root.exists():
        raise TecnorevError(f"{root} already exists: choose another name or --path")
    files = _files(name, depends_on, description)
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root
