"""``tecnorev db lint``: per rule, a migration that triggers it and its safe form that does not;
acknowledgements; the command as a user runs it; and the helper that makes a concurrent index
build safe to run again, on PostgreSQL."""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa

from tecnorev.migrate.lint import RULES, Finding, blocking, format_findings, lint_paths
from tecnorev.testing.core import (
    installed_revisions,
    module_heads,
    recorded_revisions,
    run_tecnorev,
)

REPO = Path(__file__).resolve().parents[1]
CATALOG_HEAD = module_heads()["catalog"]

HEADER = '''"""{message}"""

import sqlalchemy as sa
from alembic import op

from tecnorev.migrate.helpers import create_index_concurrently

revision = "{revision}"
down_revision = "{down}"
branch_labels = None
depends_on = None
{extra}

def upgrade():
{body}


def downgrade():
{downgrade}
'''


def write_revision(
    folder: Path,
    body: str,
    *,
    message: str = "change",
    extra: str = "",
    down: str = CATALOG_HEAD,
    downgrade: str = "pass",
) -> Path:
    revision = f"catalog_{secrets.token_hex(6)}"
    path = folder / f"{revision}_{message.replace(' ', '_')}.py"
    indent = lambda code: textwrap.indent(textwrap.dedent(code).strip(), "    ")  # noqa: E731
    path.write_text(
        HEADER.format(
            message=message,
            revision=revision,
            down=down,
            extra=textwrap.dedent(extra),
            body=indent(body),
            downgrade=indent(downgrade),
        )
    )
    return path


def lint(tmp_path: Path, body: str, **kw) -> list[Finding]:
    return lint_paths([write_revision(tmp_path, body, **kw)])


def rule_ids(findings: list[Finding]) -> list[str]:
    return [f.rule_id for f in findings]


def flagged_line(finding: Finding) -> str:
    return finding.path.read_text().splitlines()[finding.line - 1]


# Per rule: a migration that triggers it (the offending line marked "# flagged"), and the safe
# form the rule's "instead" describes, which must lint clean.
CASES = {
    "TR100": (
        """
        count = op.get_bind().execute(sa.text("SELECT count(*) FROM product")).scalar()  # flagged
        op.execute(f"UPDATE product SET position = {count}")
        """,
        """
        op.execute("UPDATE product SET description = '' WHERE description IS NULL")
        """,
    ),
    "TR101": (
        """
        with op.batch_alter_table("product") as batch_op:
            batch_op.create_index("ix_product_name", ["name"])  # flagged
        """,
        """
        create_index_concurrently(op, "ix_product_name", "product", ["name"])
        """,
    ),
    "TR102": (
        """
        op.add_column("product", sa.Column("barcode", sa.String(32), nullable=False))  # flagged
        """,
        """
        op.add_column(
            "product", sa.Column("barcode", sa.String(32), nullable=False, server_default="")
        )
        """,
    ),
    "TR103": (
        """
        with op.batch_alter_table("product") as batch_op:
            batch_op.alter_column(  # flagged
                "price", existing_type=sa.Float(), type_=sa.Numeric(12, 2), existing_nullable=False
            )
        """,
        """
        with op.batch_alter_table("product") as batch_op:
            batch_op.alter_column(
                "sku", existing_type=sa.String(64), type_=sa.String(128), existing_nullable=False
            )
            batch_op.alter_column(
                "price", existing_type=sa.Numeric(12, 2), type_=sa.Numeric(14, 2)
            )
        """,
    ),
    "TR104": (
        """
        op.create_foreign_key(  # flagged
            "fk_product_owner", "product", "user", ["created_by_id"], ["id"]
        )
        """,
        """
        op.create_foreign_key(
            "fk_product_owner",
            "product",
            "user",
            ["created_by_id"],
            ["id"],
            postgresql_not_valid=True,
        )
        op.create_check_constraint(
            "ck_product_name_not_empty", "product", "name <> ''", postgresql_not_valid=True
        )
        """,
    ),
    "TR105": (
        """
        op.drop_column("product", "description")  # flagged
        """,
        """
        op.alter_column("product", "description", existing_type=sa.Text(), nullable=True)
        """,
    ),
    "TR106": (
        """
        op.drop_table("product_image")  # flagged
        """,
        """
        op.create_table("product_import", sa.Column("sku", sa.String(64), primary_key=True))
        op.execute("INSERT INTO product_import (sku) SELECT sku FROM product")
        op.drop_table("product_import")
        """,
    ),
    "TR107": (
        """
        with op.batch_alter_table("product") as batch_op:
            batch_op.alter_column("name", new_column_name="title")  # flagged
        """,
        """
        op.add_column("product", sa.Column("title", sa.String(200), nullable=True))
        op.execute("UPDATE product SET title = name")
        """,
    ),
    "TR108": (
        """
        op.rename_table("product_image", "product_photo")  # flagged
        """,
        """
        op.execute("CREATE VIEW product_photo AS SELECT * FROM product_image")
        """,
    ),
    "TR109": (
        """
        with op.get_context().autocommit_block():
            op.execute("ALTER TYPE order_status ADD VALUE IF NOT EXISTS 'ON_HOLD'")  # flagged
        """,
        """
        op.drop_constraint("ck_order_status", "order", type_="check")
        op.create_check_constraint(
            "ck_order_status",
            "order",
            "status IN ('PENDING', 'PAID', 'ON_HOLD')",
            postgresql_not_valid=True,
        )
        """,
    ),
    "TR110": (
        """
        op.alter_column("product", "category_id", existing_type=sa.Integer(), nullable=False)  # flagged
        """,
        """
        op.execute("ALTER TABLE product VALIDATE CONSTRAINT ck_product_category_id_not_null")
        op.alter_column("product", "category_id", existing_type=sa.Integer(), nullable=False)
        op.drop_constraint("ck_product_category_id_not_null", "product", type_="check")
        """,
    ),
    "TR111": (
        """
        op.create_index(  # flagged
            "ix_product_name", "product", ["name"], postgresql_concurrently=True
        )
        """,
        """
        create_index_concurrently(op, "ix_product_name", "product", ["name"])
        create_index_concurrently(op, "ix_product_sku_lower", "product", [sa.text("lower(sku)")])
        """,
    ),
}


