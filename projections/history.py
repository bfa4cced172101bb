"""The watch history projection: every watched and unwatched record of each account, late
ones included (product rule 6). Baseline records are kept flagged: one counts only as the first
record of its title (rule 7), which the reads decide over the title as the account's ids link
it then (rule 1b; ``projections/sql/queries.sql``)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import singledispatch

from eventstore import Event, RecordedEvent
from eventstore.queries import load_queries

from .domain import TOMBSTONES, Unwatched, Watched, guid_kind
from .events import account_event, check_stored
from .protocol import Op, Slice

QUERIES = load_queries("projections", "sql/history.sql")


@singledispatch
def _fold(event: Event, account: str, recorded: RecordedEvent) -> list[Op]:
    return []


@_fold.register
def _(event: Watched | Unwatched, account: str, recorded: RecordedEvent) -> list[Op]:
    check_stored(recorded, "watch")
    args = (
        account,
        recorded.position,
        recorded.event_id,
        event.guid,
        guid_kind(event.guid),
        event.event_type,
        event.at,
        event.baseline,
    )
    return [Op(QUERIES["history_record"], args, QUERIES["history_record_many"])]


class WatchHistoryProjection:
    """Each account's watch history."""

    name = "watch_history"
    tables = ("watch_history",)
    purges = TOMBSTONES

    def prepare(self, events: Sequence[RecordedEvent]) -> Sequence[Op]:
        return []

    def apply(self, event: RecordedEvent) -> Sequence[Op]:
        decoded = account_event(event)
        return [] if decoded is None else _fold(decoded[1], decoded[0], event)

    def rebuild(self, part: Slice) -> Sequence[Op]:
        return [
            Op(QUERIES["rebuild_history_cut"], part.args),
            Op(QUERIES["rebuild_history"], part.args),
        ]

    def skipped(self, part: Slice) -> Op:
        return Op(QUERIES["rebuild_history_skipped"], part.args)
