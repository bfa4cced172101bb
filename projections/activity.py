"""The activity projection (product rule 9): each account's watched and rated actions — never
unwatched, unrated or baseline records — and its visibility; the feeds read from it.

**Fan-out on read, on purpose.** A feed is merged when it is read: one leg per friend, each
leg the newest rows of that friend off the ``(account_id, at, position)`` index (an index-only
scan holding every column a page shows), at most a page each, merged and cut to a page. Its
cost grows with friends times page size, not with how much activity they have, and visibility,
friendships and both deletions act on one row per action. Fan-out on write would copy every
action into each friend's feed: an account with hundreds of friends would turn one action into
hundreds of rows, a new friendship or a visibility change would rewrite whole feeds (rule 9
applies a change of setting to past activity at once), and a deletion would chase copies
through every friend's feed.

A deletion's tombstone rebuilds the account's rows (:attr:`purges`): the purged watched or
rated events are gone from the log, so their items leave every feed, and a stream sends only
rows that are still there.

Streams follow new rows in the order the projection applied them, which is the log's tailing
order (``transaction_id``, ``position``): a cursor of that pair never skips a row.
:class:`FeedWakeups` wakes just the streams that have something new.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from functools import singledispatch
from typing import Any, Literal, TypeAlias

import asyncpg
import msgspec

from eventstore import (
    Event,
    HintFollower,
    KeyedWakeups,
    LogCursor,
    RecordedEvent,
    StreamName,
    Wakeups,
)
from eventstore.database import Connection
from eventstore.queries import load_queries

from .domain import TOMBSTONES, AccountCreated, Rated, VisibilityChanged, Watched
from .events import account_event, check_stored
from .protocol import Op, Slice

QUERIES = load_queries("projections", "sql/activity.sql")

_FOLDED = frozenset(
    {
        Watched.event_type,
        Rated.event_type,
        AccountCreated.event_type,
        VisibilityChanged.event_type,
    }
)

Reader: TypeAlias = "Connection | asyncpg.Pool[Any]"


@singledispatch
def _fold(event: Event, account: str, recorded: RecordedEvent) -> list[Op]:
    return []


@_fold.register
def _(event: Watched | Rated, account: str, recorded: RecordedEvent) -> list[Op]:
    check_stored(recorded, "watch")
    if event.baseline:
        return []  # a server's summary of the past: never activity (rule 7)
    rating = event.rating if isinstance(event, Rated) else None
    args = (
        account,
        recorded.position,
        recorded.transaction_id,
        recorded.event_id,
        event.event_type,
        event.guid,
        rating,
        event.at,
    )
    return [Op(QUERIES["activity_add"], args, QUERIES["activity_add_many"])]


@_fold.register
def _(event: AccountCreated, account: str, recorded: RecordedEvent) -> list[Op]:
    if StreamName.parse(recorded.stream).category != "account":
        return []  # not an account's creation (the rebuild reads them from account streams)
    return [Op(QUERIES["activity_profile_add"], (account,))]


@_fold.register
def _(event: VisibilityChanged, account: str, recorded: RecordedEvent) -> list[Op]:
    check_stored(recorded, "account")
    return [Op(QUERIES["activity_profile_visibility"], (account, event.visibility))]


class ActivityProjection:
    """Each account's activity and who may see it."""

    name = "activity"
    tables = ("activity", "activity_profiles")
    purges = TOMBSTONES

    def prepare(self, events: Sequence[RecordedEvent]) -> Sequence[Op]:
        return []

    def apply(self, event: RecordedEvent) -> Sequence[Op]:
        if event.type not in _FOLDED:
            return []  # not decoded either: an event it cannot read is another fold's poison
        decoded = account_event(event)
        return [] if decoded is None else _fold(decoded[1], decoded[0], event)

    def rebuild(self, part: Slice) -> Sequence[Op]:
        return [
            Op(QUERIES["rebuild_activity"], part.args),
            Op(QUERIES["rebuild_activity_profiles"], part.args),
        ]

    def skipped(self, part: Slice) -> Op:
        return Op(QUERIES["rebuild_activity_skipped"], part.args)