def test_every_rule_has_a_case():
    assert set(CASES) == {r for r in RULES if RULES[r].acknowledgeable}


@pytest.mark.parametrize("rule_id", sorted(CASES))
def test_rule_flags_its_migration_at_the_offending_line(tmp_path, rule_id):
    findings = lint(tmp_path, CASES[rule_id][0])
    mine = [f for f in findings if f.rule_id == rule_id]
    assert mine, findings
    assert all("# flagged" in flagged_line(f) for f in mine)
    assert blocking(mine) == mine


@pytest.mark.parametrize("rule_id", sorted(CASES))
def test_safe_form_lints_clean(tmp_path, rule_id):
    assert lint(tmp_path, CASES[rule_id][1]) == []


OLD_REASONS = 'sa.Enum("RECEIPT", "SALE", name="movement_reason", native_enum=False)'
NEW_REASONS = 'sa.Enum("RECEIPT", "SALE", "RETURN", name="movement_reason", native_enum=False)'


@pytest.mark.parametrize(
    ("rule_id", "body"),
    [
        ("TR101", 'op.add_column("product", sa.Column("ean", sa.String(13), index=True))'),
        ("TR101", 'op.create_unique_constraint("uq_product_name", "product", ["name"])'),
        (
            "TR103",
            'op.alter_column("product", "sku", existing_type=sa.String(64), type_=sa.String(32))',
        ),
        (
            "TR103",
            'op.alter_column("product", "price", existing_type=sa.Numeric(12, 2), type_=sa.Numeric(12, 3))',
        ),
        (
            "TR103",
            'op.alter_column("product", "description", existing_type=sa.Text(), type_=sa.String(500))',
        ),
        ("TR103", 'op.alter_column("product", "sku", type_=sa.String(128))'),
        (
            "TR104",
            'op.add_column("category", sa.Column("owner_id", sa.Integer(), sa.ForeignKey("user.id")))',
        ),
        ("TR104", 'op.create_check_constraint("ck_product_price", "product", "price < 1000000")'),
        (
            "TR109",
            f'op.alter_column("inventory_movement", "reason", existing_type={OLD_REASONS}, '
            f"type_={NEW_REASONS})",
        ),
    ],
)
def test_more_forms_of_each_rule(tmp_path, rule_id, body):
    assert rule_ids(lint(tmp_path, body + "  # flagged")) == [rule_id]


