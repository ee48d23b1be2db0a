"""``tecnorev db`` (or ``tecnorev-migrate``): alembic's own command line, seeing exactly the
installed modules.

Every alembic command keeps its name, options and meaning; the version locations come from
the project's entry-point group (see ``tecnorev.migrate.project``).  Our own commands
(``commands/``) use names alembic does not have.
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
from importlib.util import find_spec
from pathlib import Path

from alembic.config import CommandLine, Config
from alembic.util import CommandError

from tecnorev.migrate import commands
from tecnorev.migrate.errors import MigrateError
from tecnorev.migrate.modules import Registry, get_registry
from tecnorev.migrate.project import debug as debug_enabled
from tecnorev.migrate.project import project


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

    def display_version(rev, context):  # noqa: ANN001, ANN202 - alembic's callback shape
        if verbose:
            config.print_stdout(
                "Current revision(s) for %s:",
                util.obfuscate_url_pw(context.connection.engine.url),
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
    if find_spec("ruff") is not None:  # format new revisions as the project formats code
        config.set_section_option("post_write_hooks", "hooks", "ruff_format")
        config.set_section_option("post_write_hooks", "ruff_format.type", "module")
        config.set_section_option("post_write_hooks", "ruff_format.module", "ruff")
        config.set_section_option(
            "post_write_hooks", "ruff_format.options", "format REVISION_SCRIPT_FILENAME"
        )
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
    def _generate_args(self, prog: str | None) -> None:
        super()._generate_args(prog)
        for name in commands.COMMANDS:
            command = commands.load(name)
            parser = self.subparsers.add_parser(command.NAME, help=command.HELP)
            command.add_arguments(parser)
            parser.set_defaults(cmd=(command.run, [], []), tecnorev_command=command)
        alembic_current = self.subparsers.choices["current"].get_default("cmd")
        self.subparsers.choices["current"].set_defaults(cmd=(current, *alembic_current[1:]))
        self.subparsers.choices["downgrade"].add_argument(
            "--cascade",
            action="store_true",
            help="also revert the modules that depend on the target (named when refused)",
        )
        upgrade = self.subparsers.choices["upgrade"]
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

        from tecnorev.migrate.autogen import describe_diff

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
            lines = "\n".join(f"  - {describe_diff(d)}" for d in exc.diffs)
            print(
                f"FAILED: the models differ from the migrations:\n{lines}\n"
                "Generate a revision for the module concerned: "
                f"{project().command} revision --autogenerate --head <module>@head -m '...'",
                file=sys.stderr,
            )
            sys.exit(1)
        except CommandError as exc:
            if options.raiseerr:
                raise
            print(f"FAILED: {exc}", file=sys.stderr)
            sys.exit(1)

    def main(self, argv: Sequence[str] | None = None) -> None:
        options = self.parser.parse_args(argv)
        if not hasattr(options, "cmd"):
            self.parser.error("too few arguments")
        if getattr(options, "cascade", False):
            options.x = [*(options.x or []), "cascade=true"]
        registry = get_registry()
        if not registry.modules and options.cmd[0].__name__ not in ("init", "list_templates"):
            group = project().entry_point_group
            raise MigrateError(
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
        if config.config_file_name is None and not options.quiet:
            logging.basicConfig(
                level=logging.INFO, format="%(levelname)-5.5s [%(name)s] %(message)s"
            )
            for noisy in ("alembic.runtime.plugins", "alembic.ddl.postgresql"):
                logging.getLogger(noisy).setLevel(logging.WARNING)
        if getattr(options, "backup", False):
            from tecnorev.migrate.environment import BACKUP_DIR_ATTRIBUTE

            config.attributes[BACKUP_DIR_ATTRIBUTE] = options.backup_dir
        if getattr(options, "contract", False):
            from tecnorev.migrate.environment import CONTRACT_ATTRIBUTE

            config.attributes[CONTRACT_ATTRIBUTE] = True
        if getattr(options, "no_backfill", False):
            from tecnorev.migrate.environment import NO_BACKFILL_ATTRIBUTE

            config.attributes[NO_BACKFILL_ATTRIBUTE] = True
        if options.cmd[0].__name__ == "merge" and not options.rev_id:
            options.rev_id = _merge_rev_id(config, options)
        if options.cmd[0].__name__ == "downgrade" and not getattr(options, "sql", False):
            from tecnorev.migrate.stepback import step_back_if_ahead

            stepped = step_back_if_ahead(config, options.revision, registry)
            if stepped:
                print(stepped, flush=True)
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
    if len(owners) == 1 and None not in owners:
        return new_revision_id(owners.pop())
    return None


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


def main(argv: Sequence[str] | None = None) -> int:
    try:
        debug = debug_enabled()
    except MigrateError:
        debug = False  # the same error comes again, with its message, from the command
    try:
        DbCommandLine(prog=project().command).main(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    except MigrateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # the reader went away (``tecnorev db upgrade heads --sql | head``): not a failure of
        # ours; point stdout at devnull so the interpreter's final flush stays quiet
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except CommandError as exc:  # --raiseerr, or raised outside alembic's own handler
        if debug:
            raise
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        if debug:
            raise
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
        print(
            f"FAILED: {type(exc).__name__}: {detail}{where}.{kept}\n"
            f"Set {project().setting_name('DEBUG')}=1 to see the full traceback.",
            file=sys.stderr,
        )
        return 1
    return 0


def entry() -> None:
    """The ``tecnorev-migrate`` console script: the same commands, without a project's CLI."""
    sys.exit(main())