# -- reads --------------------------------------------------------------------------------------


class ActivityItem(msgspec.Struct, frozen=True):
    """One watched or rated action, with its keys: (``at``, ``position``) orders pages,
    ``cursor`` (the log's tailing order) orders streams."""

    actor: str
    position: int
    cursor: LogCursor
    event_id: uuid.UUID
    type: Literal["watched", "rated"]
    guid: str
    rating: int | None
    at: datetime


def _item(row: asyncpg.Record) -> ActivityItem:
    return ActivityItem(
        actor=row["account_id"],
        position=row["position"],
        cursor=LogCursor(row["transaction_id"], row["position"]),
        event_id=row["event_id"],
        type=row["type"],
        guid=row["guid"],
        rating=row["rating"],
        at=row["at"],
    )


async def visible(conn: Reader, account: str, viewer: str) -> bool:
    """Whether ``viewer`` may see ``account``'s activity (False: no such account either)."""
    seen: bool | None = await conn.fetchval(QUERIES["activity_visible"], account, viewer)
    return bool(seen)


async def activity_page(
    conn: Reader, account: str, before: tuple[datetime, int], limit: int
) -> list[ActivityItem]:
    """One account's activity, newest first, before the key (``at``, ``position``)."""
    rows = await conn.fetch(QUERIES["activity_page"], account, *before, limit)
    return [_item(row) for row in rows]


async def feed_page(
    conn: Reader, viewer: str, before: tuple[datetime, int], limit: int
) -> list[ActivityItem]:
    """The activity of the viewer's friends who let friends see it, newest first, before the
    key (``at``, ``position``), at most ``limit``.

    Two passes keep a page's cost near the page, not friends times page: the first takes
    each friend's newest k rows (k twice a fair share of the page); it is exact unless some
    friend gave all k and its k-th row is newer than the page's last — only such friends,
    whose older rows could still belong on the page, are read again, a page's worth each."""
    rows = await conn.fetch(QUERIES["feed_legs"], viewer, *before, limit, None)
    if not rows:
        return []
    k: int = rows[0]["k"]
    legs: dict[str, list[asyncpg.Record]] = {}
    for row in rows:
        legs.setdefault(row["account_id"], []).append(row)
    ordered = sorted(rows, key=_key, reverse=True)
    last = _key(ordered[limit - 1]) if len(ordered) >= limit else None
    deeper = [
        friend
        for friend, leg in legs.items()
        if len(leg) == k and (last is None or min(map(_key, leg)) > last)
    ]
    if deeper and k < limit:
        again = await conn.fetch(QUERIES["feed_legs"], viewer, *before, limit, deeper)
        refetched = set(deeper)
        kept = [row for row in rows if row["account_id"] not in refetched]
        ordered = sorted([*kept, *again], key=_key, reverse=True)
    return [_item(row) for row in ordered[:limit]]


def _key(row: asyncpg.Record) -> tuple[datetime, int]:
    """A row's place in a feed (pages run from the largest key down)."""
    return (row["at"], row["position"])


async def feed_after(
    conn: Reader, viewer: str, after: LogCursor, through: LogCursor | None, limit: int
) -> list[ActivityItem]:
    """New activity for the viewer's stream after a log cursor and up to ``through`` (None: no
    bound), in the order it was applied, with friendships and visibility as they are now."""
    [items] = await feed_after_many(conn, [(viewer, after, through)], limit)
    return items


FeedRead: TypeAlias = tuple[str, LogCursor, LogCursor | None]
"""One stream's read: (viewer, after, through) as :func:`feed_after` takes them."""


