"""Decoding the log's events for the folds."""

from __future__ import annotations

from eventstore import Event, RecordedEvent, StreamName

from .domain import registry

_CATEGORIES = frozenset({"account", "watch"})


def account_event(recorded: RecordedEvent) -> tuple[str, Event] | None:
    """(account id, event) of an account's event the domain knows, else None. Raises if a
    known event cannot be decoded (the runner dead-letters it)."""
    name = StreamName.parse(recorded.stream)
    if name.category not in _CATEGORIES or not registry.is_known(recorded.type):
        return None
    return name.id, registry.decode(recorded)
