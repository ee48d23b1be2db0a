"""Generate a tree of installed-looking Tecno Rev modules for the migration benchmarks.

Each generated module is what pip leaves behind, minus the copying: a package folder with a
``Module`` descriptor and a ``migrations/`` branch, and a ``<dist>.dist-info`` folder whose
``entry_points.txt`` registers it in ``tecnorev.modules``.  Put ``<root>/site`` on PYTHONPATH
and the real ``tecnorev`` command discovers the modules through the same entry-point code path
as installed wheels, with no virtual environment to build.

Module ``k`` depends on up to two of the twenty modules before it (deterministic), its first
revision names their heads in ``depends_on``, and each revision creates one small table.

    python bench/generate_tree.py /tmp/tree --packages 200 --revisions 10
"""

from __future__ import annotations

import argparse
import hashlib
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

PREFIX = "benchtree"
MAX_DEPENDENCIES = 2
DEPENDENCY_WINDOW = 20

_REVISION = '''"""{module} step {step}

Revision ID: {revision}
Revises: {down}
"""

import sqlalchemy as sa

from alembic import op

revision = "{revision}"
down_revision = {down_repr}
branch_labels = {labels}
depends_on = {depends}


def upgrade() -> None:
    op.create_table(
        "{table}",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_{table}_name", "{table}", ["name"])


def downgrade() -> None:
    op.drop_index("ix_{table}_name", table_name="{table}")
    op.drop_table("{table}")
'''

_DESCRIPTOR = '''"""Generated benchmark module {module}."""

from tecnorev.core.module import Module

module = Module(name="{module}", package="{package}", depends_on={depends})
'''


@dataclass(frozen=True)
class Tree:
    root: Path
    packages: int
    revisions: int

    @property
    def site(self) -> Path:
        """The folder to put on PYTHONPATH."""
        return self.root / "site"

    @property
    def modules(self) -> list[str]:
        return [module_name(k) for k in range(self.packages)]

    @property
    def total_revisions(self) -> int:
        return self.packages * self.revisions


def module_name(k: int) -> str:
    return f"bt{k:03d}"


def revision_id(module: str, step: int) -> str:
    digest = hashlib.sha1(f"{module}/{step}".encode()).hexdigest()
    return f"{module}_{digest[:12]}"


def dependencies(k: int, rng: random.Random) -> list[int]:
    window = list(range(max(0, k - DEPENDENCY_WINDOW), k))
    return sorted(rng.sample(window, min(len(window), rng.randint(0, MAX_DEPENDENCIES))))


def _write_module(site: Path, k: int, deps: list[int], revisions: int) -> None:
    module = module_name(k)
    package = f"{PREFIX}_{module}"
    folder = site / package / "migrations"
    folder.mkdir(parents=True)
    dep_names = tuple(module_name(d) for d in deps)
    (site / package / "__init__.py").write_text(
        _DESCRIPTOR.format(module=module, package=package, depends=repr(dep_names))
    )
    # Commands that compare models with migrations import it; the tree's point is migrations.
    (site / package / "models.py").write_text('"""No table classes."""\n')
    for step in range(1, revisions + 1):
        revision = revision_id(module, step)
        down = revision_id(module, step - 1) if step > 1 else None
        depends = [revision_id(d, revisions) for d in dep_names] if step == 1 else []
        (folder / f"{revision}_step_{step:02d}.py").write_text(
            _REVISION.format(
                module=module,
                step=step,
                revision=revision,
                down=down or "",
                down_repr=repr(down),
                labels=repr((module,)) if step == 1 else None,
                depends=repr(tuple(depends)) if depends else None,
                table=f"{module}_t{step:02d}",
            )
        )
    dist_info = site / f"{PREFIX}_{module}-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {PREFIX}-{module}\nVersion: 1.0\n"
    )
    (dist_info / "entry_points.txt").write_text(
        f"[tecnorev.modules]\n{module} = {package}:module\n"
    )


def generate_tree(root: Path, packages: int, revisions: int, seed: int = 20261124) -> Tree:
    """(Re)create ``root`` holding ``packages`` modules of ``revisions`` revisions each."""
    shutil.rmtree(root, ignore_errors=True)
    site = root / "site"
    site.mkdir(parents=True)
    rng = random.Random(seed)
    for k in range(packages):
        _write_module(site, k, dependencies(k, rng), revisions)
    return Tree(root, packages, revisions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--packages", type=int, default=200)
    parser.add_argument("--revisions", type=int, default=10)
    args = parser.parse_args()
    tree = generate_tree(args.root, args.packages, args.revisions)
    print(f"{tree.packages} modules x {tree.revisions} revisions in {tree.site}")


if __name__ == "__main__":
    main()
