"""Revision ids and which module a revision belongs to."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from alembic.script import Script, ScriptDirectory

    from tecnorev.migrate.modules import Registry

# alembic_version.version_num is VARCHAR(32): the module name, "_", then 12 random hex digits
# (collision-free when two people extend one module at the same time).
_MAX_ID = 32
_RANDOM_HEX = 12


def new_revision_id(module_name: str) -> str:
    prefix = module_name[: _MAX_ID - _RANDOM_HEX - 1]
    return f"{prefix}_{secrets.token_hex(_RANDOM_HEX // 2)}"


def module_hint(revision_id: str) -> str | None:
    """The module a revision id names, when it follows the ``<module>_<hex>`` scheme."""
    prefix, sep, suffix = revision_id.rpartition("_")
    if sep and prefix and all(c in "0123456789abcdef" for c in suffix):
        return prefix
    return None


def module_of_script(script: Script, registry: Registry) -> str | None:
    """The module whose migrations folder holds ``script``'s file."""
    return registry.module_by_folder.get(Path(script.path).resolve().parent)


def module_of_revision(
    revision_id: str, scripts: ScriptDirectory, registry: Registry
) -> str | None:
    from alembic.script.revision import RevisionError
    from alembic.util import CommandError

    try:
        script = scripts.get_revision(revision_id)
    except (CommandError, RevisionError):
        script = None
    if script is not None:
        found = module_of_script(script, registry)
        if found:
            return found
    return module_hint(revision_id)
