"""``tecnorev db`` (or ``tecnorev-migrate``): alembic's commands, seeing exactly the installed
modules, and ours, on the same click command line as the rest of ``tecnorev``.

Every alembic command keeps its name, options and meaning; the version locations come from
the project's entry-point group (see ``tecnorev.migrate.project``).  Our own commands
(``commands/``) use names alembic does not have.  Exit codes and messages follow
:mod:`tecnorev.migrate.exitcodes`.
Without an ``alembic.ini`` in the working directory the environment shipped in this package
is used, so installed wheels migrate from any directory.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from argparse import Namespace
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from alembic.config import CommandLine, Config
from alembic.util import CommandError

from tecnorev.migrate import commands
from tecnorev.migrate.commandline import app_of, run_click
from tecnorev.migrate.errors import DiscoveryError, MigrateError, MigrationError
from tecnorev.migrate.modules import Registry, get_registry
from tecnorev.migrate.project import debug as debug_enabled
from tecnorev.migrate.project import project

if TYPE_CHECKING:
    from alembic.runtime.migration import MigrationContext


def current(config: Config, check_heads: bool = False, verbose: bool = False) -> None:
    """Display the current revision of every installed module (alembic's ``current``, one
    labelled line per module, in dependency order)."""
    from alembic import util
    from alembic.runtime.environment import EnvironmentContext
    from alembic.script import ScriptDirectory

    from tecnorev.migrate.revisions import module_of_script

    scripts = ScriptDirectory.from_config(config)
    registry = get_registry()
    order = {name: i for i, name in enumerate(registry.names)}

    def display_version(rev: tuple[str, ...], context: MigrationContext) -> list[Any]:
        if verbose:
            assert context.connection is not None  # current reads the database
            config.print_stdout(
                "Current revision(s) for %s:",
                # as util.obfuscate_url_pw renders it (that one is typed for a str)
                context.connection.engine.url.render_as_string(hide_password=True),
            )
        if check_heads and set(context.get_current_heads()) != set(scripts.get_heads()):
            raise util.DatabaseNotAtHead("Database is not on all head revisions")
        applied = sorted(
            scripts.get_all_current(rev),
            key=lambda s: order.get(module_of_script(s, registry) or "", len(order)),
        )
        for script in applied:
            config.print_stdout(script.cmd_format(verbose, include_branches=True))
        return []

    with EnvironmentContext(config, scripts, fn=display_version, dont_mutate=True):
        scripts.run_env()


def plain(line: str) -> str:
    """Alembic's "(effective head)" is a module's newest revision that another module's
    revision depends on: for a user, the head of its module like any other."""
    return line.replace(" (effective head)", " (head)")


def _speak_plainly(config: Config) -> None:
    """Every line a command prints (heads, current, history, show) in plain words."""
    print_stdout = config.print_stdout

    def plainly(text: str, *arg: object) -> None:
        print_stdout(plain(text % arg if arg else text))

    config.print_stdout = plainly  # type: ignore[method-assign]


def init(config: Config | None = None) -> None:
    """``alembic init`` has nothing to set up here: refuse, naming what to do instead."""
    command = project().command
    raise MigrationError(
        f"'{command} init' is not needed: the migration environment ships with "
        "tecnorev-migrate and each module carries its own migrations folder. Start a module "
        f"with 'tecnorev module new <name>', then '{command} generate <name> -m '...''"
    )


def packaged_script_location() -> str:
    return str(resources.files("tecnorev.migrate").joinpath("alembic_env"))


def make_config(
    ini: str | None = None,
    registry: Registry | None = None,
    options: Namespace | None = None,
    toml: str | None = None,
    section: str = "alembic",
    url: str | None = None,
    scratch: bool = False,
) -> Config:
    """An alembic Config whose version locations are the installed modules' branches.

    ``ini`` defaults to ``./alembic.ini`` when it exists, else the packaged environment.
    ``scratch``: for a throwaway database, which no replica serves, so ``upgrade`` runs the
    contract revisions too."""
    from tecnorev.migrate import squash

    squash.install()  # every ScriptDirectory made from it shows squashes
    registry = Registry.of(registry) if registry is not None else get_registry()
    if ini is None and Path("alembic.ini").is_file():
        ini = "alembic.ini"
    config = Config(file_=ini, toml_file=toml, ini_section=section, cmd_opts=options)
    if ini is None:
        config.set_main_option("script_location", packaged_script_location())
        config.set_main_option("revision_environment", "true")
    if not config.get_section("post_write_hooks", {}).get("hooks"):
        # ruff is a dependency: new revisions are formatted as the project formats code
        from tecnorev.migrate.formatting import HOOK, register_hook

        register_hook()
        config.set_section_option("post_write_hooks", "hooks", HOOK)
        config.set_section_option("post_write_hooks", f"{HOOK}.type", HOOK)
    config.set_main_option("path_separator", "os")
    if url:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    locations = os.pathsep.join(str(p) for p in registry.version_locations())
    config.set_main_option("version_locations", locations.replace("%", "%%"))
    if scratch:
        from tecnorev.migrate.environment import CONTRACT_ATTRIBUTE

        config.attributes[CONTRACT_ATTRIBUTE] = True
    return config


class DbCommandLine(CommandLine):
    """Alembic's argparse definitions with ours added: the source of the click commands."""

    def _generate_args(self, prog: str | None) -> None:
        super()._generate_args(prog)
        for name in commands.COMMANDS:
            command = commands.load(name)
            parser = self.subparsers.add_parser(command.NAME, help=command.HELP)
            command.add_arguments(parser)
            parser.set_defaults(cmd=(command.run, [], []), tecnorev_command=command)
        choices = self.subparsers.choices
        alembic_current = choices["current"].get_default("cmd")
        choices["current"].set_defaults(cmd=(current, *alembic_current[1:]))
        # alembic's init, taking no arguments here since it only says what to do instead
        del choices["init"]
        self.subparsers._choices_actions = [
            a for a in self.subparsers._choices_actions if a.dest != "init"
        ]
        refused = self.subparsers.add_parser("init", help="not needed here: says what to do")
        refused.set_defaults(cmd=(init, [], []))
        downgrade = choices["downgrade"]
        downgrade.add_argument(
            "--cascade",
            action="store_true",
            help="also revert the modules that depend on the target (named when refused)",
        )
        downgrade.add_argument(
            "--dry-run",
            action="store_true",
            help="list the tables and columns the downgrade would drop, with their row "
            "counts, and change nothing",
        )
        downgrade.add_argument(
            "-y",
            "--yes",
            action="store_true",
            help="drop tables and columns holding rows without asking",
        )
        upgrade = choices["upgrade"]
        upgrade.add_argument(
            "--backup",
            action="store_true",
            help="back the database up first (pg_dump -Fc, or SQLite's backup API)",
        )
        upgrade.add_argument(
            "--backup-dir", default="backups", help="where --backup writes (default: ./backups)"
        )
        upgrade.add_argument(
            "--contract",
            action="store_true",
            help="also apply contract revisions (as 'contract' does, gated the same way)",
        )
        upgrade.add_argument(
            "--no-backfill",
            action="store_true",
            help="leave declared backfills for 'backfill run' instead of running them now",
        )

    def run_cmd(self, config: Config, options: Namespace) -> None:
        from alembic.util.exc import AutogenerateDiffsDetected

        fn, positional, kwarg = options.cmd
        own = getattr(options, "tecnorev_command", None)
        try:
            if own is not None:
                sys.exit(own.run(config, options))
            fn(
                config,
                *[getattr(options, k, None) for k in positional],
                **{k: getattr(options, k, None) for k in kwarg},
            )
        except AutogenerateDiffsDetected as exc:
            if options.raiseerr:
                raise
            from tecnorev.migrate.drift import explain_diffs

            raise MigrationError(explain_diffs(config, exc.diffs)) from exc

    def run(self, options: Namespace) -> None:
        """Run one parsed command (the ``Namespace`` argparse would have made)."""
        try:
            self._run(options)
        except CommandError as exc:  # alembic's refusals, also from our pre-flight steps
            if options.raiseerr:
                raise
            if isinstance(exc.__cause__, MigrateError):  # env.py's form of our errors
                raise exc.__cause__ from None
            raise MigrationError(str(exc)) from exc

    def _run(self, options: Namespace) -> None:
        if getattr(options, "cascade", False):
            options.x = [*(options.x or []), "cascade=true"]
        name = options.cmd[0].__name__
        if name == "init":
            init()
        registry = get_registry()
        if not registry.modules and name != "list_templates":
            group = project().entry_point_group
            raise DiscoveryError(
                f"no module is installed (entry point group {group!r}), so there are no "
                "migrations to work with: install a module's distribution"
            )
        toml, ini = self._inis_from_config(options)
        explicit_ini = bool(options.config) or bool(os.environ.get("ALEMBIC_CONFIG"))
        config = make_config(
            ini if explicit_ini or Path(ini).is_file() else None,
            registry,
            options,
            toml=toml if Path(toml).is_file() else None,
            section=options.name,
        )
        _speak_plainly(config)
        if config.config_file_name is None and not options.quiet:
            logging.basicConfig(
                level=logging.INFO, format="%(levelname)-5.5s [%(name)s] %(message)s"
            )
            for noisy in ("alembic.runtime.plugins", "alembic.ddl.postgresql"):
                logging.getLogger(noisy).setLevel(logging.WARNING)
        from tecnorev.migrate.targets import check_targets

        if getattr(options, "tecnorev_command", None) is None:  # ours check their own
            check_targets(config, options, registry)
        if getattr(options, "backup", False):
            from tecnorev.migrate.environment import BACKUP_DIR_ATTRIBUTE

            config.attributes[BACKUP_DIR_ATTRIBUTE] = options.backup_dir
        if getattr(options, "contract", False):
            from tecnorev.migrate.environment import CONTRACT_ATTRIBUTE

            config.attributes[CONTRACT_ATTRIBUTE] = True
        if getattr(options, "no_backfill", False):
            from tecnorev.migrate.environment import NO_BACKFILL_ATTRIBUTE

            config.attributes[NO_BACKFILL_ATTRIBUTE] = True
        if name == "merge" and not options.rev_id:
            options.rev_id = _merge_rev_id(config, options)
        if name == "downgrade" and not options.sql:
            from tecnorev.migrate.losses import confirm_losses
            from tecnorev.migrate.stepback import step_back_if_ahead

            dry_run, yes = options.dry_run, options.yes
            if not confirm_losses(config, options.revision, dry_run=dry_run, yes=yes):
                return
            stepped = step_back_if_ahead(config, options.revision, registry)
            if stepped:
                print(stepped, flush=True)
        if name == "upgrade" and not options.sql:
            from tecnorev.migrate.targets import say_when_nothing_to_do

            with say_when_nothing_to_do(config, options.revision):
                self.run_cmd(config, options)
            return
        self.run_cmd(config, options)


