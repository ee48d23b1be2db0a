"""``tecnorev db release <module> <version>``: record which revisions a version ships.

Run it when the version is decided, before the distribution is built: the record lands in the
module's migrations folder (``releases.toml``), so the wheel carries it.  See
:mod:`tecnorev.migrate.releases`.
"""

from __future__ import annotations

from argparse import ArgumentParser, Namespace

from alembic.config import Config

NAME = "release"
HELP = (
    "record that <version> of <module> ships its branch's current head(s), and what it "
    "requires, in the module's releases.toml (before building that version)"
)


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("module", help="name of an installed module")
    parser.add_argument("version", help="the version being released, such as 0.2.0")


def run(config: Config, options: Namespace) -> int:
    from alembic.script import ScriptDirectory

    from tecnorev.migrate.ledger import distribution_version
    from tecnorev.migrate.modules import get_registry
    from tecnorev.migrate.releases import cut_release

    registry = get_registry()
    scripts = ScriptDirectory.from_config(config)
    path, release = cut_release(scripts, registry, options.module, options.version)
    print(f"recorded {options.module} {release.version}: ships {', '.join(release.heads)} ({path})")
    distribution = registry[options.module].distribution
    installed = distribution_version(distribution)
    if installed is not None and installed != release.version:
        print(
            f"the installed {distribution} is {installed}: set version = "
            f'"{release.version}" in its pyproject.toml before building the release'
        )
    return 0
