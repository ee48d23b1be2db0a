"""Opaque keyset cursors, shared by every listing: a page hands out where the next one starts
(one or more values of its sort key), and a cursor that was not handed out is a 422."""

from __future__ import annotations

import base64
import binascii

from tecnorev.core.errors import RuleViolation

INT4_MAX = 2**31 - 1


class InvalidCursor(RuleViolation):
    code = "invalid_cursor"


def encode_cursor(*parts: str | int) -> str:
    return base64.urlsafe_b64encode("|".join(map(str, parts)).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, count: int) -> list[str]:
    """The ``count`` values ``cursor`` holds; raises ``InvalidCursor``."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise _invalid() from None
    parts = raw.split("|")
    if len(parts) != count:
        raise _invalid()
    return parts


def cursor_id(text: str) -> int:
    """An id read from a cursor; raises ``InvalidCursor``."""
    if not (text.isascii() and text.isdigit()) or len(text) > 10 or not 0 < int(text) <= INT4_MAX:
        raise _invalid()
    return int(text)


def decode_id_cursor(cursor: str) -> int:
    """The id after which the next page of an id-ordered listing starts."""
    (after,) = decode_cursor(cursor, 1)
    return cursor_id(after)


def _invalid() -> InvalidCursor:
    return InvalidCursor("the cursor is not one this listing handed out")
