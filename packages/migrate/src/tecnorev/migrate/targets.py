"""What a command was asked to migrate to: checked before it runs, so a mistyped module is a
usage error with a suggestion, and reported after, so an ``upgrade`` with nothing to do
says so."""

from __future__ import annotations

import re
from argparse import Namespace
from collections.abc import Iterator
from contextlib import contextmanager

from alembic.config import Config

from tecnorev.migrate.errors import UnknownModule, did_you_mean
from tecnorev.migrate.modules import Registry

# options of alembic's and our commands that hold revisions, ``module@rev`` or ranges
_TARGET_OPTIONS = ("revision", "revisions", "rev", "rev_range", "head", "to")
_KEYWORDS = {"heads", "head", "base", "current", ""}
_RELATIVE = re.compile(r"^[+-]?\d+$")


def _names(options: Namespace) -> Iterator[str]:
    """The module or revision names in the command's targets: ``catalog`` of
    ``catalog@head``, both ends of ``a:b``, ``sales_0001`` of ``sales_0001+1``."""
    for option in _TARGET_OPTIONS:
        value = getattr(options, option, None)
        tokens = [value] if isinstance(value, str) else value if isinstance(value, list) else []
        for token in tokens:
            for part in token.split(":"):
                name = part.split("@", 1)[0] if "@" in part else re.sub(r"[+-]\d+$", "", part)
                if name not in _KEYWORDS and not _RELATIVE.match(name):
                    yield name


def check_targets(config: Config, options: Namespace, registry: Registry) -> None:
    """Refuse, with the closest installed module names, a target naming neither an installed
    module nor a known revision."""
    unknown = [name for name in _names(options) if name not in registry]
    if not unknown:
        return
    from alembic.script import ScriptDirectory

    revisions = ScriptDirectory.from_config(config).revision_map
    for name in unknown:
        try:
            found = revisions.get_revision(name)
        except Exception:  # alembic's resolution errors differ by what is wrong with the name
            found = None
        if found is None:
            raise UnknownModule(
                f"no installed module or revision named {name!r} (installed modules: "
                f"{', '.join(registry.names)}).{did_you_mean(name, registry.names)}"
            )


_applied = 0  # revisions run by this process's migration environment (see step_applied)


def step_applied() -> None:
    """Called by the migration environment after each revision it runs."""
    global _applied
    _applied += 1


@contextmanager
def say_when_nothing_to_do(config: Config, target: str) -> Iterator[None]:
    """Say so when the command ran no revision.  Counted by the environment itself (its log
    handlers are replaced when env.py configures logging from alembic.ini)."""
    before = _applied
    yield
    if _applied == before:
        config.print_stdout(f"nothing to do: the database is already at {target}")
