"""Release records: which revisions each released version of a module ships, and what that
version works with.

Each module keeps ``releases.toml`` in its migrations folder, so the wheel carries it::

    [release."0.1.0"]
    heads = ["sales_178394af59bf"]
    requires = { tecnorev-core = ">=0.1.0,<0.2", tecnorev-inventory = ">=0.1.0,<0.2" }

``heads`` are the head(s) of the module's branch in that version: the version ships those
revisions and everything below them in the branch.  ``requires`` is the distribution's own
requirements when the release was cut (what pip enforced; kept for the record and for
``verify``).  ``tecnorev db release <module> <version>`` writes it, before the version is built;
the revision files are never touched (the ledger keeps their checksums).  The file is written
the same way every time: versions in order, keys sorted.

Earlier records were flat (``"0.2.0" = ["sales_<head>"]``); they are still read.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, requires
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tecnorev.migrate.errors import BadArgument, MigrationError

if TYPE_CHECKING:
    from alembic.script import ScriptDirectory

    from tecnorev.migrate.modules import Registry

RELEASES_FILE = "releases.toml"


@dataclass(frozen=True)
class Release:
    version: str
    heads: tuple[str, ...]
    requires: dict[str, str] = field(default_factory=dict)


def releases_path(registry: Registry, module: str) -> Path:
    return registry[module].migrations_path() / RELEASES_FILE


def read_releases(path: Path) -> list[Release]:
    """The releases recorded in ``path``, oldest first; none when there is no file.  A file
    that cannot be read is a ``MigrationError`` naming it."""
    from packaging.version import InvalidVersion, Version

    if not path.is_file():
        return []
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        found = []
        for version, entry in (data.get("release") or _flat(data)).items():
            Version(version)
            heads = entry.get("heads", ()) if isinstance(entry, dict) else entry
            heads = (heads,) if isinstance(heads, str) else tuple(heads)
            wanted = entry.get("requires", {}) if isinstance(entry, dict) else {}
            found.append(Release(version, heads, {str(k): str(v) for k, v in wanted.items()}))
    except (OSError, tomllib.TOMLDecodeError, InvalidVersion, TypeError, AttributeError) as exc:
        raise MigrationError(f"{path} cannot be read as a release record: {exc}") from exc
    return sorted(found, key=lambda r: Version(r.version))


def _flat(data: dict[str, Any]) -> dict[str, list[Any] | str]:
    return {k: v for k, v in data.items() if isinstance(v, list | str)}


def render(module: str, distribution: str | None, releases: list[Release]) -> str:
    lines = [
        f"# Releases of {distribution or module}: the head(s) of the {module} branch each",
        f"# version ships, and what it works with.  Written by `db release {module} <version>`.",
    ]
    for release in releases:
        heads = ", ".join(f'"{h}"' for h in sorted(release.heads))
        wanted = ", ".join(f'{name} = "{spec}"' for name, spec in sorted(release.requires.items()))
        lines += ["", f'[release."{release.version}"]', f"heads = [{heads}]"]
        lines.append(f"requires = {{ {wanted} }}" if wanted else "requires = {}")
    return "\n".join(lines) + "\n"


def branch_heads(scripts: ScriptDirectory, registry: Registry, module: str) -> tuple[str, ...]:
    from tecnorev.migrate.revisions import module_of_script

    return tuple(
        sorted(
            script.revision
            for script in scripts.walk_revisions()
            if script.is_head and module_of_script(script, registry) == module
        )
    )


def requirements_of(distribution: str | None) -> dict[str, str]:
    """The distribution's runtime requirements: name -> specifier (extras left out)."""
    from packaging.requirements import Requirement

    if not distribution:
        return {}
    try:
        declared = requires(distribution) or []
    except PackageNotFoundError:
        return {}
    found: dict[str, str] = {}
    for text in declared:
        requirement = Requirement(text)
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        found[requirement.name] = str(requirement.specifier) or "*"
    return found


def cut_release(
    scripts: ScriptDirectory, registry: Registry, module: str, version: str
) -> tuple[Path, Release]:
    """Record ``version`` of ``module`` as shipping its branch's current head(s)."""
    from packaging.version import InvalidVersion, Version

    registry[module]  # an unknown name is a usage error naming the closest ones
    try:
        wanted = Version(version)
    except InvalidVersion:
        raise BadArgument(f"{version!r} is not a version (PEP 440), such as 0.2.0") from None
    path = releases_path(registry, module)
    recorded = read_releases(path)
    newest = max((Version(r.version) for r in recorded), default=None)
    if newest is not None and wanted <= newest:
        raise MigrationError(
            f"{module} {newest} is already recorded in {path}: a release must be newer "
            "(releases are history; a recorded one is never rewritten)"
        )
    heads = branch_heads(scripts, registry, module)
    if not heads:
        raise MigrationError(f"module {module!r} has no revisions to release")
    distribution = registry[module].distribution
    release = Release(str(wanted), heads, requirements_of(distribution))
    path.write_text(render(module, distribution, [*recorded, release]), encoding="utf-8")
    return path, release
