"""Changes to a module, made on a scratch copy of its source that shadows the installed one:
what ``check`` reports, what scoped autogenerate writes, merges inside a module, broken and
failing migrations, and SQLite table rebuilds."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from tecnorev.testing.core import recorded_revisions, schema_objects

from .migrator_processes import branch_head

REPO = Path(__file__).resolve().parents[1]


def catalog_head(scratch) -> str:
    """The head of the installed catalog branch."""
    return branch_head(scratch.migrations)


def test_check_names_a_model_change_and_autogenerate_writes_only_that_column(scratch, database_url):
    assert scratch.run("db", "upgrade", "heads", url=database_url).returncode == 0
    scratch.add_product_field("barcode: str | None = Field(default=None, max_length=32)")

    result = scratch.run("db", "check", url=database_url)
    assert result.returncode == 1
    assert "add column product.barcode" in result.stderr
    assert "Traceback" not in result.stderr

    before = set(scratch.migrations.glob("*.py"))
    result = scratch.run(
        "db",
        "revision",
        "--autogenerate",
        "--head",
        "catalog@head",
        "-m",
        "add barcode",
        url=database_url,
    )
    assert result.returncode == 0, result.stderr
    (written,) = set(scratch.migrations.glob("*.py")) - before
    text = written.read_text()
    assert written.name.startswith("catalog_")
    assert "sqlmodel" not in text
    assert re.search(
        r"""sa\.Column\(["']barcode["'], sa\.String\(length=32\), nullable=True\)""", text
    )
    upgrade_body = text.split("def upgrade() -> None:")[1].split("def downgrade")[0]
    ops = re.findall(r"(?:op|batch_op)\.(\w+)\(", upgrade_body)
    assert ops == ["batch_alter_table", "add_column"], upgrade_body
    assert "create_table" not in text and "drop_table" not in text

    assert scratch.run("db", "upgrade", "heads", url=database_url).returncode == 0
    result = scratch.run("db", "check", url=database_url)
    assert result.returncode == 0, result.stderr
    assert scratch.run("db", "downgrade", "catalog@-1", url=database_url).returncode == 0
    engine = sa.create_engine(database_url)
    columns = {c["name"] for c in sa.inspect(engine).get_columns("product")}
    engine.dispose()
    assert "barcode" not in columns


def test_autogenerate_ignores_tables_it_does_not_own(scratch, sqlite_at_heads):
    engine = sa.create_engine(sqlite_at_heads)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE legacy_report (id INTEGER PRIMARY KEY)")
    engine.dispose()
    result = scratch.run("db", "check", url=sqlite_at_heads)
    assert result.returncode == 0, result.stderr
    result = scratch.run(
        "db",
        "revision",
        "--autogenerate",
        "--head",
        "catalog@head",
        "-m",
        "nothing",
        url=sqlite_at_heads,
    )
    assert result.returncode == 0, result.stderr
    (written,) = [p for p in scratch.migrations.glob("*nothing.py")]
    assert "legacy_report" not in written.read_text()
    assert "drop_table" not in written.read_text()


def test_foreign_key_into_an_undeclared_module_is_refused(scratch, sqlite_at_heads):
    # catalog does not depend on sales: a product may not point at an order
    scratch.add_product_field(
        'last_order_id: int | None = Field(default=None, foreign_key="order.id")'
    )
    result = scratch.run(
        "db",
        "revision",
        "--autogenerate",
        "--head",
        "catalog@head",
        "-m",
        "bad",
        url=sqlite_at_heads,
    )
    assert result.returncode != 0
    assert "belongs to module 'sales'; 'catalog' does not declare 'sales'" in result.stderr
    assert not list(scratch.migrations.glob("*bad.py"))


def test_hand_written_revision_lands_in_the_module_folder(scratch, tmp_path):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    head = catalog_head(scratch)
    result = scratch.run("db", "revision", "--head", "catalog@head", "-m", "manual", url=url)
    assert result.returncode == 0, result.stderr
    (written,) = scratch.migrations.glob("*manual.py")
    assert re.search(
        r'^revision: str = ["\x27]catalog_[0-9a-f]{12}["\x27]', written.read_text(), re.M
    )
    assert f'down_revision: str | Sequence[str] | None = "{head}"' in (written.read_text())


def test_two_heads_inside_one_module_merge(scratch, sqlite_at_heads):
    head = catalog_head(scratch)
    a = scratch.add_revision("a", "def upgrade():\n    pass\n\ndef downgrade():\n    pass", head)
    b = scratch.add_revision("b", "def upgrade():\n    pass\n\ndef downgrade():\n    pass", head)
    result = scratch.run("db", "heads", url=sqlite_at_heads)
    assert a in result.stdout and b in result.stdout
    result = scratch.run("db", "merge", "-m", "merge catalog", a, b, url=sqlite_at_heads)
    assert result.returncode == 0, result.stderr
    (merged,) = scratch.migrations.glob("*merge_catalog.py")
    assert re.search(
        r'^revision: str = ["\x27]catalog_[0-9a-f]{12}["\x27]', merged.read_text(), re.M
    )
    result = scratch.run("db", "upgrade", "heads", url=sqlite_at_heads)
    assert result.returncode == 0, result.stderr


def test_broken_migration_gets_a_message_and_changes_nothing(scratch, database_url):
    assert scratch.run("db", "upgrade", "heads", url=database_url).returncode == 0
    head = catalog_head(scratch)
    scratch.add_revision(
        "broken",
        "def upgrade():\n    op.create_table('half_done', sa.Column('id', sa.Integer, "
        "primary_key=True))\n    op.add_column('product', sa.Column('x', undefined_type()))\n\n"
        "def downgrade():\n    pass",
        head,
    )
    before = recorded_revisions(database_url)
    result = scratch.run("db", "upgrade", "heads", url=database_url)
    assert result.returncode == 1
    assert "NameError: name 'undefined_type' is not defined" in result.stderr
    assert "catalog_broken.py, line" in result.stderr
    assert "Traceback" not in result.stderr
    # transactional DDL on both backends: the table created before the error is gone too
    assert "half_done" not in schema_objects(database_url)["tables"]
    assert recorded_revisions(database_url) == before


def test_sqlite_table_rebuild_keeps_child_rows(scratch, sqlite_at_heads):
    engine = sa.create_engine(sqlite_at_heads)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO product (id, sku, name, description, price, is_active, created_at, "
            "updated_at) VALUES (1, 'SKU-1', 'Lamp', '', 10.00, 1, '2026-01-01', '2026-01-01')"
        )
        for position in range(3):
            conn.exec_driver_sql(
                "INSERT INTO product_image (product_id, url, alt_text, position, created_at, "
                f"updated_at) VALUES (1, 'https://img/{position}', '', {position}, "
                "'2026-01-01', '2026-01-01')"
            )
    engine.dispose()
    scratch.add_revision(
        "rebuild",
        "def upgrade():\n    with op.batch_alter_table('product', recreate='always') as b:\n"
        "        b.alter_column('name', existing_type=sa.String(200), type_=sa.String(250))\n\n"
        "def downgrade():\n    with op.batch_alter_table('product', recreate='always') as b:\n"
        "        b.alter_column('name', existing_type=sa.String(250), type_=sa.String(200))",
        catalog_head(scratch),
    )
    result = scratch.run("db", "upgrade", "heads", url=sqlite_at_heads)
    assert result.returncode == 0, result.stderr
    engine = sa.create_engine(sqlite_at_heads)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM product_image").scalar() == 3
    engine.dispose()


def test_sqlite_rebuild_with_foreign_keys_on_would_lose_child_rows(tmp_path):
    """The trap the migration engine avoids, shown on a plain connection."""
    from alembic.migration import MigrationContext
    from alembic.operations import Operations

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'trap.db'}")

    @sa.event.listens_for(engine, "connect")
    def _fk_on(dbapi_connection, _record):
        dbapi_connection.execute("PRAGMA foreign_keys=ON")

    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE parent (id INTEGER PRIMARY KEY, name VARCHAR(10))")
        conn.exec_driver_sql(
            "CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER "
            "REFERENCES parent(id) ON DELETE CASCADE)"
        )
        conn.exec_driver_sql("INSERT INTO parent VALUES (1, 'p')")
        conn.exec_driver_sql("INSERT INTO child VALUES (1, 1)")
        with (
            Operations.context(MigrationContext.configure(conn)) as op,
            op.batch_alter_table("parent", recreate="always") as batch,
        ):
            batch.alter_column("name", type_=sa.String(20))
        assert conn.exec_driver_sql("SELECT count(*) FROM child").scalar() == 0
    engine.dispose()


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda root: (root / "__init__.py").write_text(
                (root / "__init__.py").read_text().replace('("auth",)', '("auth", "loyalty")')
            ),
            "module 'catalog' depends on 'loyalty', which is not installed: "
            "pip install tecnorev-loyalty",
        ),
        (
            lambda root: (root / "models.py").write_text(
                (root / "models.py").read_text() + "\nraise RuntimeError('half-edited models')\n"
            ),
            "models of module 'catalog' (tecnorev.catalog.models) failed to import: "
            "RuntimeError: half-edited models",
        ),
        (
            lambda root: (root / "__init__.py").write_text("import tecnorev.nowhere\n"),
            "module 'catalog' (from tecnorev-catalog) failed to import: ModuleNotFoundError",
        ),
    ],
    ids=["missing-dependency", "models-fail", "descriptor-fails"],
)
def test_a_broken_installation_is_explained(scratch, tmp_path, edit, expected):
    edit(scratch.root)
    result = scratch.run("db", "check", url=f"sqlite:///{tmp_path / 'x.db'}")
    assert result.returncode == 4, result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
