"""Every file the commands write is formatted as the project formats its code: ``ruff``
(a dependency, so it is always there) fixes what it can (import order) and formats.

The closest ``pyproject.toml``/``ruff.toml`` with ruff settings decides, as for ``ruff`` run by
hand; outside any project, Tecno Rev's own settings apply, so a module made anywhere reads
like the project's packages once moved in."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

# Tecno Rev's ruff settings (root pyproject.toml) that change how written files look
_HOUSE = (
    "line-length = 100",
    'lint.isort.known-first-party = ["tecnorev"]',
    'lint.isort.known-third-party = ["alembic"]',
)


def _configured(path: Path) -> bool:
    for folder in [path, *path.parents] if path.is_dir() else path.parents:
        for name in ("ruff.toml", ".ruff.toml"):
            if (folder / name).is_file():
                return True
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file() and "[tool.ruff" in pyproject.read_text(encoding="utf-8"):
            return True
    return False


def format_paths(paths: Sequence[Path | str]) -> None:
    """Sort imports and format ``paths`` (files or folders) in place; a finding ruff cannot
    fix is left for the author, never an error here."""
    from ruff.__main__ import find_ruff_bin

    targets = [str(Path(p).resolve()) for p in paths]
    if not targets:
        return
    overrides: list[str] = []
    if not _configured(Path(targets[0])):
        for setting in _HOUSE:
            overrides += ["--config", setting]
    ruff = find_ruff_bin()
    for arguments in (
        ["check", "--fix-only", "--select", "I,F401,UP", "--quiet", *overrides],
        ["format", "--quiet", *overrides],
    ):
        subprocess.run([ruff, *arguments, *targets], check=False, timeout=60)


HOOK = "tecnorev_format"


def _format_revision(path: str, _options: object) -> None:
    format_paths([path])


def register_hook() -> None:
    """Make ``type = tecnorev_format`` usable in alembic's ``[post_write_hooks]``."""
    from alembic.script import write_hooks

    write_hooks.register(HOOK)(_format_revision)
