"""The guide's "Common Operations", each as a revision written by ``tecnorev db generate`` on a
populated table, applied, reverted one step and applied again, with every row surviving."""

from __future__ import annotations

from decimal import Decimal

import pytest
import sqlalchemy as sa

PRODUCTS = [
    (1, "LAMP-1", "Desk lamp", Decimal("39.90")),
    (2, "MUG-1", "Mug", Decimal("7.50")),
    (3, "RUG-1", "Rug", Decimal("120.00")),
]


TYPES = {"weight": sa.Numeric(10, 3)}


def populate(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for pid, sku, name, price in PRODUCTS:
            conn.execute(
                sa.text(
                    "INSERT INTO product (id, sku, name, description, price, is_active, "
                    "created_at, updated_at) VALUES (:id, :sku, :name, '', :price, true, "
                    "'2026-01-01T00:00:00+00:00', '2026-01-01T00:00:00+00:00')"
                ).bindparams(sa.bindparam("price", type_=sa.Numeric(12, 2))),
                {"id": pid, "sku": sku, "name": name, "price": price},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO product_image (product_id, url, alt_text, position, "
                    "created_at, updated_at) VALUES (:id, 'https://img', '', 0, "
                    "'2026-01-01T00:00:00+00:00', '2026-01-01T00:00:00+00:00')"
                ),
                {"id": pid},
            )
    engine.dispose()


def rows(url: str, *columns: str) -> list[tuple]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        cols = ", ".join(("id", "sku", "name", "price", *columns))
        query = sa.text(f"SELECT {cols} FROM product ORDER BY id").columns(
            price=sa.Numeric(12, 2), **{c: TYPES[c] for c in columns if c in TYPES}
        )
        found = [tuple(r) for r in conn.execute(query)]
        images = conn.execute(sa.text("SELECT count(*) FROM product_image")).scalar()
    engine.dispose()
    assert images == len(PRODUCTS), "child rows were lost"
    return found


def generate(scratch, url: str, message: str) -> str:
    result = scratch.run("db", "generate", "catalog", "-m", message, url=url)
    assert result.returncode == 0, result.stdout + result.stderr
    return next(scratch.migrations.glob(f"*{message.replace(' ', '_')}.py")).read_text()


def round_trip(scratch, url: str, *, phases: int = 1) -> None:
    """Apply, revert and apply again; ``phases=2``: an expand and a contract revision."""
    up = ("upgrade", "heads", "--contract") if phases == 2 else ("upgrade", "heads")
    for args in (up, ("downgrade", f"catalog@-{phases}"), up):
        result = scratch.run("db", *args, url=url)
        assert result.returncode == 0, result.stderr
    assert scratch.run("db", "check", url=url).returncode == 0


@pytest.fixture
def populated(scratch, database_url):
    assert scratch.run("db", "upgrade", "heads", url=database_url).returncode == 0
    populate(database_url)
    return database_url


def test_adding_a_column(scratch, populated):
    before = rows(populated)
    scratch.add_product_field("barcode: str | None = Field(default=None, max_length=20)")
    text = generate(scratch, populated, "add barcode")
    assert "add_column" in text
    round_trip(scratch, populated)
    assert [r[:4] for r in rows(populated, "barcode")] == before


def test_float_to_numeric_keeps_values(scratch, populated):
    scratch.add_product_field("weight: float | None = Field(default=None)")
    generate(scratch, populated, "add weight")
    assert scratch.run("db", "upgrade", "heads", url=populated).returncode == 0
    engine = sa.create_engine(populated)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE product SET weight = id * 1.25"))
    engine.dispose()

    models = scratch.root / "models.py"
    models.write_text(
        models.read_text().replace(
            "weight: float | None = Field(default=None)",
            "weight: Decimal | None = Field(default=None, sa_type=sa.Numeric(10, 3))",
        )
    )
    # a type change PostgreSQL rewrites the table for: an expand and a contract revision
    text = generate(scratch, populated, "weight as numeric")
    assert 'zero.change_column_type("product", "weight", "NUMERIC(10, 3)")' in text
    round_trip(scratch, populated, phases=2)
    weights = [r[4] for r in rows(populated, "weight")]
    assert weights == [Decimal("1.250"), Decimal("2.500"), Decimal("3.750")]


def test_adding_an_index(scratch, populated):
    before = rows(populated)
    models = scratch.root / "models.py"
    models.write_text(
        models.read_text().replace(
            "name: str = Field(max_length=200)", "name: str = Field(max_length=200, index=True)"
        )
    )
    text = generate(scratch, populated, "index product name")
    assert "create_index" in text and "ix_product_name" in text
    round_trip(scratch, populated)
    engine = sa.create_engine(populated)
    assert "ix_product_name" in {ix["name"] for ix in sa.inspect(engine).get_indexes("product")}
    engine.dispose()
    assert rows(populated) == before


def test_adding_a_postgres_enum_column(scratch, postgres_url):
    assert scratch.run("db", "upgrade", "heads", url=postgres_url).returncode == 0
    populate(postgres_url)
    models = scratch.root / "models.py"
    text = models.read_text()
    text = text.replace(
        "class Category(",
        "class ProductCondition(enum.StrEnum):\n    NEW = 'NEW'\n    USED = 'USED'\n\n\n"
        "class Category(",
    )
    text = text.replace(
        "from decimal import Decimal\n", "import enum\nfrom decimal import Decimal\n"
    )
    models.write_text(text)
    scratch.add_product_field(
        "condition: ProductCondition = Field(default=ProductCondition.NEW, "
        "sa_type=sa.Enum(ProductCondition, name='product_condition'), "
        "sa_column_kwargs={'server_default': 'NEW'})"
    )
    generate(scratch, postgres_url, "add condition")
    round_trip(scratch, postgres_url)
    assert [r[4] for r in rows(postgres_url, "condition")] == ["NEW", "NEW", "NEW"]
    result = scratch.run("db", "downgrade", "catalog@-1", url=postgres_url)
    assert result.returncode == 0, result.stderr
    engine = sa.create_engine(postgres_url)
    with engine.connect() as conn:
        types = set(
            conn.execute(sa.text("SELECT typname FROM pg_type WHERE typtype = 'e'")).scalars()
        )
    engine.dispose()
    assert "product_condition" not in types
