"""``downgrade heads:base --sql`` for every module at once, through alembic's API.

Neither ``alembic`` nor ``tecnorev db`` accepts several heads as the start of an offline range
(``downgrade heads:base --sql`` stops with "Multiple head revisions"), yet the offline form is
the one that measures alembic's own work without the database's.  This runs the body of
``alembic.command.downgrade`` with the start given as the tuple of heads, for either tool:

    python bench/offline_downgrade.py ours            # tecnorev's Config and packaged env.py
    python bench/offline_downgrade.py plain ini_path  # a static alembic.ini
    ... --indexed    # with the head bookkeeping sketched in indexed_unmerge() (not shipped)
    ... --profile    # cProfile's top functions on stderr
"""

from __future__ import annotations

import argparse
import cProfile
import logging
import pstats
import sys
from typing import Any

from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import RevisionStep
from alembic.script import ScriptDirectory


def config_for(tool: str, ini: str | None) -> Config:
    if tool == "plain":
        return Config(ini)
    from tecnorev.migrate.cli import make_config

    logging.basicConfig(level=logging.INFO, format="%(levelname)-5.5s [%(name)s] %(message)s")
    return make_config()


def downgrade_all_offline(config: Config) -> None:
    scripts = ScriptDirectory.from_config(config)
    heads = tuple(scripts.get_heads())

    def downgrade(rev: Any, _context: Any) -> Any:
        return scripts._downgrade_revs("base", rev)

    with EnvironmentContext(
        config, scripts, fn=downgrade, as_sql=True, starting_rev=heads, destination_rev="base"
    ):
        scripts.run_env()


def indexed_unmerge() -> None:
    """What would make a many-module downgrade linear: alembic's version-table bookkeeping
    recomputes, for every step, the ancestors of every other head (``_unmerge_to_revisions``:
    O(revisions) per step, so O(revisions^2) per run).  With each revision's ancestors kept as
    a bitmask, built once in topological order, the same question costs one OR per head."""
    original = RevisionStep._unmerge_to_revisions
    built: dict[int, tuple[dict[str, int], dict[str, int]]] = {}

    def ancestry(revision_map: Any) -> tuple[dict[str, int], dict[str, int]]:
        """(own bit, bits of itself and every ancestor) per revision id."""
        if id(revision_map) not in built:
            own: dict[str, int] = {}
            closure: dict[str, int] = {}
            for script in reversed(list(revision_map.iterate_revisions("heads", "base"))):
                own[script.revision] = 1 << len(own)
                mask = own[script.revision]
                for parent in script._normalized_down_revisions:
                    mask |= closure[parent]
                closure[script.revision] = mask
            built[id(revision_map)] = (own, closure)
        return built[id(revision_map)]

    def unmerge(self: RevisionStep, heads: set[str]) -> tuple[str, ...]:
        other_heads = set(heads).difference([self.revision.revision])
        if not other_heads:
            return original(self, heads)
        own, closure = ancestry(self.revision_map)
        covered = 0
        for head in other_heads:
            covered |= closure[head]
        # alembic returns tuple(set(...)): order is not significant
        return tuple(r for r in self.to_revisions if not covered & own[r])

    RevisionStep._unmerge_to_revisions = unmerge


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tool", choices=("ours", "plain"))
    parser.add_argument("ini", nargs="?")
    parser.add_argument("--indexed", action="store_true")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    config = config_for(args.tool, args.ini)
    if args.indexed:
        indexed_unmerge()
    if not args.profile:
        downgrade_all_offline(config)
        return
    profile = cProfile.Profile()
    profile.runcall(downgrade_all_offline, config)
    stats = pstats.Stats(profile, stream=sys.stderr)
    stats.sort_stats("tottime").print_stats(r"alembic|tecnorev", 12)


if __name__ == "__main__":
    main()
