"""The click commands of ``tecnorev db``, made from the argparse definitions they are written
in: alembic's own parser (so every alembic command keeps exactly its options as alembic
changes) and ours (``commands/``).  Parsing, help, errors and suggestions are then click's, as
for every other ``tecnorev`` command; a command's callback gets the ``Namespace`` argparse
would have given.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

import typer
from rich.markup import escape
from typer._click import core, exceptions, globals, types
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from tecnorev.migrate.exitcodes import PREFIX, ExitCode, code_of

# typer carries its own copy of click (typer._click): commands mounted in a typer app, and the
# errors they raise, are that copy's, not the click distribution's

Run = Callable[[argparse.Namespace], Any]

_NEGATIVE = re.compile(r"^-\d+$")
_SKIPPED = (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)


class _Converted(types.ParamType):
    """An argparse ``type=`` callable as a click type (its errors become usage errors)."""

    def __init__(self, convert: Callable[[str], Any]) -> None:
        self.convert_value = convert
        self.name = getattr(convert, "__name__", "value").lstrip("_")

    def convert(self, value: Any, param: core.Parameter | None, ctx: core.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return self.convert_value(value)
        except (argparse.ArgumentTypeError, TypeError, ValueError) as exc:
            self.fail(str(exc) or f"{value!r} is not a valid {self.name}", param, ctx)


class _OneOf(types.ParamType):
    """An argparse ``choices=`` list (typer's click has no Choice type: typer uses enums)."""

    def __init__(self, choices: list[str]) -> None:
        self.choices = choices
        self.name = "|".join(choices)

    def convert(self, value: Any, param: core.Parameter | None, ctx: core.Context | None) -> Any:
        if value in self.choices:
            return value
        self.fail(f"{value!r} is not one of {', '.join(self.choices)}", param, ctx)

    def get_metavar(self, param: core.Parameter, ctx: core.Context) -> str:
        return f"[{self.name}]"


def params_of(parser: argparse.ArgumentParser) -> list[core.Parameter]:
    """The click parameters for a parser's arguments (sub-parsers excluded)."""
    params: list[core.Parameter] = []
    for action in parser._actions:
        if isinstance(action, _SKIPPED):
            continue
        params.append(_param(action))
    return params


def _param(action: argparse.Action) -> core.Parameter:
    kind: Any = None
    if action.choices is not None:
        kind = _OneOf([str(c) for c in action.choices])
    elif action.type in (int, float):
        kind = action.type
    elif action.type not in (None, str):
        kind = _Converted(action.type)
    help_text = escape((action.help or "").replace("%%", "%")) or None
    if not action.option_strings:
        many = action.nargs in ("+", "*", argparse.REMAINDER)
        return TyperArgument(
            param_decls=[action.dest],
            type=kind,
            nargs=-1 if many else None,
            required=action.nargs not in ("?", "*"),
            default=None if many else action.default,
            metavar=(action.metavar or action.dest).upper(),
            help=help_text,
            show_default=False,
        )
    flag = isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction)
    return TyperOption(
        param_decls=[*action.option_strings, action.dest],
        type=None if flag else kind,
        is_flag=flag or None,
        default=None if isinstance(action, argparse._AppendAction) else action.default,
        multiple=isinstance(action, argparse._AppendAction),
        required=bool(action.required),
        metavar=action.metavar.upper() if isinstance(action.metavar, str) else None,
        help=help_text,
    )


class _Command(TyperCommand):
    """A command whose arguments may be negative numbers, as argparse allows (``downgrade
    -1`` is answered with the module form, not "no such option")."""

    def parse_args(self, ctx: core.Context, args: list[str]) -> list[str]:
        if "--" not in args and any(_NEGATIVE.match(a) for a in args):
            args = [
                *(a for a in args if not _NEGATIVE.match(a)),
                "--",
                *(a for a in args if _NEGATIVE.match(a)),
            ]
        return super().parse_args(ctx, args)


def namespace_values(values: dict[str, Any]) -> dict[str, Any]:
    """click's tuples as argparse's lists (an empty repeated option is None, as in argparse)."""
    return {k: (list(v) or None) if isinstance(v, tuple) else v for k, v in values.items()}


def command_of(
    name: str, help_text: str | None, parser: argparse.ArgumentParser, run: Run
) -> core.Command:
    """One command (or, for a parser with sub-parsers, a group) calling ``run`` with the
    ``Namespace`` made of the group's options, the parser's defaults and its arguments."""
    help_text = escape((help_text or parser.description or "").replace("%%", "%"))
    subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    defaults = dict(parser._defaults)

    if subparsers:
        action = subparsers[0]
        helps = {a.dest: a.help for a in action._choices_actions}

        def enter(**values: Any) -> None:
            context = globals.get_current_context()
            context.obj = {
                **(context.obj or {}),
                **defaults,
                **namespace_values(values),
                action.dest: context.invoked_subcommand,
            }

        group = TyperGroup(
            name=name,
            help=help_text,
            params=params_of(parser),
            callback=enter,
            no_args_is_help=True,
        )
        for sub_name, sub_parser in action.choices.items():
            group.add_command(command_of(sub_name, helps.get(sub_name), sub_parser, run))
        return group

    def invoke(**values: Any) -> Any:
        inherited = globals.get_current_context().obj or {}
        return run(argparse.Namespace(**{**inherited, **defaults, **namespace_values(values)}))

    positional = any(not a.option_strings for a in parser._actions)
    made = _Command if positional else TyperCommand
    return made(name=name, help=help_text, params=params_of(parser), callback=invoke)


def run_click(
    command: core.Command,
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
    except exceptions.NoArgsIsHelpError as exc:
        typer.echo(exc.format_message(), err=True)
        _fail("a command is needed")
        return ExitCode.USAGE
    except exceptions.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx is not None else prog
        _fail(f"{exc.format_message()}\n(see '{where} --help')")
        return ExitCode.USAGE
    except typer.Abort:
        _fail("aborted")
        return ExitCode.FAILED
    except exceptions.ClickException as exc:
        _fail(exc.format_message())
        return ExitCode.FAILED if exc.exit_code == 1 else exc.exit_code
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
