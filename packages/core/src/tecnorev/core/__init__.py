"""Tecno Rev core: the small public face a domain package needs.

Names are resolved lazily so that importing ``tecnorev.core`` (as every module descriptor
does) costs nothing beyond the descriptor itself.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from tecnorev.core.module import Module, Permission

if TYPE_CHECKING:
    from tecnorev.core.db import create_db_engine, get_engine, session_scope
    from tecnorev.core.errors import (
        ConfigError,
        Conflict,
        DatabaseUnavailable,
        DiscoveryError,
        DomainError,
        MigrationError,
        NotAuthenticated,
        NotFound,
        PermissionDenied,
        RuleViolation,
        TecnorevError,
    )
    from tecnorev.core.events import Event, publish
    from tecnorev.core.mixins import AuditMixin, metadata
    from tecnorev.core.registry import Registry, discover, get_registry
    from tecnorev.core.settings import Settings, get_settings
    from tecnorev.core.types import UTCDateTime, utcnow

_LAZY = {
    "AuditMixin": "tecnorev.core.mixins",
    "metadata": "tecnorev.core.mixins",
    "UTCDateTime": "tecnorev.core.types",
    "utcnow": "tecnorev.core.types",
    "Registry": "tecnorev.core.registry",
    "discover": "tecnorev.core.registry",
    "get_registry": "tecnorev.core.registry",
    "Settings": "tecnorev.core.settings",
    "get_settings": "tecnorev.core.settings",
    "create_db_engine": "tecnorev.core.db",
    "get_engine": "tecnorev.core.db",
    "session_scope": "tecnorev.core.db",
    "TecnorevError": "tecnorev.core.errors",
    "ConfigError": "tecnorev.core.errors",
    "DatabaseUnavailable": "tecnorev.core.errors",
    "DiscoveryError": "tecnorev.core.errors",
    "MigrationError": "tecnorev.core.errors",
    "DomainError": "tecnorev.core.errors",
    "NotFound": "tecnorev.core.errors",
    "Conflict": "tecnorev.core.errors",
    "RuleViolation": "tecnorev.core.errors",
    "NotAuthenticated": "tecnorev.core.errors",
    "PermissionDenied": "tecnorev.core.errors",
    "Event": "tecnorev.core.events",
    "publish": "tecnorev.core.events",
}

__all__ = [
    "AuditMixin",
    "ConfigError",
    "Conflict",
    "DatabaseUnavailable",
    "DiscoveryError",
    "DomainError",
    "Event",
    "MigrationError",
    "Module",
    "NotAuthenticated",
    "NotFound",
    "Permission",
    "PermissionDenied",
    "Registry",
    "RuleViolation",
    "Settings",
    "TecnorevError",
    "UTCDateTime",
    "create_db_engine",
    "discover",
    "get_engine",
    "get_registry",
    "get_settings",
    "metadata",
    "publish",
    "session_scope",
    "utcnow",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tecnorev.core' has no attribute {name!r}")
