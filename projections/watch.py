"""The watch projections: current state per title with the servers' outbound queues, and the
watch history.

Each is a pure fold: one handler per event type (``functools.singledispatch``) returning the
SQL operations that fold the event in. Last-writer-wins lives in the SQL (a conditional
upsert on (at, position)), so applying the same events in any order of arrival — and
replaying them — gives the same rows.

The outbound queues are folded by the state projection itself, in the same transactions: a
title is queued for an account's servers exactly when its state changes (a late, older event
queues nothing), and a server is never handed a queued title ahead of the state it points to.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import singledispatch

from eventstore import Event, RecordedEvent, StreamName

from .domain import (
    AccessAccepted,
    AccessLeft,
    AccessRevoked,
    AccountCreated,
    Rated,
    ServerRegistered,
    SyncChanged,
    Unrated,
    Unwatched,
    Watched,
    guid_kind,
    registry,
)
from .runner import QUERIES, Op

_CATEGORIES = frozenset({"account", "watch"})


def _decode(recorded: RecordedEvent) -> tuple[str, Event] | None:
    """(account id, event) of an account's event this module knows, else None."""
    name = StreamName.parse(recorded.stream)
    if name.category not in _CATEGORIES or not registry.is_known(recorded.type):
        return None
    return name.id, registry.decode(recorded)


# -- current state and outbound queues --------------------------------------------------------


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


@_state.register
def _(event: AccountCreated, account: str, recorded: RecordedEvent) -> list[Op]:
    return [Op(QUERIES["queue_account"], (account,))]


@_state.register
def _(event: SyncChanged, account: str, recorded: RecordedEvent) -> list[Op]:
    if event.enabled:
        # Every server the account has access to gets its whole state and a baseline request.
        return [
            Op(QUERIES["queue_sync"], (account, True)),
            Op(QUERIES["queue_backfill"], (account, None)),
        ]
    return [
        Op(QUERIES["queue_sync"], (account, False)),
        Op(QUERIES["queue_drop_account"], (account,)),
    ]


@_state.register
def _(event: ServerRegistered | AccessAccepted, account: str, recorded: RecordedEvent) -> list[Op]:
    # While sync is on, a server newly accessible gets the whole state and a baseline request.
    # An offer (access_offered, or a legacy access_granted) gives the server nothing until the
    # account accepts it (product rule 3).
    return [
        Op(QUERIES["queue_access_add"], (account, event.server_id)),
        Op(QUERIES["queue_backfill"], (account, event.server_id)),
    ]


@_state.register
def _(event: AccessRevoked | AccessLeft, account: str, recorded: RecordedEvent) -> list[Op]:
    return [Op(QUERIES["queue_access_remove"], (account, event.server_id))]


class WatchStateProjection:
    """Each account's current watch state and rating per title (product rule 4), and every
    server's outbound queue (product rule 8)."""

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
    # A baseline record only starts a title's history (product rule 7).
    query = QUERIES["history_baseline"] if event.baseline else QUERIES["history_record"]
    return [Op(query, args)]


class WatchHistoryProjection:
    """Each account's watch history: every watched and unwatched record (product rule 6)."""

    name = "watch_history"

    def apply(self, event: RecordedEvent) -> Sequence[Op]:
        decoded = _decode(event)
        return [] if decoded is None else _history(decoded[1], decoded[0], event)


def all_projections() -> list[WatchStateProjection | WatchHistoryProjection]:
    """Every projection the service runs, in a stable order."""
    return [WatchStateProjection(), WatchHistoryProjection()]
