"""A project that is not Tecno Rev: two tiny modules, ``items`` and ``orders``, declared under
the entry-point group ``shop.modules``, models on a plain SQLAlchemy declarative base.

``write_project`` lays them out as an installed site (packages and ``.dist-info`` folders, as
pip leaves them) plus the project's ``alembic.ini``; ``run`` calls the engine's console script
there in a child process, with an import hook that fails the run if the engine, or anything
it loads, imports Tecno Rev's core, a domain package, FastAPI or SQLModel.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from textwrap import dedent

FORBIDDEN = (
    "tecnorev.core",
    "tecnorev.auth",
    "tecnorev.catalog",
    "tecnorev.sales",
    "fastapi",
    "sqlmodel",
)

ITEMS_REVISION = "items_0a1b2c3d4e5f"
ORDERS_REVISION = "orders_6a7b8c9d0e1f"

_FILES = {
    "shop_items/__init__.py": """
        from dataclasses import dataclass


        @dataclass(frozen=True)
        class Descriptor:  # the project's own descriptor: the engine only reads its attributes
            name: str
            package: str
            depends_on: tuple[str, ...] = ()


        module = Descriptor(name="items", package="shop_items")
        """,
    "shop_items/models.py": """
        import sqlalchemy as sa
        from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


        class Base(DeclarativeBase):
            pass


        class Item(Base):
            __tablename__ = "item"

            id: Mapped[int] = mapped_column(primary_key=True)
            name: Mapped[str] = mapped_column(sa.String(80))
        """,
    f"shop_items/migrations/{ITEMS_REVISION}_create_item.py": f'''
        """create item

        Revision ID: {ITEMS_REVISION}
        Revises:
        Create Date: 2026-12-05 09:00:00
        """

        import sqlalchemy as sa
        from alembic import op

        revision = "{ITEMS_REVISION}"
        down_revision = None
        branch_labels = ("items",)
        depends_on = None


        def upgrade() -> None:
            op.create_table(
                "item",
                sa.Column("id", sa.Integer(), nullable=False),
                sa.Column("name", sa.String(length=80), nullable=False),
                sa.PrimaryKeyConstraint("id", name=op.f("pk_item")),
            )


        def downgrade() -> None:
            op.drop_table("item")
        ''',
    "shop_orders/__init__.py": """
        from shop_items import Descriptor

        module = Descriptor(name="orders", package="shop_orders", depends_on=("items",))
        """,
    "shop_orders/models.py": """
        import sqlalchemy as sa
        from sqlalchemy.orm import Mapped, mapped_column

        from shop_items.models import Base


        class OrderLine(Base):
            __tablename__ = "order_line"

            id: Mapped[int] = mapped_column(primary_key=True)
            item_id: Mapped[int] = mapped_column(sa.ForeignKey("item.id", name="fk_order_line_item_id_item"))
            quantity: Mapped[int]
        """,
    f"shop_orders/migrations/{ORDERS_REVISION}_create_order_line.py": f'''
        """create order_line

        Revision ID: {ORDERS_REVISION}
        Revises:
        Create Date: 2026-12-05 09:01:00
        """

        import sqlalchemy as sa
        from alembic import op

        revision = "{ORDERS_REVISION}"
        down_revision = None
        branch_labels = ("orders",)
        depends_on = "{ITEMS_REVISION}"


        def upgrade() -> None:
            op.create_table(
                "order_line",
                sa.Column("id", sa.Integer(), nullable=False),
                sa.Column("item_id", sa.Integer(), nullable=False),
                sa.Column("quantity", sa.Integer(), nullable=False),
                sa.ForeignKeyConstraint(["item_id"], ["item.id"], name="fk_order_line_item_id_item"),
                sa.PrimaryKeyConstraint("id", name=op.f("pk_order_line")),
            )


        def downgrade() -> None:
            op.drop_table("order_line")
        ''',
    "sitecustomize.py": f"""
        import sys

        FORBIDDEN = {FORBIDDEN!r}


        class _Refuse:
            def find_spec(self, name, path=None, target=None):
                if any(name == f or name.startswith(f + ".") for f in FORBIDDEN):
                    raise ImportError(f"the engine imported {{name}}, which it must not need")
                return None


        sys.meta_path.insert(0, _Refuse())
        """,
}


def _dist_info(site: Path, dist: str, package: str, module: str, requires: str = "") -> None:
    info = site / f"{dist}-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1.0\n{requires}", encoding="utf-8"
    )
    (info / "entry_points.txt").write_text(
        f"[shop.modules]\n{module} = {package}:module\n", encoding="utf-8"
    )
    (info / "top_level.txt").write_text(f"{package}\n", encoding="utf-8")


def write_project(root: Path) -> Path:
    """The installed site under ``root/site`` and the project's ``root/alembic.ini``."""
    site = root / "site"
    for name, text in _FILES.items():
        path = site / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dedent(text).lstrip(), encoding="utf-8")
    _dist_info(site, "shop_items", "shop_items", "items")
    _dist_info(site, "shop_orders", "shop_orders", "orders", "Requires-Dist: shop-items>=0.1.0\n")
    (root / "alembic.ini").write_text(
        dedent(
            """
            [alembic]
            script_location = tecnorev.migrate:alembic_env
            revision_environment = true

            [tecnorev.migrate]
            entry_point_group = shop.modules
            settings_prefix = SHOP_
            command = shop db
            install_hint = pip install shop-{module}
            default_url =  # none: DATABASE_URL must be set
            """
        ).lstrip(),
        encoding="utf-8",
    )
    return root


def run(
    root: Path, *args: str, url: str | None, **settings: str
) -> subprocess.CompletedProcess[str]:
    """``tecnorev-migrate *args`` in ``root``, seeing the shop's site and nothing of Tecno Rev;
    ``settings`` are added to the environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TECNOREV_", "ALEMBIC"))}
    env["PYTHONPATH"] = str(root / "site")
    env.pop("DATABASE_URL", None)
    if url is not None:
        env["DATABASE_URL"] = url
    env.update(settings)
    return subprocess.run(
        [sys.executable, "-c", "from tecnorev.migrate.cli import entry; entry()", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
