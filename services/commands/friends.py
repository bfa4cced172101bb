"""Friendships and activity feeds (product rule 9): asking and ending friendships, an account's
friends, its feed, another account's activity as the caller may see it, and a feed's stream.

Visibility is applied when a feed is read (the reads join the owner's current setting), so a
change of setting applies to past activity at once and to what a stream sends next.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec
import structlog

from eventstore import Event, LogCursor
from projections import activity, domain, friends
from projections.activity import ActivityItem, FeedWakeups
from projections.domain import Account

from .accounts import AccountService
from .reads import Page

log = structlog.get_logger(__name__)

# A key before every activity: later than any `at` an action may have.
_END_OF_TIME = (datetime(9999, 1, 1, tzinfo=UTC), 0)
# New activity a stream reads at once, at most.
STREAM_BATCH = 500
# Streams' reads that go to the database in one statement, at most.
READS_PER_STATEMENT = 500
# The share of the pool's connections streams may read on at once. One action of an account
# thousands of streams' readers are friends with wakes them all: their reads queue here, in
# the process, rather than for the pool, where a wait is bounded and writers wait too.
STREAM_READ_SHARE = 0.5


class StreamReads:
    """The reads of woken feed streams, batched.

    One action can wake thousands of streams at once (fan-out on read's worst case: an
    account that every streaming reader is friends with). Each stream's read is the same
    small query with its own viewer and cursor; sent one by one they would cost a round trip
    and a parse each, and queue for the pool. Here every read asked for in one turn of the
    event loop goes out together — a statement per :data:`READS_PER_STATEMENT` reads, on at
    most ``concurrency`` connections — and identical reads (streams of one reader at one
    cursor) are asked once. Each stream still gets exactly what its own query would give."""

    def __init__(self, pool: asyncpg.Pool[Any], *, concurrency: int) -> None:
        self._pool = pool
        self._slots = asyncio.Semaphore(concurrency)
        self._asked: dict[activity.FeedRead, asyncio.Future[list[ActivityItem]]] = {}
        self._running: set[asyncio.Task[None]] = set()

    async def read(
        self, viewer: str, after: LogCursor, through: LogCursor | None
    ) -> list[ActivityItem]:
        key = (viewer, after, through)
        future = self._asked.get(key)
        if future is None:
            if not self._asked:
                asyncio.get_running_loop().call_soon(self._send)
            future = self._asked[key] = asyncio.get_running_loop().create_future()
            # Read even if every stream that asked has gone (no "never retrieved" warning).
            future.add_done_callback(lambda f: f.cancelled() or f.exception())
        # A stream that goes away leaves the read to the others that asked for it.
        return await asyncio.shield(future)

    def _send(self) -> None:
        asked, self._asked = list(self._asked.items()), {}
        for start in range(0, len(asked), READS_PER_STATEMENT):
            task = asyncio.create_task(self._run(asked[start : start + READS_PER_STATEMENT]))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run(
        self, asked: list[tuple[activity.FeedRead, asyncio.Future[list[ActivityItem]]]]
    ) -> None:
        try:
            async with self._slots:
                reads = [key for key, _ in asked]
                found = await activity.feed_after_many(self._pool, reads, STREAM_BATCH)
        except BaseException as error:
            # Every stream that asked gets the error (it ends, and says why), or is cancelled.
            for _, future in asked:
                if future.done():
                    continue
                if isinstance(error, Exception):
                    future.set_exception(error)
                else:
                    future.cancel()
            if not isinstance(error, Exception):
                raise
            return
        for (_, future), items in zip(asked, found, strict=True):
            if not future.done():
                future.set_result(items)


class FriendLists(msgspec.Struct, frozen=True):
    """An account's friends, the requests to it it has not answered, and its own unanswered
    requests, each sorted."""

    friends: list[str]
    incoming: list[str]
    outgoing: list[str]


class FriendService:
    def __init__(
        self, pool: asyncpg.Pool[Any], accounts: AccountService, feeds: FeedWakeups
    ) -> None:
        self.pool = pool
        self._accounts = accounts
        self.feeds = feeds
        self._stream_reads = StreamReads(
            pool, concurrency=max(1, int(pool.get_max_size() * STREAM_READ_SHARE))
        )

    async def request(self, me: Account, other_id: str) -> None:
        """Ask ``other_id`` to be friends, or accept its request (idempotent)."""
        if other_id != me.id and await self._accounts.load(other_id) is None:
            raise domain.UnknownAccount(f"no account {other_id!r}")
        await self._decide(me, other_id, domain.request_friendship)

    async def remove(self, me: Account, other_id: str) -> None:
        """End the friendship with ``other_id``, withdraw the request to it or decline its
        request (idempotent: nothing to end, or no such account, is no change)."""
        await self._decide(me, other_id, domain.end_friendship)

    async def _decide(
        self,
        me: Account,
        other_id: str,
        decision: Callable[[Account, str, domain.Friendship], list[Event]],
    ) -> None:
        # The pair as the friendships projection has it: this caller's earlier changes are in
        # it (every change waits for the projections before it answers).
        pair = await friends.friendship(self.pool, me.id, other_id)
        _, cursor = await self._accounts.decide(me, lambda a: decision(a, other_id, pair))
        if cursor is not None:
            log.info("friendship_changed", account=me.id, other=other_id)
            await self._accounts.settle(cursor)

    async def lists(self, account_id: str) -> FriendLists:
        mutual, incoming, outgoing = await friends.friends_of(self.pool, account_id)
        return FriendLists(mutual, incoming, outgoing)

    async def feed_page(
        self, viewer: str, *, before: tuple[datetime, int] | None, limit: int
    ) -> Page[ActivityItem]:
        """The viewer's friends' visible activity, newest first, before the key (``at``,
        ``position``; None: from the newest)."""
        rows = await activity.feed_page(self.pool, viewer, before or _END_OF_TIME, limit + 1)
        return Page(rows[:limit], len(rows) > limit)

    async def activity_page(
        self, viewer: str, account_id: str, *, before: tuple[datetime, int] | None, limit: int
    ) -> Page[ActivityItem]:
        """``account_id``'s activity as the viewer may see it; raises
        :class:`~projections.domain.ActivityHidden` when it may not (or there is no such
        account: the two look alike)."""
        if not await activity.visible(self.pool, account_id, viewer):
            raise domain.ActivityHidden(f"no activity of {account_id!r} to show")
        rows = await activity.activity_page(
            self.pool, account_id, before or _END_OF_TIME, limit + 1
        )
        return Page(rows[:limit], len(rows) > limit)

    async def now(self) -> LogCursor:
        """The stream cursor of "now": a stream after it sends only activity applied later.
        Taken before a stream answers, so whatever its client does once it has the answer
        comes after it."""
        return await activity.head(self.pool)

    async def stream(self, viewer: str, after: LogCursor) -> AsyncIterator[list[ActivityItem]]:
        """The viewer's new visible activity, batch by batch, for as long as it is iterated,
        after a stream cursor (:meth:`now`: from now). Between batches it waits for its
        wake-up, and asks the database nothing meanwhile. Ends when the service stops."""
        wakeups = self.feeds.opened(viewer)
        try:
            while not self.feeds.closing:
                generation = wakeups.generation
                # Up to what the wake-ups have looked at, behind which nothing new can appear:
                # the cursor moves past what the viewer may not see too, so an item hidden
                # when the stream reached it (a private or former friend's) is never sent.
                through = self.feeds.through
                items = await self._stream_reads.read(viewer, after, through)
                if items:
                    yield items
                if len(items) == STREAM_BATCH:
                    after = items[-1].cursor
                    continue
                if through is not None:
                    after = max(after, through)
                elif items:
                    after = items[-1].cursor
                await wakeups.wait(generation, None)
        finally:
            self.feeds.closed(viewer)
