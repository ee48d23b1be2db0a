"""What ``alembic/env.py`` runs: discovered version locations, scoped autogenerate, guards
against commands whose meaning is dangerous with one branch per module, SQLite made
transactional, and on PostgreSQL the safe-apply rules of ``safety`` (a lock for concurrent
migrators, no transaction pooler, lock_timeout with retry); ``upgrade --backup`` backs up first.

Crash safety rests on one rule: everything a revision does (its DDL, its ``alembic_version``
row, its ledger row) happens in one transaction, so a migrator killed at any point leaves each
revision applied and recorded, or neither."""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from logging.config import fileConfig
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from alembic import context
from alembic.runtime.environment import EnvironmentContext
from alembic.script import ScriptDirectory
from alembic.script.revision import RevisionMap
from alembic.util import CommandError
from sqlalchemy import event, pool

from tecnorev.migrate import (
    autogen,
    autogen_phases,
    backfill,
    ledger,
    phases,
    replicas,
    safety,
    squash,
    stable_batch,
    stable_merges,
    state,
    stored,
    targets,
)
from tecnorev.migrate.connect import bounded_engine, check_connection
from tecnorev.migrate.errors import MigrationError
from tecnorev.migrate.modules import Registry, get_registry
from tecnorev.migrate.project import project, setting, url_of
from tecnorev.migrate.revisions import module_of_revision, module_of_script

if TYPE_CHECKING:
    from alembic.runtime.migration import MigrationContext, MigrationInfo

# The key of the migration lock (advisory locks are per database: each database has its own).
ADVISORY_LOCK_KEY = 7_370_432_214_561_907_302
# Set by ``tecnorev db upgrade --backup`` on the alembic Config: the folder for the backup.
BACKUP_DIR_ATTRIBUTE = "tecnorev_backup_dir"
# Set by ``tecnorev db contract`` / ``upgrade --contract``: contract revisions may run (gated).
CONTRACT_ATTRIBUTE = "tecnorev_contract"
# Set by ``upgrade --no-backfill``: declared backfills wait for ``tecnorev db backfill run``.
NO_BACKFILL_ATTRIBUTE = "tecnorev_no_backfill"
_RELATIVE = re.compile(r"^[+-]\d+$")


def point_at_modules(scripts: ScriptDirectory, registry: Registry) -> None:
    """Make ``scripts`` read the installed modules' migration folders (plain ``alembic``)."""
    locations = [str(p) for p in registry.version_locations()]
    if [str(p) for p in scripts.version_locations] == locations:
        return
    scripts.version_locations = locations
    for memo in ("_version_locations", "_singular_version_location"):
        scripts.__dict__.pop(memo, None)
    scripts.revision_map = RevisionMap(scripts._load_revisions)


def migration_engine(url: str) -> sa.Engine:
    """An engine for migrating: no pooling; on SQLite, transactional DDL and no FK actions;
    on PostgreSQL, sessions named so pg_stat_activity (and a waiting migrator) shows who we are."""
    parsed = sa.make_url(url)
    connect_args: dict[str, Any] = {}
    if parsed.get_backend_name() == "postgresql" and "application_name" not in parsed.query:
        connect_args["application_name"] = f"{project().command}"
    engine = bounded_engine(url, poolclass=pool.NullPool, connect_args=connect_args)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _connect(dbapi_connection: Any, _record: Any) -> None:
            # pysqlite commits DDL on its own and would leave half a revision behind; with
            # foreign keys on, a batch (copy-and-move) migration cascades deletes to children.
            dbapi_connection.isolation_level = None
            dbapi_connection.execute("PRAGMA foreign_keys=OFF")
            dbapi_connection.execute("PRAGMA busy_timeout=30000")

        @event.listens_for(engine, "begin")
        def _begin(conn: sa.Connection) -> None:
            # IMMEDIATE takes the write lock up front: a second migrator waits here, then
            # reads the versions the first one wrote.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def database_url(config: Any) -> str:
    """``sqlalchemy.url`` when a caller set it on the Config, else DATABASE_URL / .env."""
    return url_of(config)


def _say(message: str) -> None:
    """Tell the operator (flushed: deploy logs must show a wait while it happens)."""
    print(message, flush=True)


def _lock_enabled() -> bool:
    return (setting("MIGRATION_LOCK") or "on").lower() not in ("off", "0")


