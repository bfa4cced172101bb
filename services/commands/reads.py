"""Reads for the edges: an account's counts, watch state and history (the projections'
tables), the log page by page, and where every projection stands.

Pages are keyset pages: a read takes the key to start after (or before) and says whether
more follow; how a key travels to a client (an opaque cursor) is the edge's business.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Generic, Literal, TypeVar

import asyncpg
import msgspec

from eventstore import EventStore, RecordedEvent
from projections import runner as projection_runner
from projections.domain import TitleKind
from projections.runner import QUERIES as PROJECTION_QUERIES

from .progress import PROJECTION_NAMES

T = TypeVar("T")

# A history key before every record: later than any `at` an action may have.
_END_OF_TIME = datetime(9999, 1, 1, tzinfo=UTC)


class Page(msgspec.Struct, Generic[T], frozen=True):
    """Items in key order, and whether more follow the last one."""

    items: list[T]
    more: bool


class Counts(msgspec.Struct, frozen=True):
    """Titles an account has watched, by kind (its profile's counts)."""

    movies: int
    episodes: int


class TitleState(msgspec.Struct, frozen=True):
    """A title's current watch state and rating for an account."""

    guid: str  # the title's guid: the first of its ids in shown order (rule 1b)
    ids: list[str]  # every id of the title, its guid first
    watched: bool
    watched_at: datetime | None
    rating: int | None
    rated_at: datetime | None
    updated_at: datetime


class HistoryRecord(msgspec.Struct, frozen=True):
    """One watched or unwatched record of an account's history; ``(at, position)`` is its
    key."""

    event_id: uuid.UUID
    guid: str
    type: Literal["watched", "unwatched"]
    at: datetime
    position: int


class ProjectionState(msgspec.Struct, frozen=True):
    """Where a projection stands against the head of the log."""

    name: str
    position: int
    head: int
    lag: int  # events not yet applied
    dead_letters: int  # events it could not apply, kept in projection_dead_letters


class Reads:
    def __init__(self, pool: asyncpg.Pool[Any], store: EventStore) -> None:
        self.pool = pool
        self.store = store

    async def counts(self, account_id: str) -> Counts:
        row = await self.pool.fetchrow(PROJECTION_QUERIES["profile_counts"], account_id)
        assert row is not None
        return Counts(movies=row["movies"], episodes=row["episodes"])

    async def state_page(
        self,
        account_id: str,
        *,
        after: str,
        watched: bool | None,
        kind: TitleKind | None,
        updated_after: datetime | None,
        limit: int,
    ) -> Page[TitleState]:
        """Titles with a state, by GUID after ``after`` ("" for the first page)."""
        rows = await self.pool.fetch(
            PROJECTION_QUERIES["state_page"],
            account_id,
            after,
            watched,
            kind,
            updated_after,
            limit + 1,
        )
        return Page([_state(row) for row in rows[:limit]], len(rows) > limit)

    async def state_one(self, account_id: str, guid: str) -> TitleState | None:
        row = await self.pool.fetchrow(PROJECTION_QUERIES["state_one"], account_id, guid)
        return None if row is None else _state(row)

    async def history_page(
        self,
        account_id: str,
        *,
        guid: str | None,
        before: tuple[datetime, int] | None,
        limit: int,
    ) -> Page[HistoryRecord]:
        """History records newest first, before the key ``(at, position)`` (None: from the
        newest)."""
        before_at, before_position = before or (_END_OF_TIME, 0)
        rows = await self.pool.fetch(
            PROJECTION_QUERIES["history_page"],
            account_id,
            guid,
            before_at,
            before_position,
            limit + 1,
        )
        items = [
            HistoryRecord(r["event_id"], r["guid"], r["type"], r["at"], r["position"])
            for r in rows[:limit]
        ]
        return Page(items, len(rows) > limit)

    async def log_page(self, after: int, limit: int) -> Page[RecordedEvent]:
        """The log in position order, after position ``after``."""
        events = await self.store.read_all(after=after, limit=limit + 1)
        return Page(events[:limit], len(events) > limit)

    async def projections(self) -> list[ProjectionState]:
        """Every projection's position, lag and dead letters."""
        async with self.pool.acquire() as conn:
            head: int = await conn.fetchval(PROJECTION_QUERIES["log_head"])
            items = []
            for name in PROJECTION_NAMES:
                cursor = await projection_runner.checkpoint(conn, name)
                lag = await projection_runner.lag(conn, cursor)
                dead: int = await conn.fetchval(PROJECTION_QUERIES["dead_letters_count"], name)
                items.append(ProjectionState(name, cursor.position, head, lag, dead))
        return items


def _state(row: asyncpg.Record) -> TitleState:
    return TitleState(
        guid=row["guid"],
        ids=row["ids"],
        watched=row["watched"],
        watched_at=row["watched_at"],
        rating=row["rating"],
        rated_at=row["rated_at"],
        updated_at=row["updated_at"],
    )
