"""Whether the installed modules work with each other: each module's distribution states the
versions of what it needs (its requirements), and an installation that breaks one is refused
at discovery, naming both sides and the fix.

pip enforces requirements when it resolves, but not after ``pip install --no-deps``, a forced
reinstall of one distribution, or a downgrade of a dependency done by hand; the database would
then be migrated by a set of modules that were never released together.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from tecnorev.migrate.errors import DiscoveryError

if TYPE_CHECKING:
    from tecnorev.migrate.modules import Registry


def incompatibilities(registry: Registry) -> list[str]:
    """One sentence per requirement of an installed module that the installed version of
    the required distribution does not meet."""
    from packaging.specifiers import SpecifierSet

    from tecnorev.migrate.releases import requirements_of

    problems = []
    for module in registry.modules:
        requirer = module.distribution
        if not requirer:
            continue  # no distribution: no requirements (requirements_of gives none)
        for name, spec in requirements_of(requirer).items():
            try:
                installed = version(name)
            except PackageNotFoundError:
                continue  # a missing module is named by discovery; others are pip's to report
            if spec == "*" or SpecifierSet(spec).contains(installed, prereleases=True):
                continue
            problems.append(
                f"{requirer} {version(requirer)} (module {module.name}) works with "
                f"{name}{spec}, but {name} {installed} is installed: pip install "
                f"'{name}{spec}', or install a release of {requirer} that works with "
                f"{name} {installed}"
            )
    return problems


def check(registry: Registry) -> None:
    problems = incompatibilities(registry)
    if problems:
        raise DiscoveryError("the installed modules do not work together: " + "; ".join(problems))