async def feed_after_many(
    conn: Reader, reads: Sequence[FeedRead], limit: int
) -> list[list[ActivityItem]]:
    """:func:`feed_after` for many streams in one statement: each read's items, in order."""
    rows = await conn.fetch(
        QUERIES["feed_after_many"],
        [viewer for viewer, _, _ in reads],
        [after.transaction_id for _, after, _ in reads],
        [after.position for _, after, _ in reads],
        [None if through is None else through.transaction_id for _, _, through in reads],
        [None if through is None else through.position for _, _, through in reads],
        limit,
    )
    items: list[list[ActivityItem]] = [[] for _ in reads]
    for row in rows:
        items[row["i"] - 1].append(_item(row))
    return items


async def head(conn: Reader) -> LogCursor:
    """The cursor of the newest activity (the start of the log when there is none)."""
    row = await conn.fetchrow(QUERIES["activity_head"])
    return LogCursor.START if row is None else LogCursor(row[0], row[1])


class FeedWakeups:
    """Wake-ups per reader for feed streams, fed by queries once per progress hint.

    An idle stream costs nothing: with no activity, one cheap query per hint for the whole
    process ("what is new after the last cursor?"); with some, one more that finds which
    readers with an open stream are friends of its actors who let friends see it, and only those
    are woken. When no stream is open, not even that."""

    _BATCH = 5_000

    def __init__(self, pool: asyncpg.Pool[Any], progress: Wakeups, *, poll: float = 1.0) -> None:
        self._pool = pool
        # Only readers with a stream open (or a test looking at one) have wake-ups: an account
        # that streamed once costs nothing once its streams end.
        self._readers = KeyedWakeups()
        self._open: dict[str, int] = {}
        self._after: LogCursor | None = None
        self._follower = HintFollower(
            "feed-wakeups", progress, self._refresh, poll=poll, max_backoff=1.0
        )

    @property
    def poll(self) -> float:
        """Seconds between refreshes when no hint comes."""
        return self._follower.poll

    @poll.setter
    def poll(self, seconds: float) -> None:
        self._follower.poll = seconds

    @property
    def through(self) -> LogCursor | None:
        """The cursor of the newest activity looked at (None: not looked yet). Every row up to
        it is there to read: the projection adds new rows in tailing order, each batch after
        the last, so none can appear behind it later (a rebuild puts back old rows, which no
        stream sends again)."""
        return self._after

    @property
    def streams(self) -> int:
        """Streams open right now."""
        return sum(self._open.values())

    def for_reader(self, reader: str) -> Wakeups:
        """What wakes ``reader``'s streams (for tests and diagnostics: a stream itself gets
        it from :meth:`opened`)."""
        return self._readers.for_key(reader)

    @property
    def closing(self) -> bool:
        return self._readers.closing

    def close(self) -> None:
        """Release every stream now (the service is stopping)."""
        self._readers.close()

    def opened(self, reader: str) -> Wakeups:
        """A stream of ``reader`` opens: what wakes it (call :meth:`closed` when it ends)."""
        self._open[reader] = self._open.get(reader, 0) + 1
        return self._readers.for_key(reader)

    def closed(self, reader: str) -> None:
        left = self._open.get(reader, 0) - 1
        if left > 0:
            self._open[reader] = left
        else:
            self._open.pop(reader, None)
            self._readers.release(reader)

    async def run(self) -> None:
        """Forever (see :class:`~eventstore.HintFollower`); streams poll through an outage."""
        await self._follower.run()

    async def _refresh(self) -> None:
        if self._after is None:
            self._after = await head(self._pool)
            return
        while True:
            rows = await self._pool.fetch(
                QUERIES["activity_after"],
                self._after.transaction_id,
                self._after.position,
                self._BATCH,
            )
            if not rows:
                return
            self._after = LogCursor(rows[-1]["transaction_id"], rows[-1]["position"])
            readers = list(self._open)
            if readers:
                actors = list({row["account_id"] for row in rows})
                woken = await self._pool.fetch(QUERIES["feed_readers_of"], actors, readers)
                self._readers.wake(row[0] for row in woken)
            if len(rows) < self._BATCH:
                return
