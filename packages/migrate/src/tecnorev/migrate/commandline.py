"""The Typer commands of ``tecnorev db``, made from the argparse definitions they are written
in: alembic's own parser (so every alembic command keeps exactly its options as alembic
changes) and ours (``commands/``).  Parsing, help, errors and suggestions are then Typer's, as
for every other ``tecnorev`` command; a command gets the ``Namespace`` argparse would have
given.  Only Typer's public API is used (functions whose signatures are built here), since
its click internals change from one release to the next.
"""

from __future__ import annotations

import argparse
import inspect
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Protocol, cast

import typer
from rich.markup import escape
from typer.core import TyperCommand

from tecnorev.migrate.exitcodes import PREFIX, ExitCode, code_of

Run = Callable[[argparse.Namespace], Any]


def _click_class(name: str) -> type[Exception]:
    """A click exception class, found from typer's public ``BadParameter`` (recent typer
    releases carry a private copy of click)."""
    return next(c for c in typer.BadParameter.__mro__ if c.__name__ == name)


UsageError = _click_class("UsageError")
ClickException = _click_class("ClickException")


class _ClickError(Protocol):
    """What is read of a ``ClickException`` (the class is found at run time, above)."""

    exit_code: int

    def format_message(self) -> str: ...


class _Context(Protocol):
    @property
    def command_path(self) -> str: ...


class _UsageError(_ClickError, Protocol):
    """What is read of a ``UsageError``."""

    @property
    def ctx(self) -> _Context | None: ...


_NEGATIVE = re.compile(r"^-\d+$")
_SKIPPED = (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)
_NATIVE = (int, float)  # types Typer converts itself; others are applied after parsing


class NegativeNumbers(TyperCommand):
    """Takes a negative number for an argument, as argparse does (``downgrade -1`` is answered
    with the module form, not "no such option")."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if "--" not in args and any(_NEGATIVE.match(a) for a in args):
            negative = [a for a in args if _NEGATIVE.match(a)]
            args = [*(a for a in args if not _NEGATIVE.match(a)), "--", *negative]
        return super().parse_args(ctx, args)


def _actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if not isinstance(a, _SKIPPED)]


def _metavar(action: argparse.Action) -> str | None:
    if action.choices is not None:
        return "[" + "|".join(str(c) for c in action.choices) + "]"
    return action.metavar.upper() if isinstance(action.metavar, str) else None


def _parameter(action: argparse.Action) -> inspect.Parameter:
    """The keyword parameter Typer reads an argparse action from."""
    help_text = escape((action.help or "").replace("%%", "%")) or None
    scalar: Any = action.type if action.type in _NATIVE else str
    default: Any = action.default
    if not action.option_strings:
        many = action.nargs in ("+", "*", argparse.REMAINDER)
        optional = action.nargs in ("?", "*")
        kind: Any = list[str] if many else scalar
        info: Any = typer.Argument(
            help=help_text, metavar=_metavar(action) or action.dest.upper(), show_default=False
        )
        if optional:
            kind, default = kind | None, None if many else action.default
        else:
            default = inspect.Parameter.empty
    elif isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction):
        kind, info = bool, typer.Option(*action.option_strings, help=help_text)
    else:
        info = typer.Option(*action.option_strings, help=help_text, metavar=_metavar(action))
        if isinstance(action, argparse._AppendAction):
            kind, default = list[str] | None, None
        elif action.required:
            kind, default = scalar, inspect.Parameter.empty
        else:
            kind = scalar | None
    return inspect.Parameter(
        action.dest,
        inspect.Parameter.KEYWORD_ONLY,
        default=default,
        annotation=Annotated[kind, info],
    )


def _converted(actions: list[argparse.Action], values: dict[str, Any]) -> dict[str, Any]:
    """Typer's values as argparse's: ``type=`` and ``choices=`` applied (their failures are
    usage errors), an absent repeated option None, an absent ``*`` argument []."""
    out = dict(values)
    for action in actions:
        value = out.get(action.dest)
        hint = "/".join(action.option_strings) or action.dest.upper()
        if isinstance(action, argparse._AppendAction) and not value:
            out[action.dest] = None
        elif not action.option_strings and action.nargs == "*" and value is None:
            out[action.dest] = []
        if not isinstance(value, str):
            continue
        if callable(action.type) and action.type not in (str, *_NATIVE):
            try:
                value = out[action.dest] = action.type(value)
            except (argparse.ArgumentTypeError, TypeError, ValueError) as exc:
                raise typer.BadParameter(str(exc), param_hint=f"'{hint}'") from exc
        if action.choices is not None and value not in action.choices:
            listed = ", ".join(str(c) for c in action.choices)
            raise typer.BadParameter(f"{value!r} is not one of {listed}", param_hint=f"'{hint}'")
    return out


def _function(
    name: str, parameters: list[inspect.Parameter], body: Callable[..., Any]
) -> Callable[..., Any]:
    """A function with this signature (the context first) calling ``body(ctx, values)``."""

    def function(ctx: typer.Context, **values: Any) -> Any:
        return body(ctx, values)

    context = inspect.Parameter(
        "ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context
    )
    signature = inspect.Signature([context, *parameters])
    function.__signature__ = signature  # type: ignore[attr-defined]
    function.__annotations__ = {p.name: p.annotation for p in signature.parameters.values()}
    function.__name__ = function.__qualname__ = name.replace("-", "_")
    return function


def _keep(parser: argparse.ArgumentParser, chosen_as: str | None = None) -> Callable[..., None]:
    """A group's callback: its defaults and options, for the commands under it."""
    actions = _actions(parser)

    def keep(ctx: typer.Context, values: dict[str, Any]) -> None:
        kept = {**(ctx.obj or {}), **parser._defaults, **_converted(actions, values)}
        if chosen_as:
            kept[chosen_as] = ctx.invoked_subcommand
        ctx.obj = kept

    return keep