@pytest.mark.parametrize(
    ("sql", "rule_id"),
    [
        ("CREATE INDEX ix_product_name ON product (name)", "TR101"),
        ("ALTER TABLE product ADD CONSTRAINT uq_product_name UNIQUE (name)", "TR101"),
        ("ALTER TABLE product ADD COLUMN barcode varchar(32) NOT NULL", "TR102"),
        ("ALTER TABLE product ALTER COLUMN price TYPE numeric(14, 2)", "TR103"),
        (
            'ALTER TABLE product ADD CONSTRAINT fk_x FOREIGN KEY (created_by_id) REFERENCES "user" (id)',
            "TR104",
        ),
        ("ALTER TABLE product DROP COLUMN description", "TR105"),
        ("DROP TABLE IF EXISTS product_image", "TR106"),
        ('ALTER TABLE "product" RENAME COLUMN name TO title', "TR107"),
        ("ALTER TABLE product RENAME TO item", "TR108"),
        ("ALTER TYPE order_status RENAME VALUE 'PENDING' TO 'OPEN'", "TR109"),
        ("ALTER TABLE product ALTER COLUMN name SET NOT NULL", "TR110"),
        ("CREATE INDEX CONCURRENTLY ix_product_name ON product (name)", "TR111"),
    ],
)
def test_sql_text_is_read_into_the_same_rules(tmp_path, sql, rule_id):
    findings = lint(tmp_path, f"op.execute({sql!r})  # flagged")
    assert rule_ids(findings) == [rule_id]
    assert "# flagged" in flagged_line(findings[0])


@pytest.mark.parametrize(
    "sql",
    [
        'ALTER TABLE product ADD CONSTRAINT fk_x FOREIGN KEY (created_by_id) REFERENCES "user" (id) NOT VALID',
        "ALTER TABLE product ADD CONSTRAINT uq_product_name UNIQUE USING INDEX ix_product_name",
        "UPDATE product SET name = 'DROP TABLE product' WHERE id = 1",
        "-- ALTER TABLE product DROP COLUMN description\nSELECT 1",
        "ALTER TABLE product ADD COLUMN barcode varchar(32) NOT NULL DEFAULT ''",
        "ALTER TABLE product ALTER COLUMN name DROP NOT NULL",
    ],
)
def test_safe_sql_is_not_flagged(tmp_path, sql):
    assert lint(tmp_path, f"op.execute({sql!r})") == []


def test_sql_run_through_the_bind_is_seen(tmp_path):
    findings = lint(
        tmp_path,
        'op.get_bind().execute(sa.text("ALTER TABLE product DROP COLUMN description"))',
    )
    assert rule_ids(findings) == ["TR105"]


def test_tables_created_in_the_same_revision_are_new_and_empty(tmp_path):
    findings = lint(
        tmp_path,
        """
        op.create_table(
            "wishlist",
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("product_id", sa.Integer, nullable=False),
        )
        op.add_column("wishlist", sa.Column("note", sa.Text(), nullable=False))
        op.create_foreign_key("fk_w", "wishlist", "product", ["product_id"], ["id"])
        op.create_check_constraint("ck_w", "wishlist", "length(note) < 500")
        with op.batch_alter_table("wishlist") as batch_op:
            batch_op.create_index("ix_wishlist_product_id", ["product_id"])
            batch_op.alter_column("note", existing_type=sa.Text(), type_=sa.String(500))
            batch_op.drop_column("note")
        """,
    )
    assert findings == []


def test_validating_in_the_revision_that_adds_the_constraint_is_flagged(tmp_path):
    findings = lint(
        tmp_path,
        """
        op.create_check_constraint(
            "ck_product_name_not_empty", "product", "name <> ''", postgresql_not_valid=True
        )
        op.execute("ALTER TABLE product VALIDATE CONSTRAINT ck_product_name_not_empty")
        """,
    )
    assert rule_ids(findings) == ["TR104"]
    assert "in the revision that adds it" in findings[0].message


def test_a_hand_written_concurrent_build_is_not_safely_re_runnable(tmp_path):
    findings = lint(
        tmp_path,
        """
        with op.get_context().autocommit_block():
            op.create_index(
                "ix_product_name",
                "product",
                ["name"],
                postgresql_concurrently=True,
                if_not_exists=True,
            )
        """,
    )
    assert rule_ids(findings) == ["TR111"]
    assert "INVALID index left by a failed earlier build IF NOT EXISTS then keeps" in (
        findings[0].message
    )


