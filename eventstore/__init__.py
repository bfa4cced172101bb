"""watchledger's append-only event log on PostgreSQL.

Knows nothing of watch states: streams, events, positions, tailing, migrations.
"""

from .errors import (
    AppendOnlyViolation,
    ConcurrencyConflict,
    EventStoreError,
    ImportFailed,
    InvalidStreamName,
    MigrationError,
    UnknownEventType,
    UnsupportedSchemaVersion,
)
from .events import Event, EventRegistry
from .records import (
    AppendResult,
    LogCursor,
    NewEvent,
    PurgeResult,
    RecordedEvent,
    StreamName,
)
from .store import EventStore
from .tailing import LogFollow, SafePage, SafeReader, SnapshotXminReader
from .wakeups import HintFollower, KeyedWakeups, LogListener, Wakeups

MIGRATION_PACKAGE = "eventstore"

__all__ = [
    "MIGRATION_PACKAGE",
    "AppendOnlyViolation",
    "AppendResult",
    "ConcurrencyConflict",
    "Event",
    "EventRegistry",
    "EventStore",
    "EventStoreError",
    "HintFollower",
    "ImportFailed",
    "InvalidStreamName",
    "KeyedWakeups",
    "LogCursor",
    "LogFollow",
    "LogListener",
    "MigrationError",
    "NewEvent",
    "PurgeResult",
    "RecordedEvent",
    "SafePage",
    "SafeReader",
    "SnapshotXminReader",
    "StreamName",
    "UnknownEventType",
    "UnsupportedSchemaVersion",
    "Wakeups",
]