def app_of(
    help_text: str,
    parser: argparse.ArgumentParser,
    run: Run,
    extra: Sequence[inspect.Parameter] = (),
) -> typer.Typer:
    """A Typer app for a parser with sub-parsers: its options (and ``extra`` ones, handled by
    their own callbacks), and a command per sub-parser calling ``run``."""
    app = typer.Typer(help=help_text, no_args_is_help=True, add_completion=False)
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    chosen_as = None if subparsers.dest == argparse.SUPPRESS else subparsers.dest
    parameters = [*(_parameter(a) for a in _actions(parser)), *extra]
    app.callback()(_function("group", parameters, _keep(parser, chosen_as)))
    helps = {a.dest: a.help for a in subparsers._choices_actions}
    for name, sub_parser in subparsers.choices.items():
        add_command(app, name, helps.get(name), sub_parser, run)
    return app


def add_command(
    app: typer.Typer,
    name: str,
    help_text: str | None,
    parser: argparse.ArgumentParser,
    run: Run,
) -> None:
    """One command (or, for a parser with sub-parsers, a group) calling ``run`` with the
    ``Namespace`` argparse would have made."""
    shown = escape((help_text or parser.description or "").replace("%%", "%"))
    if any(isinstance(a, argparse._SubParsersAction) for a in parser._actions):
        app.add_typer(app_of(shown, parser, run), name=name)
        return
    actions = _actions(parser)

    def invoke(ctx: typer.Context, values: dict[str, Any]) -> Any:
        given = {**(ctx.obj or {}), **parser._defaults, **_converted(actions, values)}
        return run(argparse.Namespace(**given))

    positional = any(not a.option_strings for a in actions)
    app.command(name, help=shown, cls=NegativeNumbers if positional else TyperCommand)(
        _function(name, [_parameter(a) for a in actions], invoke)
    )


def run_click(
    command: Any,
    argv: Sequence[str] | None,
    prog: str,
    *,
    debug: bool = False,
    unexpected: Callable[[Exception], str] = str,
) -> int:
    """Run a click command line and return its exit code; every failure is one ``error:``
    line (or paragraph) on stderr with its code from :mod:`tecnorev.migrate.exitcodes`."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        result = command.main(args, prog_name=prog, standalone_mode=False)
    except typer.Exit as exc:
        return exc.exit_code
    except UsageError as caught:
        usage = cast(_UsageError, caught)  # an instance of click's UsageError, found by name
        if type(usage).__name__ == "NoArgsIsHelpError":  # the help, asked by giving nothing
            typer.echo(usage.format_message(), err=True)
            _fail("a command is needed")
            return ExitCode.USAGE
        where = usage.ctx.command_path if usage.ctx is not None else prog
        _fail(f"{usage.format_message()}\n(see '{where} --help')")
        return ExitCode.USAGE
    except typer.Abort:
        _fail("aborted")
        return ExitCode.FAILED
    except ClickException as caught:
        error = cast(_ClickError, caught)  # an instance of click's ClickException, found by name
        _fail(error.format_message())
        return ExitCode.FAILED if error.exit_code == 1 else error.exit_code
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else ExitCode.FAILED
    except BrokenPipeError:
        # the reader went away (``tecnorev db upgrade heads --sql | head``): not a failure of
        # ours; point stdout at devnull so the interpreter's final flush stays quiet
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitCode.OK
    except Exception as exc:
        code = code_of(exc)
        if getattr(exc, "exit_code", None) is None:
            if debug:
                raise
            _fail(unexpected(exc))
        else:
            _fail(str(exc))
        return code
    return result if isinstance(result, int) else ExitCode.OK


def _fail(message: str) -> None:
    typer.echo(f"{PREFIX}{message}", err=True)
