"""``tecnorev db generate``: a module's revision from its models, whatever state the
developer's own database is in."""

from __future__ import annotations

import re
import shutil

import pytest

from tecnorev.testing.core import recorded_revisions, run_tecnorev, schema_objects

from .conftest import REPO


def new_files(scratch, before: set) -> list:
    return sorted(set(scratch.migrations.glob("*.py")) - before)


def test_writes_a_formatted_revision_into_the_module_folder_without_touching_the_database(
    scratch, database_url
):
    scratch.add_product_field("barcode: str | None = Field(default=None, max_length=32)")
    before = set(scratch.migrations.glob("*.py"))
    result = scratch.run("db", "generate", "catalog", "-m", "add barcode", url=database_url)
    assert result.returncode == 0, result.stderr
    (written,) = new_files(scratch, before)
    assert f"wrote {written}" in result.stdout
    assert "lint: nothing that locks or rewrites a big table or loses data" in result.stdout
    text = written.read_text()
    assert re.search(r'^revision: str = "catalog_[0-9a-f]{12}"', text, re.M)
    assert 'sa.Column("barcode", sa.String(length=32), nullable=True)' in text
    assert "create_table" not in text
    # the developer's database was never migrated: the comparison used a scratch one
    assert schema_objects(database_url)["tables"] == set()
    assert recorded_revisions(database_url) == set()


def test_no_model_change_writes_nothing(scratch, tmp_path):
    before = set(scratch.migrations.glob("*.py"))
    result = scratch.run(
        "db", "generate", "catalog", "-m", "nothing", url=f"sqlite:///{tmp_path}/d.db"
    )
    assert result.returncode == 1
    assert "no change in the models of 'catalog': nothing written" in result.stdout
    assert "--empty" in result.stdout
    assert new_files(scratch, before) == []


def test_empty_revision_extends_the_module_head(scratch, tmp_path):
    before = set(scratch.migrations.glob("*.py"))
    result = scratch.run(
        "db", "generate", "catalog", "-m", "backfill", "--empty", url=f"sqlite:///{tmp_path}/d.db"
    )
    assert result.returncode == 0, result.stderr
    (written,) = new_files(scratch, before)
    assert 'down_revision: str | Sequence[str] | None = "catalog_' in written.read_text()


def test_unknown_module_lists_the_installed_ones(tmp_path):
    result = run_tecnorev("db", "generate", "loyalty", "-m", "x", url=f"sqlite:///{tmp_path}/d.db")
    assert result.returncode == 2
    assert "no installed module named 'loyalty' (installed: auth, core, catalog" in result.stderr


def test_foreign_key_into_an_undeclared_module_is_refused(scratch, tmp_path):
    scratch.add_product_field(
        'last_order_id: int | None = Field(default=None, foreign_key="order.id")'
    )
    before = set(scratch.migrations.glob("*.py"))
    result = scratch.run("db", "generate", "catalog", "-m", "bad", url=f"sqlite:///{tmp_path}/d.db")
    assert result.returncode != 0
    assert "belongs to module 'sales'; 'catalog' does not declare 'sales'" in result.stderr
    assert new_files(scratch, before) == []


def test_a_reference_to_a_newer_table_of_a_dependency_adds_depends_on(tmp_path):
    """auth gains a table in a new revision; catalog references it: catalog's revision must
    depend on auth's new head, or it could run before the table exists."""
    src = tmp_path / "src"
    for name in ("auth", "catalog"):
        shutil.copytree(
            REPO / f"packages/{name}/src/tecnorev/{name}",
            src / f"tecnorev/{name}",
            ignore=shutil.ignore_patterns("__pycache__"),
        )
    env = {"PYTHONPATH": str(src)}
    url = f"sqlite:///{tmp_path / 'd.db'}"
    auth_models = src / "tecnorev/auth/models.py"
    auth_models.write_text(
        auth_models.read_text() + "\n\nclass Supplier(SQLModel, table=True):\n"
        "    id: int | None = Field(default=None, primary_key=True)\n"
        "    name: str = Field(max_length=100)\n"
    )
    result = run_tecnorev("db", "generate", "auth", "-m", "add supplier", url=url, env=env)
    assert result.returncode == 0, result.stderr
    (auth_rev,) = (src / "tecnorev/auth/migrations").glob("*add_supplier.py")
    auth_head = re.search(r'^revision: str = "(auth_\w+)"', auth_rev.read_text(), re.M).group(1)

    catalog_models = src / "tecnorev/catalog/models.py"
    catalog_models.write_text(
        catalog_models.read_text().replace(
            "    category_id: int | None",
            '    supplier_id: int | None = Field(default=None, foreign_key="supplier.id")\n'
            "    category_id: int | None",
        )
    )
    result = run_tecnorev("db", "generate", "catalog", "-m", "product supplier", url=url, env=env)
    assert result.returncode == 0, result.stderr
    (catalog_rev,) = (src / "tecnorev/catalog/migrations").glob("*product_supplier.py")
    assert f'depends_on: str | Sequence[str] | None = "{auth_head}"' in catalog_rev.read_text()
    result = run_tecnorev("db", "upgrade", "catalog@head", url=url, env=env)
    assert result.returncode == 0, result.stderr
    assert "supplier" in schema_objects(url)["tables"]


@pytest.mark.postgres
def test_on_postgres_the_scratch_database_is_created_and_dropped(scratch, postgres_url):
    import sqlalchemy as sa

    from tecnorev.testing.core import admin_url

    scratch.add_product_field("barcode: str | None = Field(default=None, max_length=32)")
    result = scratch.run("db", "generate", "catalog", "-m", "add barcode", url=postgres_url)
    assert result.returncode == 0, result.stderr
    engine = sa.create_engine(admin_url())
    with engine.connect() as conn:
        leftovers = (
            conn.execute(
                sa.text("SELECT datname FROM pg_database WHERE datname LIKE 'tecnorev_scratch_%'")
            )
            .scalars()
            .all()
        )
    engine.dispose()
    assert leftovers == []


