"""``upgrade --backup`` and ``tecnorev db restore``: a populated database backed up before a
migration, then restored over the migrated one (and into an empty one), comes back row for row,
with its ``alembic_version`` and ledger, and without what the migration added."""

from __future__ import annotations

import re
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa
from sqlmodel import Session

from tecnorev.testing.core import fresh_database, migrate, recorded_revisions, run_tecnorev

from .migrator_processes import ScratchCatalog


def populate(url: str) -> None:
    """A few rows in tables of three modules: text, numeric, booleans, timestamps, an enum,
    foreign keys."""
    from tecnorev.auth.models import User
    from tecnorev.catalog.models import Category, Product, ProductImage
    from tecnorev.inventory.models import Branch, InventoryMovement, MovementReason, StockEntry

    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with Session(engine) as session:
        user = User(email="ana@example.com", full_name="Ana", hashed_password="x")
        lamps = Category(name="Lamps", slug="lamps")
        session.add_all([user, lamps])
        session.flush()
        products = [
            Product(sku=f"L-{n}", name=f"Lamp {n}", description="warm\nlight ☀", price=Decimal(
                f"{n}9.90"), category_id=lamps.id, created_by_id=user.id)
            for n in range(1, 4)
        ]  # fmt: skip
        branch = Branch(code="CEN", name="Centre")
        session.add_all([*products, branch])
        session.flush()
        for position, product in enumerate(products):
            session.add(ProductImage(product_id=product.id, url=f"https://img/{position}"))
            session.add(StockEntry(branch_id=branch.id, product_id=product.id, quantity=5))
            session.add(
                InventoryMovement(
                    branch_id=branch.id,
                    product_id=product.id,
                    quantity_delta=5,
                    reason=MovementReason.RECEIPT,
                )
            )
        session.commit()
    engine.dispose()


