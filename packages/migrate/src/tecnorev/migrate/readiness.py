"""Is the database ready for the installed code?  The question a service asks at start-up
and on every readiness probe: every installed module's code head applied (a database ahead of
the code, mid rolling deploy, still serves; so does one whose only pending revisions are
contract revisions)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

import sqlalchemy as sa
from alembic.script import Script, ScriptDirectory

from tecnorev.migrate.connect import describe_url
from tecnorev.migrate.errors import DatabaseUnavailable
from tecnorev.migrate.modules import Registry
from tecnorev.migrate.status import StatusReport, all_scripts, build_status, read_record


@dataclass
class ReadinessCheck:
    """Reads the migration files once, then only the database on each check."""

    registry: Registry

    def __post_init__(self) -> None:
        self.registry = Registry.of(self.registry)

    @cached_property
    def scripts(self) -> Mapping[str, Script]:
        from tecnorev.migrate.cli import make_config

        return all_scripts(ScriptDirectory.from_config(make_config(registry=self.registry)))

    def report(self, engine: sa.Engine) -> StatusReport:
        try:
            with engine.connect() as connection:
                record = read_record(connection)
                connection.rollback()
        except sa.exc.OperationalError as exc:
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            raise DatabaseUnavailable(
                f"cannot connect to the database at {describe_url(engine.url)}: {reason}"
            ) from exc
        return build_status(record, self.scripts, self.registry)


def behind(report: StatusReport) -> dict[str, list[str]]:
    """Installed modules whose code needs revisions not applied -> their pending revisions
    (contract revisions alone hold nothing up: the code runs before and after them)."""
    return {
        m.module: list(m.pending_revisions) for m in report.modules if m.installed and not m.serves
    }