def _edit_models(scratch, *changes: tuple[str, str]) -> None:
    models = scratch.root / "models.py"
    text = models.read_text()
    for old, new in changes:
        assert old in text, old
        text = text.replace(old, new, 1)
    models.write_text(text)


def test_a_dropped_column_is_written_as_expand_and_contract(scratch, tmp_path):
    _edit_models(scratch, ('    description: str = Field(default="", sa_type=sa.Text)\n', ""))
    before = set(scratch.migrations.glob("*.py"))
    result = scratch.run(
        "db", "generate", "catalog", "-m", "drop description", url=f"sqlite:///{tmp_path / 'd.db'}"
    )
    assert result.returncode == 0, result.stderr
    expand, contract = sorted(new_files(scratch, before), key=lambda p: "phase =" in p.read_text())
    assert 'zero.drop_column("product", "description")' in expand.read_text()
    assert "batch_op" not in expand.read_text()  # zero's calls make their own batches on SQLite
    assert 'phase = "contract"' in contract.read_text()
    assert 'zero.complete_drop_column("product", "description")' in contract.read_text()
    assert 'zero.uncomplete_drop_column("product", "description", "TEXT")' in contract.read_text()
    assert f"wrote {contract} (contract)" in result.stdout
    assert "product.description dropped" in result.stdout
    assert "lint: nothing that locks" in result.stdout


def test_breaking_changes_become_an_expand_and_a_contract_that_apply_in_turn(scratch, postgres_url):
    url = postgres_url
    scratch.add_product_field("unit: str | None = Field(default=None, max_length=16)")
    assert scratch.run("db", "generate", "catalog", "-m", "unit", url=url).returncode == 0
    assert scratch.run("db", "upgrade", "heads", url=url).returncode == 0
    _edit_models(
        scratch,
        ("unit: str | None = Field(default=None, max_length=16)",
         'unit: str = Field(default="each", max_length=16)'),
        ("    description: str = Field(", "    details: str = Field("),
        ("url: str = Field(max_length=2048)", "url: str = Field(max_length=1024)"),
    )  # fmt: skip
    before = set(scratch.migrations.glob("*.py"))
    result = scratch.run("db", "generate", "catalog", "-m", "next shape", url=url)
    assert result.returncode == 0, result.stdout + result.stderr
    expand, contract = sorted(new_files(scratch, before), key=lambda p: "phase =" in p.read_text())
    for said in (
        "product.description renamed to details",
        "product.unit becomes NOT NULL (NULLs filled with 'each')",
        "product_image.url changes type (VARCHAR(2048) to VARCHAR(1024))",
    ):
        assert said in result.stdout, result.stdout
    assert "lint: nothing that locks" in result.stdout, result.stdout
    text = expand.read_text()
    assert 'zero.rename_column("product", "description", "details")' in text
    assert 'zero.set_not_null("product", "unit", fill="\'each\'")' in text
    assert 'zero.change_column_type("product_image", "url", "VARCHAR(1024)")' in text
    assert "zero.undo_rename_column" in text and "zero.undo_set_not_null" in text
    assert expand.stem.split("_next")[0] in contract.read_text()  # the contract follows it

    assert scratch.run("db", "upgrade", "heads", url=url).returncode == 0  # expand only
    assert {"description", "details"} <= set(_columns(url, "product"))
    contracted = scratch.run("db", "contract", url=url)
    assert contracted.returncode == 0, contracted.stdout + contracted.stderr
    product = _columns(url, "product")
    assert "description" not in product and not product["details"] and not product["unit"]
    down = scratch.run("db", "downgrade", "catalog@-2", url=url)
    assert down.returncode == 0, down.stdout + down.stderr
    assert _columns(url, "product")["unit"] and "details" not in _columns(url, "product")


def _columns(url: str, table: str) -> dict[str, bool]:
    """Column names and whether each is nullable."""
    import sqlalchemy as sa

    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            return {c["name"]: c["nullable"] for c in sa.inspect(connection).get_columns(table)}
    finally:
        engine.dispose()


def test_not_null_without_a_default_to_fill_with_is_refused_with_the_recipe(scratch, tmp_path):
    _edit_models(
        scratch,
        ("parent_id: int | None = Field(\n        default=None, foreign_key=",
         "parent_id: int = Field(\n        foreign_key="),
    )  # fmt: skip
    before = set(scratch.migrations.glob("*.py"))
    result = scratch.run(
        "db", "generate", "catalog", "-m", "categorised", url=f"sqlite:///{tmp_path / 'd.db'}"
    )
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert "category.parent_id becomes NOT NULL" in out and "Traceback" not in out
    assert 'zero.set_not_null("category", "parent_id", fill="<SQL value>")' in out
    assert new_files(scratch, before) == []


def test_one_phase_writes_the_plain_operation_and_lint_flags_it(scratch, tmp_path):
    _edit_models(scratch, ('    description: str = Field(default="", sa_type=sa.Text)\n', ""))
    before = set(scratch.migrations.glob("*.py"))
    result = scratch.run("db", "generate", "catalog", "-m", "drop description", "--one-phase",
                         url=f"sqlite:///{tmp_path / 'd.db'}")  # fmt: skip
    assert result.returncode == 0, result.stderr
    (written,) = new_files(scratch, before)
    assert 'drop_column("description")' in written.read_text()  # in a batch on SQLite
    assert "lint:" in result.stdout and "TR105" in result.stdout
