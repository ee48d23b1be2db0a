"""Squashed revisions: one revision standing for a range of a module's history.

A squash is an ordinary revision file with ``replaces = (...)``, the ids it stands for, oldest
first; its ``down_revision`` is the parent of the first.  Which side the graph shows depends on
the database, as with Django's ``squashmigrations``:

- a database that has none of the range (a fresh one, or an offline plan) runs the squash;
- a database standing on a revision inside the range goes on with the originals, as long as
  the module still ships them, until it is past the range;
- past the range, revisions after it (whose files name the last original as their parent)
  hang from the squash: references to a replaced revision, in ``down_revision`` or in another
  module's ``depends_on``, are read as the squash.

So the originals can stay beside the squash for as many releases as there are databases to
bring past them, and be deleted after; a database found inside the range once they are gone
is refused with what to install.  The choice is made when alembic loads the files
(:func:`install` wraps ``ScriptDirectory._load_revisions``) and set per database by
:func:`choose_view`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass

from alembic.script import Script, ScriptDirectory
from alembic.script.revision import RevisionMap, tuple_rev_as_scalar
from alembic.util import to_tuple

from tecnorev.migrate.project import project

# the ScriptDirectory attribute naming the squashes whose originals this database still needs
_ORIGINALS_FOR = "_tecnorev_originals_for"
_alembic_load = ScriptDirectory._load_revisions


def replaces(script: Script) -> tuple[str, ...]:
    """The revisions ``script`` squashes, oldest first (empty for an ordinary revision)."""
    return tuple(to_tuple(getattr(script.module, "replaces", None), default=()))


# a revision's down_revision or dependencies, as alembic types them
_Revisions = str | list[str] | tuple[str, ...] | None


def _mapped(value: _Revisions, alias: dict[str, str]) -> _Revisions:
    revisions = to_tuple(value, default=())
    if not any(r in alias for r in revisions):
        return value
    seen: list[str] = []
    for revision in revisions:
        revision = alias.get(revision, revision)
        if revision not in seen:
            seen.append(revision)
    return tuple_rev_as_scalar(tuple(seen))


def arrange(found: Iterable[Script], keep_originals: Collection[str] = ()) -> Iterator[Script]:
    """The scripts the graph should hold: each squash or its originals (those named in
    ``keep_originals`` keep their originals), references to hidden originals redirected."""
    found = list(found)
    squashes = {s.revision: replaces(s) for s in found if replaces(s)}
    if not squashes:
        yield from found
        return
    hidden: set[str] = set()
    alias: dict[str, str] = {}
    for squash, originals in squashes.items():
        if squash in keep_originals:
            hidden.add(squash)
        else:
            hidden.update(originals)
            alias.update(dict.fromkeys(originals, squash))
    for script in found:
        if script.revision in hidden:
            continue
        if script.revision not in squashes:
            script.down_revision = _mapped(script.down_revision, alias)
        script.dependencies = _mapped(script.dependencies, alias)
        yield script


def _load_revisions(self: ScriptDirectory) -> Iterator[Script]:
    yield from arrange(_alembic_load(self), getattr(self, _ORIGINALS_FOR, ()))


def install() -> None:
    """Make every ScriptDirectory show squashes (idempotent).  Without a ``replaces`` in any
    file the loader yields exactly what alembic's does."""
    if ScriptDirectory._load_revisions is not _load_revisions:
        ScriptDirectory._load_revisions = _load_revisions  # type: ignore[method-assign]


@dataclass(frozen=True)
class Squash:
    revision: str
    originals: tuple[str, ...]
    shipped: frozenset[str]  # the originals whose files are installed

    @property
    def tip(self) -> str:
        return self.originals[-1]


def squashes(scripts: ScriptDirectory) -> list[Squash]:
    """Every installed squash, with which of its originals are installed beside it."""
    found = list(_alembic_load(scripts))
    ids = {s.revision for s in found}
    return [
        Squash(s.revision, replaces(s), frozenset(r for r in replaces(s) if r in ids))
        for s in found
        if replaces(s)
    ]


@dataclass(frozen=True)
class Chosen:
    """What :func:`choose_view` found.  ``settle``: squashes whose last original the database
    stands on while the originals are gone (the caller records the squash instead);
    ``stranded``: squashes the database stands inside while the originals are gone, with the
    revisions it stands on (nothing installed can migrate it)."""

    settle: list[Squash]
    stranded: list[tuple[Squash, list[str]]]

    def refusal(self) -> str | None:
        if not self.stranded:
            return None
        return stranded_message(*self.stranded[0])


def stranded_message(squash: Squash, inside: list[str]) -> str:
    missing = [r for r in squash.originals if r not in squash.shipped]
    return (
        f"the database stands on {', '.join(inside)}, inside the range that {squash.revision} "
        f"squashes, and this installation no longer ships {', '.join(missing[:3])}"
        f"{' ...' if len(missing) > 3 else ''}: install the release of the module that still "
        f"ships the originals and run '{project().command} upgrade heads' to bring the database "
        "past the range first"
    )


def choose_view(
    scripts: ScriptDirectory, versions: Collection[str], *, originals: bool = False
) -> Chosen:
    """Show ``scripts`` as the database standing on ``versions`` needs them (``originals``:
    every squash's originals, where shipped)."""
    chosen = Chosen([], [])
    try:
        if not any(replaces(s) for s in _scan(scripts)):
            return chosen
    except Exception:  # a graph that does not load: the caller's own read says why
        return chosen
    keep: set[str] = set()
    for squash in squashes(scripts):
        inside = [v for v in versions if v in squash.originals]
        complete = squash.shipped == set(squash.originals)
        if complete and (originals or inside):
            keep.add(squash.revision)
        elif inside and inside != [squash.tip]:
            chosen.stranded.append((squash, inside))
        elif inside:
            chosen.settle.append(squash)
    if set(getattr(scripts, _ORIGINALS_FOR, ())) != keep:
        setattr(scripts, _ORIGINALS_FOR, frozenset(keep))
        scripts.revision_map = RevisionMap(scripts._load_revisions)
    return chosen


def _scan(scripts: ScriptDirectory) -> Iterator[Script]:
    """The scripts of the current graph (a squash hidden behind its originals included)."""
    hidden = getattr(scripts, _ORIGINALS_FOR, ())
    if hidden:
        yield from _alembic_load(scripts)
        return
    mapping = scripts.revision_map._revision_map
    # a ScriptDirectory's map holds Scripts (alembic types them as their base, Revision)
    yield from (s for k, s in mapping.items() if isinstance(s, Script) and k == s.revision)


def replaced(scripts: Iterable[Script]) -> dict[str, str]:
    """original -> squash, for the squashes among ``scripts``."""
    return {o: s.revision for s in scripts for o in replaces(s)}


def as_seen(versions: Iterable[str], scripts: Mapping[str, Script]) -> tuple[str, ...]:
    """``versions`` (alembic_version's rows) as the graph of ``scripts`` sees them: the last
    original of a range shown squashed is the squash; one before it stands where the squash
    starts (the squash is still to run, as the originals after it are)."""
    seen: dict[str, tuple[str, ...]] = {}
    for script in scripts.values():
        originals = replaces(script)
        for original in originals[:-1]:
            seen[original] = tuple(script._versioned_down_revisions)
        if originals:
            seen[originals[-1]] = (script.revision,)
    if not seen:
        return tuple(versions)
    out: list[str] = []
    for version in versions:
        for revision in seen.get(version, (version,)) if version not in scripts else (version,):
            if revision not in out:
                out.append(revision)
    return tuple(sorted(out))
