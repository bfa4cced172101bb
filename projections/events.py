"""Decoding the log's events for the folds, and the checks that keep a live fold to what the
set-based rebuild reads."""

from __future__ import annotations

import re

import msgspec

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


class _Stamped(msgspec.Struct):
    """The fields of a watch event (watched, rated, ...) as stored, before decoding."""

    guid: str
    at: str


_STAMPED = msgspec.json.Decoder(_Stamped)
# What the set-based rebuilds take for a title id and a time (the `rebuild_*` statements): an
# event outside them (only an import can record one) is left out there, and dead-lettered live.
_GUID = re.compile(r"[a-z]+://[a-z]+/", re.ASCII)
_AT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?(Z|[+-]\d\d:\d\d)", re.ASCII)


def check_stored(recorded: RecordedEvent, category: str) -> None:
    """Raise (the runner dead-letters the event) for what the rebuilds leave out: an event in
    another category of stream than ``category``, or a watch event whose title id or time is
    of another form than the rebuild reads. Decoding alone accepts both."""
    if StreamName.parse(recorded.stream).category != category:
        raise ValueError(f"a {recorded.type} event belongs in an account's {category} stream")
    if category == "watch":
        stored = _STAMPED.decode(recorded.data)
        if not _GUID.match(stored.guid) or not _AT.fullmatch(stored.at):
            raise ValueError(f"a {recorded.type} event with a title id or time of another form")
