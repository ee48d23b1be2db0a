"""``tecnorev db verify``: the CI gate over every installed module's migrations."""

from __future__ import annotations

from argparse import ArgumentParser, Namespace
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from alembic.config import Config

if TYPE_CHECKING:
    from tecnorev.migrate.verify import VerifyReport

NAME = "verify"
HELP = (
    "check every module's migrations: models match them, one head per module, depends_on "
    "into declared dependencies shipped by their lowest accepted version, no applied file "
    "edited, each squash building what its originals build, no table class left out of its "
    "models module; exit 1 with a report naming "
    "module, file and line"
)


def add_arguments(parser: ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--postgres",
        action="store_true",
        help="compare models on a throwaway database created on the configured PostgreSQL "
        "server (default: a temporary SQLite file)",
    )
    where.add_argument("--scratch-url", help="compare models on this empty database instead")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(config: Config, options: Namespace) -> int:
    import json

    from alembic.script import ScriptDirectory

    from tecnorev.migrate.modules import get_registry
    from tecnorev.migrate.status import configured_url
    from tecnorev.migrate.verify import verify

    url = configured_url(config)
    report = verify(
        config,
        ScriptDirectory.from_config(config),
        get_registry(),
        database_url=url,
        scratch=_scratch(options, url),
    )
    if options.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(_render(report))
    return report.exit_code


def _scratch(options: Namespace, url: str) -> Callable[[], Any]:
    from contextlib import nullcontext

    import sqlalchemy as sa

    from tecnorev.migrate.errors import BadArgument
    from tecnorev.migrate.scratch import scratch_database

    if options.scratch_url:
        return lambda: nullcontext(options.scratch_url)
    if not options.postgres:
        return lambda: scratch_database("sqlite://")
    if sa.make_url(url).get_backend_name() != "postgresql":
        raise BadArgument(
            "--postgres creates the scratch database on the configured PostgreSQL server, but "
            f"DATABASE_URL names {sa.make_url(url).get_backend_name()}: set DATABASE_URL to a "
            "postgresql+psycopg2:// URL, or drop --postgres to compare on SQLite"
        )
    return lambda: scratch_database(url)


_MARK = {"ok": "ok  ", "failed": "FAIL", "skipped": "skip"}


def _render(report: VerifyReport) -> str:
    lines = []
    for check in report.checks:
        note = check.skipped or check.note
        lines.append(f"{_MARK[check.status]}  {check.title}" + (f" ({note})" if note else ""))
        for problem in check.problems:
            where = f"{problem.location}: " if problem.location else ""
            who = f"{problem.module}: " if problem.module else ""
            lines.append(f"      {who}{where}{problem.message}")
    count = sum(len(c.problems) for c in report.checks)
    lines.append("verify: all checks passed" if report.ok else f"verify: {count} problem(s)")
    return "\n".join(lines)