@contextmanager
def migration_lock(connection: sa.Connection, external: bool) -> Iterator[safety.HeldLock | None]:
    """Serialise migrators on PostgreSQL for the whole run (a second one waits, then finds
    nothing left to do): a session-level advisory lock on a dedicated connection, after making
    sure no transaction pooler shares sessions (``safety.session_lock``)."""
    if connection.dialect.name != "postgresql" or not _lock_enabled():
        yield None
        return
    if external:
        # The caller's transaction spans the whole run: the lock lives and dies with it.
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": ADVISORY_LOCK_KEY})
        yield None
        return
    with safety.session_lock(connection, ADVISORY_LOCK_KEY, _say) as held:
        yield held


def _command_name(env: EnvironmentContext) -> str:
    fn = env.context_opts.get("fn")
    return getattr(fn, "__name__", "")


def _x_flag(name: str) -> bool:
    return context.get_x_argument(as_dictionary=True).get(name, "").lower() in ("1", "true", "yes")


def guard_destination(env: EnvironmentContext, scripts: ScriptDirectory) -> None:
    """Refuse ``head`` and relative steps when every module has its own head."""
    destination = env.context_opts.get("destination_rev")
    if isinstance(destination, (list, tuple)) and len(destination) == 1:
        destination = destination[0]
    if not isinstance(destination, str) or len(scripts.get_heads()) < 2:
        return
    command = {"do_stamp": "stamp"}.get(_command_name(env), _command_name(env))
    if destination == "head":
        raise MigrationError(
            f"'{command} head' is ambiguous here: every module has its own head. Use "
            f"'{project().command} {command} heads' for all modules or "
            f"'{project().command} {command} <module>@head' for one (with what it depends on)."
        )
    if _RELATIVE.match(destination):
        raise MigrationError(
            f"'{command} {destination}' is ambiguous here: every module has its own branch. "
            f"Name the module: '{project().command} {command} <module>@{destination}'."
        )


def guard_downgrade(env: EnvironmentContext, scripts: ScriptDirectory, registry: Registry) -> None:
    """Refuse a downgrade that would silently revert other modules depending on the target."""
    if _command_name(env) != "downgrade" or _x_flag("cascade"):
        return
    destination = env.context_opts.get("destination_rev")
    if not isinstance(destination, str) or destination == "base":
        return
    migration_context = context.get_context()
    heads = migration_context.get_current_heads()
    fn = env.context_opts["fn"]
    steps = list(fn(heads, migration_context))
    label = destination.split("@", 1)[0] if "@" in destination else destination
    target = label if label in registry else module_of_revision(label, scripts, registry)
    dragged: dict[str, int] = {}
    for step in steps:
        owner = module_of_script(step.revision, registry)
        if owner and owner != target:
            dragged[owner] = dragged.get(owner, 0) + 1
    if dragged:
        # dependents first: the reverse of the dependency order
        ordered = [m for m in reversed(registry.names) if m in dragged]
        names = ", ".join(ordered)
        first = " then ".join(f"'{project().command} downgrade {m}@base'" for m in ordered)
        raise MigrationError(
            f"'downgrade {destination}' would also revert {names}, which depend on "
            f"{target}. Revert them first ({first}), or revert them all together with "
            f"'{project().command} downgrade {destination} --cascade'."
        )


def guard_merge(config: Any, scripts: ScriptDirectory, registry: Registry) -> None:
    opts = getattr(config, "cmd_opts", None)
    fn = getattr(opts, "cmd", (None,))[0]
    if getattr(fn, "__name__", "") != "merge":
        return
    revisions = scripts.get_revisions(getattr(opts, "revisions", None) or ())
    owners = {module_of_script(s, registry) or s.revision for s in revisions if s is not None}
    if len(owners) > 1:
        raise MigrationError(
            "merge joins two heads of ONE module (two people extended the same module); "
            f"these heads belong to {', '.join(sorted(owners))}, which are independent "
            "branches and must stay apart. To merge inside a module, name its two heads: "
            f"{project().command} merge -m '...' <module>_<a> <module>_<b>"
        )


log = logging.getLogger("tecnorev.migrate")


def _step_revisions(step: Any) -> list[str]:
    script = getattr(step, "revision", None)
    revision = getattr(script, "revision", None)
    return [revision] if isinstance(revision, str) else []


def _first_line(exc: BaseException) -> str:
    """What a failed attempt's ledger row says: the exception and the driver's first line."""
    cause = getattr(exc, "orig", None) or exc
    lines = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {lines[0] if lines else ''}".strip()


