"""The ``tecnorev`` command: a shell whose command groups come from installed distributions.

The installed modules' descriptors name their command groups (``Module.commands``); two
entry-point groups add those of other distributions:

- ``tecnorev.cli``: a Typer app (a group of commands) or a function (one command);
- ``tecnorev.cli.argv``: a command line of its own, ``fn(argv) -> exit code``, reached without
  loading the rest of the CLI.  ``tecnorev db`` is one (tecnorev-migrate's), so it costs little
  more than plain ``alembic``.  When the function's module also has ``command(prog)``
  returning its click command, that command is mounted for help and shell completion.

Every command's exit codes and ``error:`` messages follow :mod:`tecnorev.migrate.exitcodes`.

No ``from __future__ import annotations`` here: typer reads the ``Annotated`` options of the
commands defined inside ``_build_app`` at run time, where ``typer`` is a local name.
"""

import importlib
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated, Any

CLI_ENTRY_POINT_GROUP = "tecnorev.cli"
ARGV_ENTRY_POINT_GROUP = "tecnorev.cli.argv"


def _build_app() -> Any:  # typer's own copy of click's Command (typer._click is private)
    import typer

    from tecnorev.core.errors import ConfigError, TecnorevError
    from tecnorev.core.registry import get_registry

    app = typer.Typer(no_args_is_help=True)

    @app.callback()
    def root(
        _version: Annotated[
            bool,
            typer.Option(
                "--version",
                is_eager=True,
                callback=_show_versions,
                help="the installed versions of the tecnorev distributions",
            ),
        ] = False,
    ) -> None:
        """Tecno Rev: a modular retail backend.  'tecnorev db --help' for migrations."""

    @app.command("modules")
    def modules() -> None:
        """List the installed modules in dependency order."""
        for module in get_registry().modules:
            deps = ", ".join(module.depends_on) or "-"
            version = _version(module.distribution)
            typer.echo(f"{module.name:<12} {version:<10} depends on: {deps}")

    module_app = typer.Typer(help="Create domain modules.", no_args_is_help=True)
    app.add_typer(module_app, name="module")

    @module_app.command("new")
    def module_new(
        name: str,
        path: Annotated[
            Path | None,
            typer.Option(help="where to create it (default: ./packages if it exists, else .)"),
        ] = None,
        depends_on: Annotated[
            str,
            typer.Option("--depends-on", help="comma-separated installed modules it depends on"),
        ] = "auth",
        description: Annotated[str, typer.Option(help="one line")] = "a Tecno Rev domain module",
    ) -> None:
        """Scaffold a new domain module with its own distribution and migration branch."""
        from tecnorev.core.scaffold import new_module

        directory = path or (Path("packages") if Path("packages").is_dir() else Path("."))
        deps = [d.strip() for d in depends_on.split(",") if d.strip()]
        created = new_module(
            name,
            directory=directory,
            depends_on=deps,
            description=description,
            installed={m.name: m.depends_on for m in get_registry().modules},
        )
        typer.echo(f"created {created}")
        typer.echo(
            "it declares its permission codes in permissions.py, its settings in config.py "
            f"and its commands (tecnorev {name} ...) in cli.py\n"
            "next: add a table class to models.py, then\n"
            f"  pip install -e {created}\n"
            f"  tecnorev db generate {name} -m 'create {name} tables'\n"
            "  tecnorev db upgrade heads"
        )

    @app.command("settings")
    def settings(
        as_json: Annotated[
            bool, typer.Option("--json", help="one JSON object per setting")
        ] = False,
    ) -> None:
        """List every setting of the installed parts: value, source (default, environment,
        .env), owner and what it does; secrets masked.  Exit 3 when one is wrong."""
        import json
        from dataclasses import asdict

        from tecnorev.core.settings_schema import describe_settings

        listed = describe_settings()
        if as_json:
            typer.echo(json.dumps([asdict(s) for s in listed], indent=2))
        else:
            width = max(len(s.name) for s in listed)
            for s in listed:
                value = s.value or f"{s.default} (default)"
                source = "" if s.source == "default" else f"  [{s.source}]"
                typer.echo(f"{s.name:<{width}}  {value}{source}")
                typer.echo(f"{'':<{width}}  {s.description} ({s.owner})")
                if s.error:
                    typer.echo(f"{'':<{width}}  error: {s.error}")
        bad = [s for s in listed if s.error]
        if bad:
            raise ConfigError(f"{len(bad)} setting(s) cannot be used")

    demo_app = typer.Typer(help="Demonstration data.", no_args_is_help=True)
    app.add_typer(demo_app, name="demo")

    @demo_app.command("load")
    def demo_load() -> None:
        """Add every installed module's demo data to the configured database (safe to rerun:
        what is already there is kept)."""
        from tecnorev.core.demo import load_demo

        for module, summary in load_demo():
            typer.echo(f"{module:<12} {summary}")

    groups: list[tuple[str, str]] = []
    try:
        for module in get_registry().modules:
            groups.extend(module.commands)
    except TecnorevError:
        pass  # a broken installation still gets the commands that explain it ('modules')
    for name, dotted in groups:
        package, _, attribute = dotted.partition(":")
        app.add_typer(getattr(importlib.import_module(package), attribute), name=name)

    for ep in entry_points(group=CLI_ENTRY_POINT_GROUP):
        target = ep.load()  # a Typer group, or one function made a command of that name
        if isinstance(target, typer.Typer):
            app.add_typer(target, name=ep.name)
        else:
            app.command(ep.name)(target)
    for ep in entry_points(group=ARGV_ENTRY_POINT_GROUP):
        # main() hands their arguments over before this app is built; mounted here for the
        # help, the suggestions and shell completion
        own = importlib.import_module(ep.module)
        if hasattr(own, "command"):
            app.add_typer(own.command(f"tecnorev {ep.name}"), name=ep.name)
    return typer.main.get_command(app)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args:
        own_parser = entry_points(group=ARGV_ENTRY_POINT_GROUP, name=args[0])
        if own_parser:
            return next(iter(own_parser)).load()(args[1:])
        if args[0] == "db":
            print(
                "error: 'tecnorev db' is the migration engine's: pip install tecnorev-migrate",
                file=sys.stderr,
            )
            return 2
    from tecnorev.core.errors import TecnorevError
    from tecnorev.core.logs import configure_logging
    from tecnorev.migrate.commandline import run_click

    try:
        configure_logging("info")  # `serve` configures again, with its level
    except TecnorevError:  # a bad setting: the command that reads it says so
        configure_logging("info", "text")
    return run_click(_build_app(), args, "tecnorev")


def _show_versions(value: bool) -> None:
    if not value:
        return
    import typer

    from tecnorev.migrate.versions import print_versions

    print_versions()
    raise typer.Exit(0)


def _version(distribution: str | None) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution) if distribution else "?"
    except PackageNotFoundError:
        return "?"


def entry() -> None:
    sys.exit(main())