def test_an_autocommit_block_mixed_with_transactional_steps_is_flagged(tmp_path):
    findings = lint(
        tmp_path,
        """
        op.add_column("product", sa.Column("barcode", sa.String(32), nullable=True))
        create_index_concurrently(op, "ix_product_barcode", "product", ["barcode"])  # flagged
        """,
    )
    assert rule_ids(findings) == ["TR111"]
    assert "# flagged" in flagged_line(findings[0])
    assert "transactional steps (line 15)" in findings[0].message


def test_migrations_reading_the_alembic_context_are_linted_offline(tmp_path):
    findings = lint(
        tmp_path,
        """
        from alembic import context

        if not context.is_offline_mode() and context.get_x_argument(as_dictionary=True):
            op.get_bind().execute(sa.text("SELECT 1")).scalar()
        if op.get_bind().dialect.name == "postgresql":
            op.drop_column("product", "description")  # flagged
        """,
    )
    assert rule_ids(findings) == ["TR105"]
    assert "# flagged" in flagged_line(findings[0])


def test_lint_inside_a_running_alembic_command_restores_its_proxies(tmp_path):
    from alembic import op
    from alembic.operations import Operations
    from alembic.runtime.migration import MigrationContext

    outer = Operations(MigrationContext.configure(dialect_name="sqlite"))
    with Operations.context(outer.migration_context):
        before = op._proxy
        lint(tmp_path, 'op.drop_column("product", "description")')
        assert op._proxy is before


def test_shipped_migrations_lint_clean_in_process():
    folders = sorted(REPO.glob("packages/*/src/tecnorev/*/migrations"))
    files = [p for folder in folders for p in folder.glob("*.py") if p.name != "__init__.py"]
    assert len(files) >= 7
    assert lint_paths(files) == []


# --------------------------------------------------------------------------- acknowledgements


def test_a_comment_on_the_line_acknowledges_with_its_reason(tmp_path):
    findings = lint(
        tmp_path,
        'op.drop_column("product", "description")  # tecnorev: allow TR105 unread since 2.3',
    )
    assert rule_ids(findings) == ["TR105"]
    assert findings[0].acknowledged and findings[0].reason == "unread since 2.3"
    assert blocking(findings) == []
    assert "[acknowledged: unread since 2.3]" in format_findings(findings)


def test_a_comment_above_or_inside_a_multi_line_statement_acknowledges(tmp_path):
    findings = lint(
        tmp_path,
        """
        # tecnorev: allow TR105, TR106 - the import tables were emptied in 2.2
        op.drop_column("product", "description")
        op.drop_table(
            "product_image"
        )  # tecnorev: allow TR106: archived to cold storage first
        with op.batch_alter_table("product") as batch_op:
            batch_op.alter_column(
                "price",
                existing_type=sa.Float(),
                type_=sa.Numeric(12, 2),  # tecnorev: allow TR103 a few hundred rows
            )
        """,
    )
    assert [(f.rule_id, f.reason) for f in findings] == [
        ("TR105", "the import tables were emptied in 2.2"),
        ("TR106", "archived to cold storage first"),
        ("TR103", "a few hundred rows"),
    ]


def test_an_acknowledgement_covers_only_its_own_statement(tmp_path):
    findings = lint(
        tmp_path,
        """
        op.drop_column("product", "description")  # tecnorev: allow TR105 unread since 2.3
        op.drop_column("product", "is_active")
        """,
    )
    assert [f.acknowledged for f in findings] == [True, False]


def test_lint_allow_acknowledges_for_the_whole_file(tmp_path):
    findings = lint(
        tmp_path,
        """
        op.drop_column("product", "description")
        op.drop_column("product", "is_active")
        """,
        extra='lint_allow = {"TR105": "columns retired in 2.3"}\n',
    )
    assert [f.reason for f in findings] == ["columns retired in 2.3"] * 2
    assert blocking(findings) == []