class _Recorder:
    """Writes a ledger row (and, on SQLite, checks foreign keys) after every migration step,
    inside that step's transaction."""

    def __init__(self, registry: Registry, scripts: ScriptDirectory) -> None:
        self.registry = registry
        self.scripts = scripts
        self.started = time.monotonic()
        self.table_ready = False
        # revisions whose step completed in this run (rolled back with it on SQLite)
        self.done: set[str] = set()

    def reset(self) -> None:
        """Before a revision is retried: its rolled-back transaction may have been the one
        that created the ledger table."""
        self.started = time.monotonic()
        self.table_ready = False

    def _parents(self, revision: str) -> str:
        script = self.scripts.get_revision(revision)
        if script is None:
            return ""
        parents = list(script._versioned_down_revisions)
        for dep in script._resolved_dependencies:
            parents.append(dep)
        return " ".join(parents)

    def __call__(
        self,
        ctx: MigrationContext,
        step: MigrationInfo,
        heads: Collection[Any],
        run_args: Mapping[str, Any],
    ) -> None:
        """alembic's ``on_version_apply``, called with keywords after each step."""
        targets.step_applied()
        connection = ctx.connection
        assert connection is not None  # steps are recorded online only
        if connection.dialect.name == "sqlite":
            violations = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            if violations:
                raise MigrationError(
                    f"migration left {len(violations)} rows breaking foreign keys (first: "
                    f"table {violations[0][0]!r} -> {violations[0][2]!r}); rolled back"
                )
        if not self.table_ready:
            ledger.ensure_tables(connection)
            self.table_ready = True
        now = time.monotonic()
        duration = int((now - self.started) * 1000)
        self.started = now
        direction = "upgrade" if step.is_upgrade else "downgrade"
        if step.is_stamp:
            direction = "stamp-" + direction
        for revision in step.up_revision_ids:
            self.write(connection, revision, direction, duration_ms=duration)
            self.done.add(revision)
            if step.is_upgrade:  # kept, so an older release can run its downgrade()
                script = self.scripts.get_revision(revision)
                owner = module_of_script(script, self.registry) if script else None
                stored.store(connection, revision, owner, script.path if script else None)
            elif not step.is_stamp:
                backfill.forget_revision(connection, revision)

    def write(self, connection: sa.Connection, revision: str, direction: str, **row: Any) -> None:
        script = self.scripts.get_revision(revision)
        owner = module_of_script(script, self.registry) if script else None
        distribution = self.registry[owner].distribution if owner else None
        ledger.record(
            connection,
            revision=revision,
            module=owner,
            direction=direction,
            distribution=distribution,
            parents=self._parents(revision),
            path=script.path if script else None,
            **row,
        )

    def failed(self, env: EnvironmentContext, connection: sa.Connection, error: str) -> None:
        """Record the revision that failed, after the rollback, in a transaction of its own:
        the first step still pending that this run did not complete."""
        migration_context = context.get_context()
        try:
            connection.rollback()
            heads = migration_context.get_current_heads()
            steps = list(env.context_opts["fn"](heads, migration_context))
            pending = [r for s in steps for r in _step_revisions(s) if r not in self.done]
            connection.rollback()  # the reads above began a transaction
            if not pending:
                return
            with connection.begin():
                ledger.ensure_tables(connection)
                direction = "failed-" + ("upgrade" if steps[0].is_upgrade else "downgrade")
                self.write(connection, pending[0], direction, note=error)
        except sa.exc.SQLAlchemyError as exc:  # never hide the failure being reported
            log.warning("the failed attempt could not be recorded in the ledger: %s", exc)
        finally:
            if connection.in_transaction():
                connection.rollback()


def _cli_command(config: Any) -> str | None:
    fn = getattr(getattr(config, "cmd_opts", None), "cmd", (None,))[0]
    return getattr(fn, "__name__", None)


def _configure_options(
    env: EnvironmentContext, registry: Registry, scripts: ScriptDirectory
) -> dict[str, Any]:
    revision_context = env.context_opts.get("revision_context")
    options: dict[str, Any] = {
        "render_item": autogen.render_item,
        "render_as_batch": True,
        "compare_type": True,
    }
    if revision_context is None:
        return options
    args = revision_context.command_args
    autogenerate = bool(args.get("autogenerate"))
    metadata = registry.load_models() if autogenerate else None
    owners = registry.table_owners if autogenerate else None
    scope = autogen.scope_from_head(args.get("head"), args.get("branch_label"), registry, scripts)
    command = _cli_command(env.config)
    creating = command == "revision" or (command is None and args.get("message") is not None)
    options.update(
        target_metadata=metadata,
        include_object=autogen.make_include_object(owners or {}, scope, metadata),
        process_revision_directives=autogen.make_process_revision_directives(
            registry,
            scripts,
            metadata,
            owners,
            keep_rev_id=bool(args.get("rev_id")),
            creating=creating,
            skip_empty=bool(env.config.attributes.get("tecnorev_skip_empty")),
            phases=env.config.attributes.get(autogen_phases.PHASES),
        ),
    )
    return options


