"""``tecnorev db downgrade <module>@<revision>`` when the database is ahead of the installed
code: the revisions the code lacks are run back from their stored sources first (see
:mod:`tecnorev.migrate.stored`), then Alembic's downgrade goes on to the target as usual."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tecnorev.migrate.errors import MigrationError

if TYPE_CHECKING:
    import sqlalchemy as sa
    from alembic.config import Config

    from tecnorev.migrate.modules import Registry
    from tecnorev.migrate.stored import StepBack


def planned_step(
    config: Config, connection: sa.Connection, target: str | None, registry: Registry
) -> StepBack | None:
    """The stored revisions to run back before ``downgrade target``, if the database is ahead
    of the installed code for the target's module."""
    from alembic.script import ScriptDirectory

    from tecnorev.migrate import status, stored

    module, sep, rest = (target or "").partition("@")
    if not sep or module not in registry:
        return None
    scripts = status.all_scripts(ScriptDirectory.from_config(config))
    record = status.read_record(connection)
    step = stored.plan(connection, module, record.versions, scripts, record.applied)
    if step is not None and (rest.startswith(("-", "+")) or rest in ("", "head", "heads")):
        raise MigrationError(
            f"the database is ahead of the installed {module} ({', '.join(step.revisions)}): "
            f"name the revision to go back to, such as {module}@{step.lands_on or 'base'}"
        )
    return step


def step_back_if_ahead(config: Config, target: str | None, registry: Registry) -> str | None:
    """What was run back, for the operator; ``None`` when the database was not ahead."""
    from tecnorev.migrate import stored
    from tecnorev.migrate.commands._connect import migration_connection

    with migration_connection(config, lock=True) as connection:
        step = planned_step(config, connection, target, registry)
        connection.rollback()  # the reads began a transaction; each step back has its own
        if step is None:
            return None
        stored.run_back(connection, step, registry)
    return (
        f"{step.module}: ran the stored downgrade() of {', '.join(step.revisions)} (their files "
        f"are not installed); now at {step.lands_on or 'base'}"
    )