@pytest.mark.parametrize(
    ("body", "extra", "problem"),
    [
        (
            'op.drop_column("product", "description")  # tecnorev: allow TR105',
            "",
            "acknowledges TR105 without a reason",
        ),
        (
            'op.drop_column("product", "description")  # tecnorev: allow TR999 why not',
            "",
            "acknowledges TR999, which is not a rule",
        ),
        (
            'op.drop_column("product", "description")  # tecnorev: allow the drop',
            "",
            "acknowledgement not understood",
        ),
        (
            'op.drop_column("product", "description")',
            'lint_allow = {"TR105": " "}\n',
            "acknowledges TR105 without a reason",
        ),
    ],
)
def test_an_acknowledgement_without_a_reason_is_refused(tmp_path, body, extra, problem):
    findings = lint(tmp_path, body, extra=extra)
    assert sorted(rule_ids(findings)) == ["TR000", "TR105"]
    assert all(not f.acknowledged for f in findings)
    (refusal,) = [f for f in findings if f.rule_id == "TR000"]
    assert problem in refusal.message


def test_format_findings_names_file_line_rule_why_and_instead(tmp_path):
    (finding,) = lint(tmp_path, 'op.drop_column("product", "description")')
    text = format_findings([finding])
    first, why, instead = text.splitlines()
    assert re.fullmatch(
        r".*catalog_[0-9a-f]{12}_change\.py:15 TR105 drops column product\.description", first
    )
    assert why == f"    why: {RULES['TR105'].why}"
    assert instead == f"    instead: {RULES['TR105'].instead}"


# --------------------------------------------------------------------------- the command


@pytest.fixture
def scratch(scratch):
    """The shared scratch copy of catalog, plus revisions written with this file's helper."""
    scratch.add = lambda body, **kw: write_revision(scratch.migrations, body, **kw)
    return scratch


def revision_of(path: Path) -> str:
    return re.search(r'^revision = "(\w+)"', path.read_text(), re.M).group(1)


def test_lint_reports_pending_revisions_and_fails(scratch, sqlite_at_heads):
    bad = scratch.add('op.drop_column("product", "description")', message="drop description")
    fine = scratch.add(
        'op.add_column("product", sa.Column("barcode", sa.String(32), nullable=True))',
        message="add barcode",
        down=revision_of(bad),
    )
    result = scratch.run("db", "lint", url=sqlite_at_heads)
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert re.fullmatch(rf".*{bad.name}:15 TR105 drops column product\.description", lines[0]), (
        result.stdout
    )
    assert lines[1] == f"    why: {RULES['TR105'].why}"
    assert lines[2] == f"    instead: {RULES['TR105'].instead}"
    assert "2 revisions linted (pending): 1 finding to fix, 0 acknowledged" in result.stdout
    assert "# tecnorev: allow <rule id> <reason>" in result.stdout
    assert CATALOG_HEAD not in result.stdout and fine.name not in result.stdout
    assert "Traceback" not in result.stderr

    result = scratch.run("db", "lint", "--json", url=sqlite_at_heads)
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False and report["scope"] == "pending"
    assert report["revisions"] == [revision_of(bad), revision_of(fine)]
    (finding,) = report["findings"]
    assert finding["rule"] == "TR105" and finding["line"] == 15
    assert finding["file"] == str(bad) and finding["acknowledged"] is False
    assert finding["why"] == RULES["TR105"].why


def test_an_acknowledged_finding_does_not_fail(scratch, sqlite_at_heads):
    scratch.add(
        'op.drop_column("product", "description")  # tecnorev: allow TR105 unread since 2.3',
    )
    result = scratch.run("db", "lint", "catalog", url=sqlite_at_heads)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "TR105 drops column product.description [acknowledged: unread since 2.3]" in (
        result.stdout
    )
    assert "1 revision linted (pending): 0 findings to fix, 1 acknowledged" in result.stdout


def test_nothing_pending_is_clean_and_all_lints_every_shipped_revision(sqlite_at_heads, tmp_path):
    result = run_tecnorev("db", "lint", url=sqlite_at_heads, cwd=tmp_path)
    assert result.returncode == 0
    assert "nothing to lint: every revision of the installed modules is applied" in result.stdout

    result = run_tecnorev("db", "lint", "--all", url=sqlite_at_heads, cwd=tmp_path)
    assert result.returncode == 0, result.stdout
    assert f"{len(installed_revisions())} revisions linted (all): clean" in result.stdout

    result = run_tecnorev(
        "db", "lint", "auth", "--all", "--json", url=sqlite_at_heads, cwd=tmp_path
    )
    report = json.loads(result.stdout)
    assert report == {
        "scope": "all",
        "revisions": [
            "auth_9745703af63a",
            "auth_262deabaa823",
            "auth_8c5580aaf960",
            "auth_346926648806",
            "auth_68f68bf2a9a1",
            "auth_0d06fa2a264a",
        ],
        "ok": True,
        "findings": [],
    }


