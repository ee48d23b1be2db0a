"""What the engine writes for people to review is the same on every run: offline SQL
(``upgrade --sql``, ``db sql``) and the graph, each produced three times in fresh processes with
different hash seeds, compared byte for byte.

The only values masked are the timestamps auth's seed revision computes when it runs (its
rows' ``created_at``): the clock is an input, and that revision is frozen history.
"""

from __future__ import annotations

import re

import pytest

from tecnorev.testing.core import admin_url, run_tecnorev

SEEDS = ("0", "1", "4242")
# what auth_262deabaa823 writes for created_at/updated_at: datetime.now(UTC) at run time
CLOCK = re.compile(r"'\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?(?:\+00:00)?'")


def _three_runs(*args: str, url: str, tmp_path) -> list[str]:
    outputs = []
    for seed in SEEDS:
        result = run_tecnorev(*args, url=url, cwd=tmp_path, env={"PYTHONHASHSEED": seed})
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout)
    return outputs


def _offline_url(dialect: str, tmp_path) -> str:
    if dialect == "sqlite":
        return f"sqlite:///{tmp_path / 'never-created.db'}"
    # offline: the URL names the dialect; nothing connects to it
    return admin_url().rsplit("/", 1)[0] + "/tecnorev_never_created"


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_upgrade_sql_is_the_same_on_every_run(dialect, tmp_path):
    url = _offline_url(dialect, tmp_path)
    runs = _three_runs("db", "upgrade", "heads", "--sql", url=url, tmp_path=tmp_path)
    masked = [CLOCK.sub("'<now>'", run) for run in runs]
    assert masked[0] == masked[1] == masked[2]
    # the batch copies SQLite needs, whose order once changed from run to run, are in it
    assert 'CREATE TABLE "order"' in masked[0] or "CREATE TABLE order" in masked[0]
    assert len(CLOCK.findall(runs[0])) == 8  # the seed's four roles, two stamps each
    assert not (tmp_path / "never-created.db").exists()


@pytest.mark.parametrize("module", ["sales", "inventory"])
def test_db_sql_is_the_same_on_every_run(module, tmp_path):
    url = f"sqlite:///{tmp_path / 'never-created.db'}"
    runs = _three_runs("db", "sql", module, f"base:{module}@head", url=url, tmp_path=tmp_path)
    masked = [CLOCK.sub("'<now>'", run) for run in runs]  # it includes auth's seed
    assert masked[0] == masked[1] == masked[2]
    assert "CREATE TABLE" in runs[0]


@pytest.mark.parametrize("options", [(), ("--format", "dot"), ("--revisions",)])
def test_the_graph_is_the_same_on_every_run(options, tmp_path):
    runs = _three_runs("db", "graph", *options, url=None, tmp_path=tmp_path)
    assert runs[0] == runs[1] == runs[2]
    assert "sales" in runs[0]