def _merge_rev_id(config: Config, options: Namespace) -> str | None:
    from alembic.script import ScriptDirectory

    from tecnorev.migrate.revisions import module_of_script, new_revision_id

    try:
        scripts = ScriptDirectory.from_config(config)
        revisions = scripts.get_revisions(options.revisions)
    except CommandError:
        return None
    owners = {module_of_script(s, get_registry()) for s in revisions if s is not None}
    owner = owners.pop() if len(owners) == 1 else None
    return None if owner is None else new_revision_id(owner)


def _migration_frame(exc: BaseException) -> str:
    """'file:line' of the innermost frame inside a migration folder, if any."""
    try:
        folders = [str(p) for p in get_registry().version_locations()]
    except MigrateError:
        return ""
    found = ""
    for frame in traceback.extract_tb(exc.__traceback__):
        if any(frame.filename.startswith(folder) for folder in folders):
            found = f" (in {frame.filename}, line {frame.lineno})"
    return found


def command(prog: str | None = None) -> typer.Typer:
    """The ``db`` command group: alembic's commands and ours."""
    import inspect
    from typing import Annotated

    from tecnorev.migrate.versions import print_versions

    def show_versions(value: bool) -> None:
        if value:
            print_versions()
            raise typer.Exit(0)

    version = inspect.Parameter(
        "version",
        inspect.Parameter.KEYWORD_ONLY,
        default=False,
        annotation=Annotated[
            bool,
            typer.Option(
                "--version",
                is_eager=True,
                callback=show_versions,
                help="the installed versions of the tecnorev distributions",
            ),
        ],
    )
    line = DbCommandLine(prog=prog or project().command)
    return app_of(
        "Migrations: alembic's commands, seeing every installed module's branch, and Tecno "
        "Rev's own (status, generate, lint, ...).",
        line.parser,
        line.run,
        extra=[version],
    )


def explain_unexpected(exc: Exception) -> str:
    """The one-paragraph message for an error no command turned into one of ours."""
    import sqlalchemy.exc

    if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.orig is not None:
        detail = str(exc.orig).strip()
    else:
        detail = str(exc).strip()
    where = _migration_frame(exc)
    kept = (
        " The failing revision's transaction was rolled back (steps it ran in an "
        "autocommit block, such as a concurrent index, are committed as they go)."
        if where
        else ""
    )
    return (
        f"{type(exc).__name__}: {detail}{where}.{kept}\n"
        f"Set {project().setting_name('DEBUG')}=1 to see the full traceback."
    )


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    try:
        debug = debug_enabled()
    except MigrateError:
        debug = False  # the same error comes again, with its message, from the command
    prog = prog or project().command
    group = typer.main.get_command(command(prog))
    return run_click(group, argv, prog, debug=debug, unexpected=explain_unexpected)


def entry() -> None:
    """The ``tecnorev-migrate`` console script: the same commands, without a project's CLI."""
    sys.exit(main())