def _pending_revision(env: EnvironmentContext, connection: sa.Connection) -> str:
    """The first revision still to run: after a failure, the one that failed."""
    migration_context = context.get_context()
    try:
        heads = migration_context.get_current_heads()
        steps = list(env.context_opts["fn"](heads, migration_context))
    except sa.exc.DBAPIError:
        steps = []  # only for the message: never hide the failure being reported
    finally:
        connection.rollback()
    return steps[0].revision.revision if steps else "a revision"


def _give_up(
    revision: str, policy: safety.LockTimeout, blockers: list[safety.Blocker]
) -> MigrationError:
    timeout, retries = (project().setting_name(n) for n in ("LOCK_TIMEOUT", "LOCK_RETRIES"))
    pids = " or ".join(f"SELECT pg_terminate_backend({b.pid})" for b in blockers)
    ending = f" ({pids} ends it)" if pids else ""
    return MigrationError(
        f"revision {revision} could not get the locks it needs: its DDL waited "
        f"{policy.describe()} ({timeout}) on each of {policy.attempts} attempts, "
        f"so queries on the tables it alters were never held up longer than that. Blocked by "
        f"{safety.describe_blockers(blockers)}. Nothing of {revision} was kept (revisions "
        f"before it in this run are applied). Let that transaction finish or end it{ending}, "
        f"then run the upgrade again; raise {timeout} or {retries} "
        "to wait longer."
    )


def _run_migrations(
    env: EnvironmentContext,
    connection: sa.Connection,
    policy: safety.LockTimeout | None,
    held: safety.HeldLock | None,
    recorder: _Recorder,
) -> None:
    """Run the pending revisions.  On PostgreSQL each revision's transaction sets
    lock_timeout; a revision that timed out waiting for a lock was rolled back whole by alembic
    (earlier ones stay committed), so running again resumes with it, after a backoff."""
    if policy is None or not policy.enabled:
        context.run_migrations()
        return
    migrator_pid = held.migrator_pid if held else safety.backend_pid(connection)
    interval = min(0.1, policy.milliseconds / 3000)
    watch = safety.BlockerWatch(held.connection if held else None, migrator_pid, interval)
    with safety.lock_timeout_per_transaction(connection, policy), watch:
        for attempt in range(1, policy.attempts + 1):
            watch.forget()
            try:
                context.run_migrations()
                return
            except sa.exc.DBAPIError as exc:
                if not safety.is_lock_timeout(exc):
                    raise
                revision = _pending_revision(env, connection)
                blockers = watch.blockers(connection, policy)
                if attempt == policy.attempts:
                    raise _give_up(revision, policy, blockers) from exc
            delay = policy.delay_before(attempt + 1)
            _say(
                f"revision {revision}: a lock was not granted within {policy.describe()}, "
                f"blocked by {safety.describe_blockers(blockers)}; rolled back, retrying in "
                f"{delay:g}s (attempt {attempt + 1} of {policy.attempts})"
            )
            recorder.reset()
            time.sleep(delay)


