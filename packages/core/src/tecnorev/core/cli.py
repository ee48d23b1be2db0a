"""The ``tecnorev`` command: a shell whose command groups come from installed distributions.

The installed modules' descriptors name their command groups (``Module.commands``); two
entry-point groups add those of other distributions:

- ``tecnorev.cli``: a Typer app (a group of commands) or a function (one command);
- ``tecnorev.cli.argv``: a command that parses its own arguments, ``fn(argv) -> exit code``,
  reached without loading the rest of the CLI.  ``tecnorev db`` is one (tecnorev-migrate's
  command line), so it costs little more than plain ``alembic``.

No ``from __future__ import annotations`` here: typer reads the ``Annotated`` options of the
commands defined inside ``_build_app`` at run time, where ``typer`` is a local name.
"""

import importlib
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated

CLI_ENTRY_POINT_GROUP = "tecnorev.cli"
ARGV_ENTRY_POINT_GROUP = "tecnorev.cli.argv"


def _build_app():  # noqa: ANN202 - typer is imported lazily
    import typer

    from tecnorev.core.errors import TecnorevError
    from tecnorev.core.registry import get_registry

    app = typer.Typer(
        help="Tecno Rev: a modular retail backend.  'tecnorev db --help' for migrations.",
        no_args_is_help=True,
        add_completion=False,
    )

    @app.command("modules")
    def modules() -> None:
        """List the installed modules in dependency order."""
        try:
            registry = get_registry()
        except TecnorevError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from exc
        for module in registry.modules:
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
        try:
            root = new_module(
                name,
                directory=directory,
                depends_on=deps,
                description=description,
                installed={m.name: m.depends_on for m in get_registry().modules},
            )
        except TecnorevError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from exc
        typer.echo(f"created {root}")
        typer.echo(
            "it declares its permission codes in permissions.py, its settings in config.py "
            f"and its commands (tecnorev {name} ...) in cli.py\n"
            "next: add a table class to models.py, then\n"
            f"  pip install -e {root}\n"
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
        .env), owner and what it does; secrets masked.  Exit 2 when one is wrong."""
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
            typer.echo(f"error: {len(bad)} setting(s) cannot be used", err=True)
            raise typer.Exit(2)

    demo_app = typer.Typer(help="Demonstration data.", no_args_is_help=True)
    app.add_typer(demo_app, name="demo")

    @demo_app.command("load")
    def demo_load() -> None:
        """Add every installed module's demo data to the configured database (safe to rerun:
        what is already there is kept)."""
        from tecnorev.core.demo import load_demo

        for module, summary in load_demo():
            typer.echo(f"{module:<12} {summary}")

    for ep in entry_points(group=ARGV_ENTRY_POINT_GROUP):
        # listed in the help; main() hands their arguments over before typer sees them
        dist = ep.dist.name if ep.dist else "a distribution"
        app.command(
            ep.name,
            help=f"the command line of {dist}: tecnorev {ep.name} --help",
            context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
        )(lambda: None)

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
    return app


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
    from tecnorev.core.errors import DatabaseUnavailable, TecnorevError
    from tecnorev.core.logs import configure_logging

    try:
        try:
            configure_logging("info")  # `serve` configures again, with its level
        except TecnorevError:  # a bad setting: the command that reads it says so
            configure_logging("info", "text")
        app = _build_app()
        app(args, prog_name="tecnorev", standalone_mode=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    except TecnorevError as exc:  # a message for a person, from any command group
        print(f"error: {exc}", file=sys.stderr)
        # 2, as for 'tecnorev db' and 'serve': the command never got to do its work
        return 2 if isinstance(exc, DatabaseUnavailable) else 1
    return 0


def _version(distribution: str | None) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution) if distribution else "?"
    except PackageNotFoundError:
        return "?"


def entry() -> None:
    sys.exit(main())