def snapshot(url: str) -> dict[str, list[tuple]]:
    """Every table's rows, in a stable order."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            tables = sa.inspect(connection).get_table_names()
            return {
                table: sorted(
                    (tuple(row) for row in connection.execute(sa.text(f'SELECT * FROM "{table}"'))),
                    key=repr,
                )
                for table in sorted(tables)
            }
    finally:
        engine.dispose()


def columns(url: str, table: str) -> set[str]:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        return {c["name"] for c in sa.inspect(engine).get_columns(table)}
    finally:
        engine.dispose()


def backup_file(output: str) -> Path:
    match = re.search(r"^backed up the database to (.+)$", output, re.M)
    assert match, output
    return Path(match[1])


def test_backup_before_a_migration_then_restore_round_trips(database_url, backend, tmp_path):
    migrate(database_url, "heads")
    populate(database_url)
    before = snapshot(database_url)
    assert sum(len(rows) for rows in before.values()) > 20

    scratch = ScratchCatalog(tmp_path)
    scratch.add_revision(
        "extra",
        "op.add_column('product', sa.Column('note', sa.String(20)))\n"
        "op.create_table('extra_thing', sa.Column('id', sa.Integer, primary_key=True),\n"
        "    sa.Column('product_id', sa.Integer, sa.ForeignKey('product.id')),\n"
        "    sa.Column('kind', sa.Enum('a', 'b', name='extra_kind')))",
    )
    backups = tmp_path / "backups"
    result = run_tecnorev(
        "db", "upgrade", "heads", "--backup", "--backup-dir", str(backups),
        url=database_url, env=scratch.env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    file = backup_file(result.stdout)
    assert file.parent == backups and file.is_file()
    stem = "test" if backend == "sqlite" else sa.make_url(database_url).database
    suffix = ".db" if backend == "sqlite" else ".dump"
    assert re.fullmatch(rf"{stem}-\d{{8}}T\d{{6}}Z{suffix}", file.name), file.name
    assert not list(backups.glob("*.partial"))
    assert "note" in columns(database_url, "product")

    refused = run_tecnorev("db", "restore", str(file), url=database_url)
    assert refused.returncode == 1
    assert re.search(
        r"error: refusing to restore into .+: it is not empty \(\d+ objects: .+\), and restoring "
        r"replaces everything in it\. Restore into an empty database, or run again with --force "
        r"to replace its contents with the backup\.",
        refused.stderr,
    ), refused.stderr
    assert "note" in columns(database_url, "product")

    forced = run_tecnorev("db", "restore", str(file), "--force", url=database_url)
    assert forced.returncode == 0, forced.stderr
    assert f"restored {file} into " in forced.stdout
    assert snapshot(database_url) == before
    assert "note" not in columns(database_url, "product")
    engine = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
    with engine.connect() as connection:
        assert not sa.inspect(connection).has_table("extra_thing")
        if backend == "postgresql":
            assert not connection.exec_driver_sql(
                "SELECT 1 FROM pg_type WHERE typname = 'extra_kind'"
            ).first()
    engine.dispose()

    # and into an empty database, without --force
    (tmp_path / "empty").mkdir()
    with fresh_database(backend, tmp_path / "empty") as empty:
        result = run_tecnorev("db", "restore", str(file), url=empty)
        assert result.returncode == 0, result.stderr
        assert snapshot(empty) == before
        assert recorded_revisions(empty) == recorded_revisions(database_url)


def test_sqlite_backup_holds_what_is_still_in_the_write_ahead_log(tmp_path):
    """A file copy of a database in WAL mode misses the committed rows still in the -wal file;
    the backup API does not."""
    url = f"sqlite:///{tmp_path / 'wal.db'}"
    migrate(url, "heads")
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as keeper:  # an open connection keeps the WAL from being checkpointed
        keeper.exec_driver_sql("PRAGMA journal_mode=WAL")
        keeper.exec_driver_sql("PRAGMA wal_autocheckpoint=0")
        keeper.exec_driver_sql("INSERT INTO branch (code, name, address, is_active, created_at, "
                               "updated_at) VALUES ('WAL', 'In the log', '', 1, '2026-01-01', "
                               "'2026-01-01')")  # fmt: skip
        keeper.commit()
        shutil.copy(tmp_path / "wal.db", tmp_path / "copied.db")
        result = run_tecnorev(
            "db", "upgrade", "heads", "--backup", "--backup-dir", str(tmp_path), url=url
        )
        assert result.returncode == 0, result.stderr
    engine.dispose()
    query = "SELECT count(*) FROM branch WHERE code = 'WAL'"
    for name, expected in (("copied.db", 0), (backup_file(result.stdout).name, 1)):
        copy = sa.create_engine(f"sqlite:///{tmp_path / name}", poolclass=sa.pool.NullPool)
        with copy.connect() as connection:
            assert connection.exec_driver_sql(query).scalar() == expected, name
        copy.dispose()


def test_restore_refuses_what_is_not_a_backup_of_this_database(tmp_path, postgres_url):
    sqlite_backup = tmp_path / "app.db"
    migrate(f"sqlite:///{sqlite_backup}", "auth@head")
    result = run_tecnorev("db", "restore", str(sqlite_backup), url=postgres_url)
    assert result.returncode == 1
    assert (
        f"error: {sqlite_backup} is a SQLite backup but DATABASE_URL points to PostgreSQL "
        in result.stderr
    )
    assert "nothing was restored" in result.stderr

    text = tmp_path / "notes.txt"
    text.write_text("hello")
    result = run_tecnorev("db", "restore", str(text), url=postgres_url)
    assert (
        f"error: {text} is neither a PostgreSQL custom-format dump (pg_dump -Fc) nor a SQLite "
        "database" in result.stderr
    )
    result = run_tecnorev("db", "restore", str(tmp_path / "gone.dump"), url=postgres_url)
    assert f"error: there is no backup file at {tmp_path / 'gone.dump'}" in result.stderr


def test_missing_postgresql_client_tools_are_named(tmp_path, postgres_url):
    no_tools = {"PATH": str(tmp_path)}  # the child's python is started by absolute path
    # in tmp_path: had the backup been written, it would have gone to ./backups
    result = run_tecnorev(
        "db", "upgrade", "heads", "--backup", url=postgres_url, env=no_tools, cwd=tmp_path
    )
    assert result.returncode == 1
    assert (
        "error: pg_dump was not found on PATH, so the database cannot be backed up and "
        "nothing was changed. Install the PostgreSQL client tools of the server's major "
        "version" in result.stderr
    )
    assert recorded_revisions(postgres_url) == set()

    dump = tmp_path / "x.dump"
    dump.write_bytes(b"PGDMP" + b"\0" * 32)
    result = run_tecnorev("db", "restore", str(dump), url=postgres_url, env=no_tools)
    assert result.returncode == 1
    assert "error: pg_restore was not found on PATH, so the database cannot be restored" in (
        result.stderr
    )


def test_a_damaged_dump_restores_nothing(tmp_path, postgres_url):
    migrate(postgres_url, "heads")
    populate(postgres_url)
    before = snapshot(postgres_url)

    garbage = tmp_path / "garbage.dump"
    garbage.write_bytes(b"PGDMP" + b"\x01" * 64)  # a header pg_restore streams as "empty"
    result = run_tecnorev("db", "restore", str(garbage), "--force", url=postgres_url)
    assert result.returncode == 1
    assert f"error: pg_restore could not read {garbage}, so nothing was restored: " in (
        result.stderr
    )

    # A real backup cut short: its table of contents reads fine, its data ends early.  psql has
    # run the drops and part of the script by then; it is killed before it can commit.
    result = run_tecnorev(
        "db", "upgrade", "heads", "--backup", "--backup-dir", str(tmp_path), url=postgres_url
    )
    whole = backup_file(result.stdout).read_bytes()
    truncated = tmp_path / "truncated.dump"
    truncated.write_bytes(whole[:-200])
    listing = subprocess.run(
        ["pg_restore", "--list", str(truncated)], capture_output=True, timeout=60
    )
    assert listing.returncode == 0  # so the restore gets as far as streaming into psql
    result = run_tecnorev("db", "restore", str(truncated), "--force", url=postgres_url)
    assert result.returncode == 1
    assert (
        f"error: pg_restore could not read {truncated}, so nothing was restored: "
        "pg_restore: error: could not read from input file: end of file" in result.stderr
    )
    assert snapshot(postgres_url) == before


def test_restore_over_a_database_in_use_stops_and_says_so(tmp_path, postgres_url):
    migrate(postgres_url, "auth@head")
    result = run_tecnorev(
        "db", "upgrade", "heads", "--backup", "--backup-dir", str(tmp_path), url=postgres_url
    )
    file = backup_file(result.stdout)
    before = snapshot(postgres_url)
    engine = sa.create_engine(postgres_url, poolclass=sa.pool.NullPool)
    with engine.connect() as application:
        application.execute(sa.text('SELECT count(*) FROM "user"')).all()  # an open transaction
        result = run_tecnorev(
            "db", "restore", str(file), "--force", url=postgres_url,
            env={"TECNOREV_LOCK_TIMEOUT": "300ms"},
        )  # fmt: skip
    engine.dispose()
    assert result.returncode == 1
    assert f"error: psql could not restore {file} into " in result.stderr
    assert "the database was left as it was" in result.stderr
    assert "canceling statement due to lock timeout" in result.stderr
    assert "Sessions are still using the database: stop the application, then restore." in (
        result.stderr
    )
    assert snapshot(postgres_url) == before


def test_backup_with_sql_is_refused(tmp_path):
    result = run_tecnorev(
        "db", "upgrade", "heads", "--sql", "--backup", url=f"sqlite:///{tmp_path / 'x.db'}"
    )
    assert result.returncode == 1
    assert (
        "error: --backup needs a database connection; with --sql nothing is run, so there is "
        "nothing to back up" in result.stderr
    )