def _run_online(
    env: EnvironmentContext,
    connection: sa.Connection,
    options: dict[str, Any],
    registry: Registry,
    scripts: ScriptDirectory,
) -> None:
    external = connection.in_transaction()
    is_sqlite = connection.dialect.name == "sqlite"
    # Retrying needs transactions of our own: never inside a caller's, never on SQLite (one
    # transaction for the whole run, and busy_timeout instead of lock_timeout).
    policy = None if external or is_sqlite else safety.LockTimeout.from_env()
    with migration_lock(connection, external) as held:
        backup_dir = env.config.attributes.get(BACKUP_DIR_ATTRIBUTE)
        if backup_dir is not None:
            # Under the lock and before any write: the backup is the state this run starts from.
            from tecnorev.migrate.backup import backup_database

            path = backup_database(connection.engine.url, Path(backup_dir))
            _say(f"backed up the database to {path}")
        _settle_squashes(env, connection, registry, scripts)
        restored = state.restore_forgotten(connection, scripts)
        if restored:
            print(f"restored the record of {', '.join(restored)} (module installed again)")
        state.check_recorded_versions(connection, scripts)
        replicas.ensure_table(connection)
        if not external:
            # alembic would treat a transaction opened by these reads as the caller's and
            # never commit it (an upgrade then leaves alembic_version empty).
            connection.commit()
        recorder = _Recorder(registry, scripts)
        context.configure(
            connection=connection,
            # SQLite: one transaction for the run, so BEGIN IMMEDIATE serialises migrators.
            transaction_per_migration=not is_sqlite,
            transactional_ddl=True,  # true on SQLite too, thanks to the migration engine
            on_version_apply=recorder,
            **options,
        )
        guard_downgrade(env, scripts, registry)
        plan_phases(env, connection, registry, scripts, policy)
        try:
            with context.begin_transaction():
                _run_migrations(env, connection, policy, held, recorder)
        except phases.ContractRefused:
            raise  # nothing was attempted
        except Exception as exc:
            # a run that applies revisions (not autogenerate's comparison, which runs none)
            if not external and env.context_opts.get("revision_context") is None:
                recorder.failed(env, connection, _first_line(exc))
            raise
        if _command_name(env) == "upgrade" and not external:
            _run_backfills(env, connection, policy)


def plan_phases(
    env: EnvironmentContext,
    connection: sa.Connection | None,
    registry: Registry,
    scripts: ScriptDirectory,
    policy: safety.LockTimeout | None = None,
) -> None:
    """Phases for an upgrade.  On PostgreSQL only expand revisions run, unless contract was
    asked for; then the replicas are checked before anything runs.  Before each contract
    revision that runs (SQLite runs both phases), the backfills declared before it run, and
    it is refused if one is unfinished."""
    if _command_name(env) != "upgrade":
        return
    migration_context = context.get_context()
    one_phase = migration_context.dialect.name == "sqlite"
    contract = one_phase or bool(env.config.attributes.get(CONTRACT_ATTRIBUTE))
    found: dict[str, Any] = {}

    def everything() -> dict[str, Any]:
        if not found:
            from tecnorev.migrate.status import all_scripts

            found.update(all_scripts(scripts))
        return found

    said: set[str] = set()

    def on_hold(held: dict[str, str]) -> None:
        fresh = sorted(set(held) - said)
        if not fresh:
            return
        said.update(fresh)
        contracts = sorted(set(held.values()))
        after = [r for r in fresh if r not in contracts]
        also = f" and {len(after)} revision(s) after them ({', '.join(after)})" if after else ""
        message = (
            f"held back contract revision(s) {', '.join(contracts)}{also}: they run with "
            f"'{project().command} contract' once every replica runs the new release"
        )
        if migration_context.as_sql:
            print(message, file=sys.stderr)  # stdout is the SQL
        else:
            _say(message)

    def up_front(planned: list[Any]) -> None:
        if connection is not None and not one_phase:
            phases.check_contract(connection, planned, everything(), registry, replicas_only=True)
            if connection.in_transaction():
                connection.commit()  # alembic starts the first revision's transaction itself

    def before_contract(script: Any) -> None:
        if connection is None:
            return  # --sql: nothing runs
        if not env.config.attributes.get(NO_BACKFILL_ATTRIBUTE):
            pending = backfill.unfinished(connection)
            if pending:
                backfill.run_pending(
                    connection, backfill.pace(policy), inline=connection.in_transaction()
                )
        phases.check_contract(connection, [script], everything(), registry)

    planner = migration_context._migrations_fn
    assert planner is not None  # an upgrade's context has alembic's step planner
    migration_context._migrations_fn = phases.phased(
        planner,
        on_hold=None if contract else on_hold,
        up_front=up_front,
        before_contract=before_contract,
    )


def _run_backfills(
    env: EnvironmentContext, connection: sa.Connection, policy: safety.LockTimeout | None
) -> None:
    """The backfills the upgrade declared (or an interrupted run left), batch by batch."""
    if connection.in_transaction():
        connection.commit()
    waiting = backfill.unfinished(connection)
    if connection.in_transaction():
        connection.commit()
    if not waiting:
        return
    if env.config.attributes.get(NO_BACKFILL_ATTRIBUTE):
        names = ", ".join(b.label for b in waiting)
        _say(f"backfills not run (--no-backfill): {names}; '{project().command} backfill run'")
        return
    backfill.run_pending(connection, backfill.pace(policy))