def test_an_unreachable_database_lints_every_revision(scratch, tmp_path):
    scratch.add('op.drop_table("product_image")')
    url = "postgresql+psycopg2://postgres@127.0.0.1:1/nowhere"
    result = scratch.run("db", "lint", url=url)
    assert result.returncode == 1
    assert "note: linting every revision; the database cannot be read" in result.stderr
    count = len(installed_revisions()) + 1
    assert f"{count} revisions linted (all): 1 finding to fix" in result.stdout


def test_an_unknown_module_is_refused(tmp_path):
    result = run_tecnorev("db", "lint", "billing", cwd=tmp_path)
    assert result.returncode == 2
    assert "no installed module named 'billing'" in result.stderr


def test_rules_lists_every_rule(tmp_path):
    result = run_tecnorev("db", "lint", "--rules", cwd=tmp_path)
    assert result.returncode == 0
    for rule in RULES.values():
        assert f"{rule.id}  {rule.title}" in result.stdout


# --------------------------------------------------------------------------- concurrent index

INDEX_NAME = "ix_product_name_unique"


def add_name_index(scratch, *, by_hand: bool = False) -> Path:
    if by_hand:
        body = f"""
        with op.get_context().autocommit_block():  # tecnorev: allow TR111 the contrast
            op.create_index(  # tecnorev: allow TR111 the contrast
                "{INDEX_NAME}",
                "product",
                ["name"],
                unique=True,
                postgresql_concurrently=True,
                if_not_exists=True,
            )
        """
    else:
        body = f'create_index_concurrently(op, "{INDEX_NAME}", "product", ["name"], unique=True)'
    return scratch.add(
        body,
        message="unique product name",
        downgrade=f'op.drop_index("{INDEX_NAME}", table_name="product")',
    )


