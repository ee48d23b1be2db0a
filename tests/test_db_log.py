"""``tecnorev db log``: the ledger of every revision applied, reverted or stamped, kept through
``downgrade base``."""

from __future__ import annotations

import json
import re
from importlib.metadata import version

import sqlalchemy as sa

from tecnorev.testing.core import (
    installed_revisions,
    module_heads,
    recorded_revisions,
    run_tecnorev,
    schema_objects,
)

KEYS = {
    "id",
    "at",
    "module",
    "revision",
    "phase",
    "direction",
    "distribution_version",
    "checksum",
    "parents",
    "host",
    "user",
    "duration_ms",
    "note",
}


def log(url: str, *args: str) -> list[dict]:
    result = run_tecnorev("db", "log", "--json", *args, url=url)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def upgrade_heads(url: str) -> None:
    result = run_tecnorev("db", "upgrade", "heads", url=url)
    assert result.returncode == 0, result.stderr


def test_every_applied_revision_is_listed_oldest_first(database_url):
    upgrade_heads(database_url)
    entries = log(database_url)
    revisions = installed_revisions()
    applied = [e["revision"] for e in entries]
    assert sorted(applied) == sorted(revisions)  # each once
    for revision, before in revisions.items():  # never ahead of what it needs
        assert all(applied.index(b) < applied.index(revision) for b in before), revision
    assert all(e["revision"].startswith(e["module"] + "_") for e in entries)
    assert [e["id"] for e in entries] == sorted(e["id"] for e in entries)
    for entry in entries:
        assert set(entry) == KEYS
        assert entry["direction"] == "upgrade"
        # the version of the distribution that shipped it, as installed
        assert entry["distribution_version"] == version(f"tecnorev-{entry['module']}")
        assert re.fullmatch(r"[0-9a-f]{64}", entry["checksum"])
        assert entry["at"].endswith("+00:00")
        assert entry["duration_ms"] >= 0
        assert entry["note"] is None  # only failed attempts and repairs carry one
        assert entry["phase"] == "expand"  # every shipped revision only adds
    catalog = next(e for e in entries if e["module"] == "catalog")
    assert catalog["parents"] == ["auth_262deabaa823"]  # its depends_on, not auth's head

    result = run_tecnorev("db", "log", url=database_url)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "WHEN",
        "(UTC)",
        "MODULE",
        "REVISION",
        "PHASE",
        "DIRECTION",
        "VERSION",
        "MS",
        "WHO",
        "SHA256",
        "NOTE",
    ]
    assert len(lines) == 1 + len(revisions)
    assert re.match(
        r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d  auth\s+auth_9745703af63a\s+expand\s+upgrade\s+0\.1\.1\s+\d+\s+\S+@\S+\s+[0-9a-f]{12}$",
        lines[1],
    )
    revision_column = lines[0].index("REVISION")
    assert all(line[revision_column - 2 : revision_column] == "  " for line in lines[1:])


def test_filtered_by_module_and_limited_to_the_newest(database_url):
    upgrade_heads(database_url)
    everything = log(database_url)
    auth = log(database_url, "auth")
    assert [e["revision"] for e in auth] == [
        "auth_9745703af63a",
        "auth_262deabaa823",
        "auth_8c5580aaf960",
        "auth_346926648806",
        "auth_68f68bf2a9a1",
        "auth_0d06fa2a264a",
    ]
    assert log(database_url, "--limit", "2") == everything[-2:]
    assert [e["revision"] for e in log(database_url, "auth", "--limit", "1")] == [
        module_heads()["auth"]
    ]

    result = run_tecnorev("db", "log", "catalog", url=database_url)
    assert result.returncode == 0
    body = result.stdout.splitlines()[1:]
    assert len(body) == 3
    assert "catalog_68c333c29785" in body[0] and module_heads()["catalog"] in body[-1]


def test_the_ledger_survives_downgrade_base(database_url):
    upgrade_heads(database_url)
    result = run_tecnorev("db", "downgrade", "base", url=database_url)
    assert result.returncode == 0, result.stderr
    assert schema_objects(database_url)["tables"] == set()
    assert recorded_revisions(database_url) == set()

    entries = log(database_url)
    count = len(installed_revisions())
    assert len(entries) == 2 * count
    assert [e["direction"] for e in entries] == ["upgrade"] * count + ["downgrade"] * count
    reverted = [e["revision"] for e in entries[count:]]
    assert reverted[-2:] == ["auth_262deabaa823", "auth_9745703af63a"]  # dependents first
    payments = [e["direction"] for e in log(database_url, "payments")]
    assert payments == ["upgrade", "upgrade", "downgrade", "downgrade"]

    # and the database is simply pending again
    status = run_tecnorev("db", "status", url=database_url)
    assert status.returncode == 1
    upgrade_heads(database_url)
    assert len(log(database_url)) == 3 * count


def test_stamps_are_recorded_as_such(database_url):
    result = run_tecnorev("db", "stamp", "auth@head", url=database_url)
    assert result.returncode == 0, result.stderr
    (entry,) = log(database_url)
    assert (entry["revision"], entry["direction"]) == (module_heads()["auth"], "stamp-upgrade")
    assert re.fullmatch(r"[0-9a-f]{64}", entry["checksum"])


def test_nothing_recorded_yet(database_url):
    result = run_tecnorev("db", "log", url=database_url)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "no migration recorded yet\n"
    result = run_tecnorev("db", "log", "payments", url=database_url)
    assert result.returncode == 0
    assert result.stdout == "no migration recorded for module 'payments' yet\n"
    assert log(database_url) == []


def test_a_module_that_is_neither_installed_nor_in_the_ledger_is_an_error(database_url):
    upgrade_heads(database_url)
    result = run_tecnorev("db", "log", "loyalty", url=database_url)
    assert result.returncode == 2
    assert result.stderr == (
        "error: no ledger row names module 'loyalty', and no installed module has that name "
        "(installed: auth, core, catalog, inventory, sales, logistics, payments).\n"
    )


def test_an_uninstalled_module_keeps_its_rows(database_url):
    upgrade_heads(database_url)
    engine = sa.create_engine(database_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO tecnorev_migration_log (revision, module, distribution_version, "
            "direction, parents, checksum, at) VALUES ('loyalty_0123456789ab', 'loyalty', "
            "'0.3.0', 'upgrade', 'sales_4d5a76c56eb0', NULL, '2026-01-02 03:04:05')"
        )
    engine.dispose()
    (entry,) = log(database_url, "loyalty")
    assert entry["revision"] == "loyalty_0123456789ab"
    assert entry["phase"] is None  # its file is not installed
    assert entry["at"].startswith("2026-01-02T03:04:05")
    result = run_tecnorev("db", "log", "loyalty", url=database_url)
    assert "2026-01-02 03:04:05  loyalty  loyalty_0123456789ab  -      upgrade    0.3.0" in (
        result.stdout
    )


def test_limit_must_be_positive(tmp_path):
    result = run_tecnorev("db", "log", "--limit", "0", url=f"sqlite:///{tmp_path / 'x.db'}")
    assert result.returncode == 2
    assert "Invalid value for '--limit': expected a positive number, got '0'" in result.stderr