# Set on the alembic Config: show every squash's originals (verify's equivalence check).
ORIGINALS_ATTRIBUTE = "tecnorev_originals"


def _settle_squashes(
    env: EnvironmentContext, connection: sa.Connection, registry: Registry, scripts: ScriptDirectory
) -> None:
    """Show the squashes or their originals as this database needs; a database on the last
    original of a range whose files are gone now stands on the squash (recorded in the ledger)."""
    versions = state.recorded_versions(connection)
    wanted = bool(env.config.attributes.get(ORIGINALS_ATTRIBUTE))
    chosen = squash.choose_view(scripts, versions, originals=wanted)
    if chosen.refusal():
        raise MigrationError(chosen.refusal())
    for done in chosen.settle:
        connection.execute(
            sa.text(f"UPDATE {state.VERSION_TABLE} SET version_num = :new WHERE version_num = :o"),
            {"new": done.revision, "o": done.tip},
        )
        ledger.ensure_tables(connection)
        _Recorder(registry, scripts).write(
            connection,
            done.revision,
            "stamp-upgrade",
            note=f"stands for {len(done.originals)} revisions applied one by one, "
            f"{done.originals[0]} to {done.tip}",
        )
        script = scripts.get_revision(done.revision)
        stored.store(connection, done.revision, module_of_script(script, registry), script.path)
        _say(f"{done.tip}, the last revision {done.revision} squashes, is recorded as the squash")


_logging_configured = False


def _configure_logging(config: Any) -> None:
    """The ini file's logging, once per process, unless the caller wants alembic quiet."""
    global _logging_configured
    if config.attributes.get("tecnorev_quiet"):
        logging.getLogger("alembic").setLevel(logging.WARNING)
        return
    if _logging_configured or config.config_file_name is None:
        return
    _logging_configured = True
    if config.file_config.has_section("loggers"):
        fileConfig(config.config_file_name, disable_existing_loggers=False)
    else:  # an ini without logging sections: alembic's progress lines, as with no ini
        logging.basicConfig(
            level=logging.WARNING, format="%(levelname)-5.5s [%(name)s] %(message)s"
        )
        logging.getLogger("alembic").setLevel(logging.INFO)


def run() -> None:
    """Entry point for ``env.py``."""
    stable_batch.install()
    stable_merges.install()
    squash.install()
    _configure_logging(context.config)
    # the EnvironmentContext alembic installed (alembic.context's stub leaves _proxy out)
    env: EnvironmentContext = context._proxy  # type: ignore[attr-defined]
    config = context.config
    registry = get_registry()
    scripts = env.script
    point_at_modules(scripts, registry)
    if config.attributes.get(ORIGINALS_ATTRIBUTE):
        squash.choose_view(scripts, (), originals=True)
    try:
        guard_merge(config, scripts, registry)
        guard_destination(env, scripts)
        options = _configure_options(env, registry, scripts)
        revision_context = env.context_opts.get("revision_context")
        if revision_context is not None and not revision_context.command_args.get("autogenerate"):
            # A hand-written revision needs no database: only the id and folder rules apply.
            options["process_revision_directives"](None, None, revision_context.generated_revisions)
            return
        if context.is_offline_mode():
            if config.attributes.get(BACKUP_DIR_ATTRIBUTE) is not None:
                raise MigrationError(
                    "--backup needs a database connection; with --sql nothing is run, so "
                    "there is nothing to back up"
                )
            context.configure(
                url=database_url(config),
                literal_binds=True,
                dialect_opts={"paramstyle": "named"},
                transaction_per_migration=True,
                **options,
            )
            plan_phases(env, None, registry, scripts)
            with context.begin_transaction():
                context.run_migrations()
            return
        connection = config.attributes.get("connection")
        if connection is not None:
            _run_online(env, connection, options, registry, scripts)
            return
        engine = migration_engine(database_url(config))
        try:
            check_connection(engine)
            with engine.connect() as connection:
                _run_online(env, connection, options, registry, scripts)
        finally:
            engine.dispose()
    except MigrationError as exc:
        # alembic prints a CommandError as "FAILED: ..." without a traceback.
        raise CommandError(str(exc)) from exc
    except CommandError as exc:
        if str(exc) == "Target database is not up to date.":
            raise CommandError(
                "the database is not at every module's head, and autogenerate compares "
                f"against it: run '{project().command} upgrade heads' first (on PostgreSQL "
                f"'{project().command} upgrade heads --contract' also applies the contract "
                "revisions that upgrade holds back)"
            ) from exc
        raise
