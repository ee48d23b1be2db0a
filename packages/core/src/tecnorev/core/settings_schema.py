"""Every setting of every installed part, listed and validated together.

The owners of settings are core (:class:`~tecnorev.core.settings.CoreSettings` and the test
harness's), each module through ``Module.settings`` (a dotted path to its settings class),
and other distributions through the ``tecnorev.settings`` entry point.  An entry point names
either a :class:`~tecnorev.core.settings.SettingsGroup` subclass, or a function returning
plain descriptions (objects with ``name``, ``default``, ``description``, ``secret`` and
``error``): the form the migration engine uses, since it reads its own settings without
pydantic.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from importlib.metadata import entry_points
from typing import Any

from pydantic import SecretStr

from tecnorev.core.errors import ConfigError
from tecnorev.core.settings import (
    CoreSettings,
    SettingsGroup,
    TestingSettings,
    load_env,
    parse_duration,
    raw_value,
    source_of,
)

ENTRY_POINT_GROUP = "tecnorev.settings"
MASK = "********"


@dataclass(frozen=True)
class Setting:
    """One setting as ``tecnorev settings`` shows it."""

    name: str
    owner: str
    description: str
    default: str
    value: str  # as given (masked when secret), or "" when unset
    source: str  # "default", "environment" or ".env (path)"
    secret: bool = False
    error: str | None = None


def _owners() -> Iterator[tuple[str, Any]]:
    """(owner, settings class or describing function) of every installed part."""
    yield "core", CoreSettings
    yield "core (tests)", TestingSettings
    from tecnorev.core.registry import get_registry

    for module in get_registry().modules:
        if module.settings:
            yield module.name, _load(module.settings, f"module {module.name!r}")
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name):
        yield ep.name, _load(ep.value, f"the {ENTRY_POINT_GROUP} entry point {ep.name!r}")


def _load(dotted: str, whose: str) -> Any:
    path, _, attribute = dotted.partition(":")
    try:
        return getattr(importlib.import_module(path), attribute)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"the settings of {whose} ({dotted}) cannot be loaded: {exc}") from exc


def _format_default(field: Any) -> str:
    extra = field.json_schema_extra or {}
    if isinstance(extra, dict) and "default_text" in extra:
        return str(extra["default_text"])
    default = field.get_default(call_default_factory=True)
    if default is None or default == []:  # unset, or an empty list (no origins)
        return "-"
    if isinstance(default, list):
        return ",".join(str(item) for item in default)
    if isinstance(default, bool):
        return "1" if default else "0"
    if isinstance(default, float) and any(
        getattr(m, "func", None) is parse_duration for m in field.metadata
    ):
        return f"{default * 1000:g}ms" if default < 1 else f"{default:g}s"
    return str(default)


def _is_secret(field: Any) -> bool:
    return "SecretStr" in str(field.annotation) or field.annotation is SecretStr


def _problems(group: type[SettingsGroup]) -> dict[str, str]:
    try:
        group()
    except ConfigError as exc:
        if not exc.problems:
            raise
        return exc.problems
    return {}


def _describe_group(owner: str, group: type[SettingsGroup]) -> Iterator[Setting]:
    problems = _problems(group)
    for field_name, field in group.model_fields.items():
        name = group.variable(field_name)
        secret = _is_secret(field)
        raw = raw_value(name)
        yield Setting(
            name=name,
            owner=owner,
            description=field.description or "",
            default=_format_default(field),
            value=(MASK if secret else raw) if raw else "",
            source=source_of(name),
            secret=secret,
            error=problems.get(name),
        )


def _describe_plain(owner: str, entries: Iterable[Any]) -> Iterator[Setting]:
    for entry in entries:
        raw = raw_value(entry.name)
        secret = bool(getattr(entry, "secret", False))
        yield Setting(
            name=entry.name,
            owner=owner,
            description=entry.description,
            default=str(entry.default),
            value=(MASK if secret else raw) if raw else "",
            source=source_of(entry.name),
            secret=secret,
            error=getattr(entry, "error", None),
        )


def describe_settings() -> list[Setting]:
    """Every setting of every installed part, in owner order; a setting two parts read (the
    engine shares core's connect timeout and debug switch) is listed once, with both
    owners."""
    load_env()
    listed: dict[str, Setting] = {}
    for owner, source in _owners():
        if isinstance(source, type) and issubclass(source, SettingsGroup):
            settings = _describe_group(owner, source)
        else:
            settings = _describe_plain(owner, source())
        for setting in settings:
            seen = listed.get(setting.name)
            if seen is None:
                listed[setting.name] = setting
            elif owner not in seen.owner.split(", "):
                merged = f"{seen.owner}, {owner}"
                error = seen.error or setting.error
                listed[setting.name] = replace(seen, owner=merged, error=error)
    return list(listed.values())


def validate_settings() -> None:
    """Refuse to start with any bad setting, naming every one of them in one error."""
    bad = [s.error for s in describe_settings() if s.error]
    if len(bad) == 1:
        raise ConfigError(bad[0])
    if bad:
        raise ConfigError(f"{len(bad)} settings cannot be used: " + "; ".join(bad))
