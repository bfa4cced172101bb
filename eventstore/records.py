"""The values the event store takes and gives: frozen, typed, cheap to copy."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any, ClassVar

import msgspec

from .errors import InvalidStreamName

_STREAM = re.compile(r"^([a-z][a-z0-9_]*)-(.+)$")


class StreamName(msgspec.Struct, frozen=True):
    """A stream is named '<category>-<id>'. The id is the partition the stream belongs to
    (in watchledger, an account): it is stored as ``account_id`` and is part of every key."""

    category: str
    id: str

    @classmethod
    def parse(cls, stream: str) -> StreamName:
        match = _STREAM.match(stream)
        if match is None or len(stream) > 200:
            raise InvalidStreamName(f"invalid stream name {stream!r}: expected '<category>-<id>'")
        return cls(match.group(1), match.group(2))

    def __str__(self) -> str:
        return f"{self.category}-{self.id}"


class NewEvent(msgspec.Struct, frozen=True):
    """An event to append. ``data`` is its JSON body; the id makes retries safe.

    ``idempotency_keys`` are more names for the event: an append is a duplicate of a stored
    event when its id equals the stored event's id, or one of its keys equals one of the stored
    event's keys (an id and a key are never compared)."""

    type: str
    data: msgspec.Raw
    schema_version: int = 1
    event_id: uuid.UUID = msgspec.field(default_factory=uuid.uuid4)
    idempotency_keys: tuple[uuid.UUID, ...] = ()

    @property
    def keys(self) -> set[uuid.UUID]:
        """Every name of the event: two events of one append may share none."""
        return {self.event_id, *self.idempotency_keys}


class LogCursor(msgspec.Struct, frozen=True, order=True):
    """A place in the log as tailing sees it: after this transaction id and position.

    Tailing orders events by (transaction id, position), not by position alone: that is the
    order in which they become safe to read (see :mod:`eventstore.tailing`)."""

    transaction_id: int
    position: int

    START: ClassVar[LogCursor]

    def encode(self) -> str:
        """An opaque, URL-safe text form (for HTTP cursors and SSE event ids)."""
        return f"{self.transaction_id:x}.{self.position:x}"

    @classmethod
    def decode(cls, text: str) -> LogCursor:
        """Inverse of :meth:`encode`; raises ValueError on anything else."""
        xid, sep, position = text.partition(".")
        if not sep:
            raise ValueError(f"invalid log cursor {text!r}")
        cursor = cls(int(xid, 16), int(position, 16))
        if cursor.transaction_id < 0 or cursor.position < 0:
            raise ValueError(f"invalid log cursor {text!r}")
        return cursor


LogCursor.START = LogCursor(0, 0)


class RecordedEvent(msgspec.Struct, frozen=True):
    """An event as stored in the log."""

    position: int
    stream: str
    version: int
    event_id: uuid.UUID
    type: str
    schema_version: int
    data: msgspec.Raw
    recorded_at: datetime
    transaction_id: int

    @property
    def cursor(self) -> LogCursor:
        """The tailing cursor just after this event."""
        return LogCursor(self.transaction_id, self.position)


def event_from_row(row: Any) -> RecordedEvent:
    """A :class:`RecordedEvent` from a row whose first nine columns are the event's fields,
    in declaration order (every read query of :mod:`eventstore.queries` selects them so)."""
    return RecordedEvent(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8])


class AppendResult(msgspec.Struct, frozen=True):
    """What became of one appended event: stored now, or stored before (a duplicate id)."""

    event_id: uuid.UUID
    position: int
    version: int
    duplicate: bool
    transaction_id: int

    @property
    def cursor(self) -> LogCursor:
        """The tailing cursor of this event: a reader past it has seen it."""
        return LogCursor(self.transaction_id, self.position)


class PurgeResult(msgspec.Struct, frozen=True):
    """How many events a purge removed, and where its tombstone stands."""

    deleted: int
    tombstone_position: int
    tombstone_version: int
    # Where the tombstone stands in tailing order: wait for it to be applied.
    tombstone_cursor: LogCursor
