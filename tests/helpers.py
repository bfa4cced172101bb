"""Small builders shared by the tests."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec

from eventstore import NewEvent


def event(n: int = 0, *, type: str = "noted", event_id: uuid.UUID | None = None) -> NewEvent:
    """A new event whose body is ``{"n": n}``."""
    return NewEvent(
        type=type,
        data=msgspec.Raw(msgspec.json.encode({"n": n})),
        event_id=event_id or uuid.uuid4(),
    )


def body(data: msgspec.Raw) -> dict[str, Any]:
    decoded: dict[str, Any] = msgspec.json.decode(data)
    return decoded
