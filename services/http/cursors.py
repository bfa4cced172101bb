"""Page cursors: a read's key, handed to clients as an opaque string."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Any

import msgspec

from . import wire
from .errors import invalid


def encode_cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(value)).decode().rstrip("=")


def decode_cursor(cursor: str, type_: type[Any]) -> Any:
    """The value of a cursor this API issued; 422 for anything else (a forged one, too: its
    every part must be something the database can hold)."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = msgspec.json.decode(raw, type=type_)
    except (binascii.Error, ValueError, UnicodeDecodeError, msgspec.DecodeError):
        value = None
    if value is None or not _cursor_part_ok(value):
        raise invalid("cursor", "not a cursor this API issued")
    return value


def _cursor_part_ok(value: Any) -> bool:
    if isinstance(value, tuple | list):
        return all(_cursor_part_ok(part) for part in value)
    if isinstance(value, str):
        return wire.storable(value)
    if isinstance(value, bool):
        return True
    if isinstance(value, int):
        return 0 <= value <= wire.MAX_BIGINT
    if isinstance(value, datetime):
        try:
            value.astimezone(UTC)
        except OverflowError:
            return False
    return True
