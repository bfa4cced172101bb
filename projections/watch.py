"""The watch projections: current state per title, and the watch history.

Each is a pure fold: one handler per event type (``functools.singledispatch``) returning the
SQL operations that fold the event in. Last-writer-wins lives in the SQL (a conditional
upsert on (at, position)), so applying the same events in any order of arrival — and
replaying them — gives the same rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import singledispatch

from eventstore import Event, RecordedEvent, StreamName

from .domain import Rated, Unrated, Unwatched, Watched, guid_kind, registry
from .runner import QUERIES, Op

WATCH_CATEGORY = "watch"


def _decode(recorded: RecordedEvent) -> tuple[str, Event] | None:
    """(account id, event) of a watch-stream event this module knows, else None."""
    name = StreamName.parse(recorded.stream)
    if name.category != WATCH_CATEGORY or not registry.is_known(recorded.type):
        return None
    return name.id, registry.decode(recorded)


# -- current state ----------------------------------------------------------------------------


@singledispatch
def _state(event: Event, account: str, recorded: RecordedEvent) -> list[Op]:
    return []


@_state.register
def _(event: Watched | Unwatched, account: str, recorded: RecordedEvent) -> list[Op]:
    args = (
        account,
        event.guid,
        guid_kind(event.guid),
        isinstance(event, Watched),
        event.at,
        recorded.position,
        recorded.recorded_at,
    )
    return [Op(QUERIES["state_watch"], args)]


@_state.register
def _(event: Rated | Unrated, account: str, recorded: RecordedEvent) -> list[Op]:
    rating = event.rating if isinstance(event, Rated) else None
    args = (
        account,
        event.guid,
        guid_kind(event.guid),
        rating,
        event.at,
        recorded.position,
        recorded.recorded_at,
    )
    return [Op(QUERIES["state_rate"], args)]


class WatchStateProjection:
    """Each account's current watch state and rating per title (product rule 4)."""

    name = "watch_state"

    def apply(self, event: RecordedEvent) -> Sequence[Op]:
        decoded = _decode(event)
        return [] if decoded is None else _state(decoded[1], decoded[0], event)


# -- history ----------------------------------------------------------------------------------


@singledispatch
def _history(event: Event, account: str, recorded: RecordedEvent) -> list[Op]:
    return []


@_history.register
def _(event: Watched | Unwatched, account: str, recorded: RecordedEvent) -> list[Op]:
    args = (
        account,
        recorded.position,
        recorded.event_id,
        event.guid,
        guid_kind(event.guid),
        event.event_type,
        event.at,
    )
    return [Op(QUERIES["history_record"], args)]


class WatchHistoryProjection:
    """Each account's watch history: every watched and unwatched record (product rule 6)."""

    name = "watch_history"

    def apply(self, event: RecordedEvent) -> Sequence[Op]:
        decoded = _decode(event)
        return [] if decoded is None else _history(decoded[1], decoded[0], event)


def all_projections() -> list[WatchStateProjection | WatchHistoryProjection]:
    """Every projection the service runs, in a stable order."""
    return [WatchStateProjection(), WatchHistoryProjection()]
