"""The watch state projection: each account's current watch state and rating per title
(product rule 4), which accounts sync and which servers each one has access to (rules 3 and
8) — and, as state changes, the servers' outbound queues (:mod:`projections.queues`).

One handler per event type (``functools.singledispatch``) returns the statements that fold
the event in. Last-writer-wins lives in the SQL (a conditional upsert on (at, position)), so
applying the same events in any order of arrival — and replaying them — gives the same rows.
A title is queued for an account's servers exactly when its state changes (a late, older event
queues nothing), in the same transaction, so a server is never handed a queued title ahead of
the state it points to.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import singledispatch

from eventstore import Event, RecordedEvent
from eventstore.queries import load_queries

from . import queues
from .domain import (
    TOMBSTONES,
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
    WatchStateKept,
    guid_kind,
)
from .events import account_event, check_stored
from .protocol import Op, Slice

QUERIES = load_queries("projections", "sql/state.sql")

TABLES = ("watch_state", "title_ids", "sync_accounts", "sync_access")


@singledispatch
def _fold(event: Event, account: str, recorded: RecordedEvent) -> list[Op]:
    return []


@_fold.register
def _(event: Watched | Unwatched, account: str, recorded: RecordedEvent) -> list[Op]:
    check_stored(recorded, "watch")
    args = (
        account,
        [event.guid, *event.ids],
        guid_kind(event.guid),
        isinstance(event, Watched),
        event.at,
        recorded.position,
        recorded.recorded_at,
    )
    return [Op(QUERIES["state_watch"], args)]


@_fold.register
def _(event: WatchStateKept, account: str, recorded: RecordedEvent) -> list[Op]:
    check_stored(recorded, "watch")
    args = (
        account,
        [event.guid, *event.ids],
        guid_kind(event.guid),
        event.watched,
        event.at,
        recorded.position,
        event.recorded_at,
    )
    return [Op(QUERIES["state_keep"], args)]


@_fold.register
def _(event: Rated | Unrated, account: str, recorded: RecordedEvent) -> list[Op]:
    check_stored(recorded, "watch")
    rating = event.rating if isinstance(event, Rated) else None
    args = (
        account,
        [event.guid, *event.ids],
        guid_kind(event.guid),
        rating,
        event.at,
        recorded.position,
        recorded.recorded_at,
    )
    return [Op(QUERIES["state_rate"], args)]


@_fold.register
def _(event: AccountCreated, account: str, recorded: RecordedEvent) -> list[Op]:
    return [Op(QUERIES["account_add"], (account,))]


@_fold.register
def _(event: SyncChanged, account: str, recorded: RecordedEvent) -> list[Op]:
    setting = Op(QUERIES["account_sync"], (account, event.enabled))
    if event.enabled:
        # Every server the account has access to gets its whole state and a baseline request.
        return [setting, queues.backfill(account)]
    return [setting, queues.drop_account(account)]


@_fold.register
def _(event: ServerRegistered | AccessAccepted, account: str, recorded: RecordedEvent) -> list[Op]:
    # While sync is on, a server newly accessible gets the whole state and a baseline request.
    # An offer (access_offered, or a legacy access_granted) gives the server nothing until the
    # account accepts it (product rule 3).
    return [
        Op(QUERIES["access_add"], (account, event.server_id)),
        queues.backfill(account, event.server_id),
    ]


@_fold.register
def _(event: AccessRevoked | AccessLeft, account: str, recorded: RecordedEvent) -> list[Op]:
    return [
        Op(QUERIES["access_remove"], (account, event.server_id)),
        queues.drop_server(account, event.server_id),
    ]


class WatchStateProjection:
    """Each account's current watch state and rating per title, and what the outbound queues
    are decided on (who syncs, which servers have access)."""

    name = "watch_state"
    tables = TABLES
    purges = TOMBSTONES

    def apply(self, event: RecordedEvent) -> Sequence[Op]:
        decoded = account_event(event)
        return [] if decoded is None else _fold(decoded[1], decoded[0], event)

    def rebuild(self, part: Slice) -> Sequence[Op]:
        # The cut first (a state deletion in the slice forgets what earlier slices gave), then
        # the links (so the folds find every event's title), then the folds, each of which
        # leaves out what precedes the slice's last deletion.
        return [
            Op(QUERIES[name], part.args)
            for name in (
                "rebuild_state_cut",
                "rebuild_title_links",
                "rebuild_state_watch",
                "rebuild_state_rate",
                "rebuild_state_accounts",
                "rebuild_state_access",
            )
        ]

    def skipped(self, part: Slice) -> Op:
        return Op(QUERIES["rebuild_state_skipped"], part.args)