def insert_products(url: str, *names: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for i, name in enumerate(names):
            conn.execute(
                sa.text(
                    "INSERT INTO product (created_at, updated_at, sku, name, description, price, "
                    "is_active) VALUES (CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, :sku, :name, '', 1, "
                    "true)"
                ),
                {"sku": f"SKU-{i}", "name": name},
            )
    engine.dispose()


def index_state(url: str) -> str | None:
    """'valid', 'INVALID', or None when the index does not exist."""
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        valid = conn.execute(
            sa.text(
                "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                "WHERE c.relname = :name"
            ),
            {"name": INDEX_NAME},
        ).scalar()
    engine.dispose()
    return None if valid is None else ("valid" if valid else "INVALID")


def test_helper_builds_the_index_concurrently_under_upgrade_heads(scratch, postgres_url):
    assert run_tecnorev("db", "upgrade", "heads", url=postgres_url).returncode == 0
    insert_products(postgres_url, "kettle", "toaster")
    revision = add_name_index(scratch)

    result = scratch.run("db", "lint", url=postgres_url)
    assert result.returncode == 0, result.stdout
    assert "1 revision linted (pending): clean" in result.stdout

    result = scratch.run("db", "upgrade", "heads", url=postgres_url)
    assert result.returncode == 0, result.stderr
    assert index_state(postgres_url) == "valid"
    assert revision_of(revision) in recorded_revisions(postgres_url)

    # the helper's build is rehearsed too (inside the rolled-back transaction, as a plain
    # build), so what the downgrade would drop is measured: an index, no rows
    measured = scratch.run("db", "downgrade", "catalog@-1", "--dry-run", url=postgres_url)
    assert measured.returncode == 0, measured.stderr
    assert index_state(postgres_url) == "valid"  # the rehearsal changed nothing
    downgraded = scratch.run("db", "downgrade", "catalog@-1", url=postgres_url)
    assert downgraded.returncode == 0, downgraded.stderr
    assert index_state(postgres_url) is None
    assert scratch.run("db", "upgrade", "heads", url=postgres_url).returncode == 0
    assert index_state(postgres_url) == "valid"


def test_a_revisions_own_autocommit_block_cannot_be_rehearsed(scratch, postgres_url):
    """Written by hand, the block commits: a downgrade past it is not measured, so it asks
    for --yes instead of guessing what it would drop."""
    assert run_tecnorev("db", "upgrade", "heads", url=postgres_url).returncode == 0
    add_name_index(scratch, by_hand=True)
    assert scratch.run("db", "upgrade", "heads", url=postgres_url).returncode == 0
    refused = scratch.run("db", "downgrade", "catalog@-1", url=postgres_url)
    assert refused.returncode == 1
    assert "cannot be measured" in refused.stderr and "--yes" in refused.stderr
    assert index_state(postgres_url) == "valid"
    assert scratch.run("db", "downgrade", "catalog@-1", "--yes", url=postgres_url).returncode == 0
    assert index_state(postgres_url) is None


def test_helper_reruns_after_a_failed_build_left_an_invalid_index(scratch, postgres_url):
    assert run_tecnorev("db", "upgrade", "heads", url=postgres_url).returncode == 0
    insert_products(postgres_url, "kettle", "kettle", "toaster")
    revision = add_name_index(scratch)

    result = scratch.run("db", "upgrade", "heads", url=postgres_url)
    assert result.returncode == 1
    assert "could not create unique index" in result.stderr
    assert index_state(postgres_url) == "INVALID"  # what a failed concurrent build leaves
    assert revision_of(revision) not in recorded_revisions(postgres_url)

    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE product SET name = 'kettle 2' WHERE sku = 'SKU-1'"))
    engine.dispose()
    result = scratch.run("db", "upgrade", "heads", url=postgres_url)
    assert result.returncode == 0, result.stderr
    assert index_state(postgres_url) == "valid"
    assert revision_of(revision) in recorded_revisions(postgres_url)


def test_without_the_helper_the_rerun_keeps_the_invalid_index(scratch, postgres_url):
    """Why TR111 asks for the helper: IF NOT EXISTS sees the INVALID leftover and skips."""
    assert run_tecnorev("db", "upgrade", "heads", url=postgres_url).returncode == 0
    insert_products(postgres_url, "kettle", "kettle")
    add_name_index(scratch, by_hand=True)
    assert scratch.run("db", "upgrade", "heads", url=postgres_url).returncode == 1
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE product SET name = 'kettle 2' WHERE sku = 'SKU-1'"))
    engine.dispose()
    assert scratch.run("db", "upgrade", "heads", url=postgres_url).returncode == 0
    assert index_state(postgres_url) == "INVALID"


def test_two_migrators_at_once_with_a_concurrent_index(scratch, postgres_url):
    assert run_tecnorev("db", "upgrade", "heads", url=postgres_url).returncode == 0
    scratch.add(
        f"""
        with op.get_context().autocommit_block():
            op.execute("SELECT pg_sleep(3)")  # the second migrator is waiting by then
        create_index_concurrently(op, "{INDEX_NAME}", "product", ["name"])
        """,
        downgrade=f'op.drop_index("{INDEX_NAME}", table_name="product")',
    )

    def migrate(delay: float) -> subprocess.CompletedProcess[str]:
        time.sleep(delay)
        return run_tecnorev("db", "upgrade", "heads", url=postgres_url, env=scratch.env, timeout=20)

    with ThreadPoolExecutor(2) as pool:
        results = [f.result(60) for f in [pool.submit(migrate, 0), pool.submit(migrate, 1)]]
    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    assert index_state(postgres_url) == "valid"


def test_helper_on_sqlite_stays_inside_the_run_transaction(scratch, tmp_path):
    """On SQLite the helper is a plain CREATE INDEX: a later failure in the same run still
    rolls back every revision of the run, the index included."""
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    index = add_name_index(scratch)
    scratch.add("raise RuntimeError('boom')", message="broken", down=revision_of(index))
    result = scratch.run("db", "upgrade", "heads", url=url)
    assert result.returncode == 1
    assert "RuntimeError: boom" in result.stderr
    assert recorded_revisions(url) == set()
    result = scratch.run("db", "upgrade", revision_of(index), url=url)
    assert result.returncode == 0, result.stderr
    engine = sa.create_engine(url)
    indexes = {ix["name"]: ix["unique"] for ix in sa.inspect(engine).get_indexes("product")}
    engine.dispose()
    assert indexes[INDEX_NAME] in (True, 1)
