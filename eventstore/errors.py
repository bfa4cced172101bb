"""Errors of the event store. Every one derives from :class:`EventStoreError`.

Driver (asyncpg) errors are translated into these in one place, :mod:`eventstore.store`.
"""

from __future__ import annotations

from typing import Any


class EventStoreError(Exception):
    """The event store could not do what was asked."""

    def __init__(self, message: str | None = None, **context: Any) -> None:
        super().__init__(message or (self.__doc__ or "").strip())
        self.context = context


class InvalidStreamName(EventStoreError, ValueError):
    """A stream name must be '<category>-<id>': a lower-case category, a dash, a non-empty id."""


class ConcurrencyConflict(EventStoreError):
    """The stream is not at the version the append expected."""

    def __init__(self, stream: str, expected: int | None, actual: int | None) -> None:
        where = "has moved on" if actual is None else f"is at version {actual}"
        wanted = "" if expected is None else f", not the expected {expected}"
        super().__init__(
            f"stream {stream!r} {where}{wanted}",
            stream=stream,
            expected=expected,
            actual=actual,
        )
        self.stream = stream
        self.expected = expected
        self.actual = actual


class AppendOnlyViolation(EventStoreError):
    """The event log is append-only: rows can only be removed through purge()."""


class UnknownEventType(EventStoreError):
    """No event class is registered for this event type."""


class UnsupportedSchemaVersion(EventStoreError):
    """The stored event's schema version cannot be read by this release."""


class ImportFailed(EventStoreError):
    """An exported line could not be imported."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}", line=line)
        self.line = line
        self.reason = reason


class MigrationError(EventStoreError):
    """The database schema could not be brought up to date."""
