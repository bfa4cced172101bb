"""The projection runner: exactly-once under failures and kills, one runner per projection."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from eventstore import EventStore, LogCursor, LogListener, RecordedEvent
from eventstore import database as db
from eventstore.wakeups import DEFAULT_CHANNEL
from projections.domain import Watched, registry, watch_stream
from projections.history import WatchHistoryProjection
from projections.protocol import Slice
from projections.runner import (
    PROGRESS_CHANNEL,
    Op,
    ProjectionRunner,
    checkpoint,
)
from projections.state import WatchStateProjection

T0 = datetime(2026, 1, 1, tzinfo=UTC)


async def append_watches(store: EventStore, count: int, account: str = "acc") -> None:
    events = [
        registry.new(Watched(guid=f"plex://movie/{i:024x}", at=T0 + timedelta(minutes=i)))
        for i in range(count)
    ]
    for i in range(0, count, 7):  # several transactions
        await store.append(watch_stream(account), events[i : i + 7])


class Sabotaged:
    """A projection that, the first time it meets event number ``at``, adds one more statement
    to the batch — run after the batch's rows, before its commit."""

    def __init__(self, inner: WatchHistoryProjection, at: int, statement: str) -> None:
        self.inner = inner
        self.name = inner.name
        self.purges = inner.purges
        self._at = at
        self._statement = statement
        self.seen = 0
        self.fired = False

    @property
    def tables(self) -> Sequence[str]:
        return self.inner.tables

    def rebuild(self, part: Slice) -> Sequence[Op]:
        return self.inner.rebuild(part)

    def skipped(self, part: Slice) -> Op:
        return self.inner.skipped(part)

    def prepare(self, events: Sequence[RecordedEvent]) -> Sequence[Op]:
        return self.inner.prepare(events)

    def apply(self, event: RecordedEvent) -> Sequence[Op]:
        ops = list(self.inner.apply(event))
        self.seen += 1
        if self.seen == self._at and not self.fired:
            self.fired = True
            ops.append(Op(self._statement, ()))
        return ops


async def history_rows(pool: asyncpg.Pool[Any]) -> list[tuple[Any, ...]]:
    return [
        tuple(r)
        for r in await pool.fetch("SELECT position, guid FROM watch_history ORDER BY position")
    ]


async def settle(store: EventStore, pool: asyncpg.Pool[Any], runner: ProjectionRunner) -> None:
    """Wait until ``runner`` itself has applied everything committed so far (its own stats,
    not the shared checkpoint: another runner may have moved that)."""
    cursor = await store.last_cursor()
    async with asyncio.timeout(30):
        while runner.stats.cursor < cursor:
            await store.wakeups.wait(store.wakeups.generation, 0.05)
    assert await checkpoint(pool, runner.name) >= cursor  # type: ignore[arg-type]


async def run(runner: ProjectionRunner) -> asyncio.Task[None]:
    return asyncio.create_task(runner.run(), name=f"test-runner:{runner.name}")


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_batch_that_fails_before_commit_is_applied_once_after_a_retry(
    store: EventStore, pool: asyncpg.Pool[Any], database_url: str
) -> None:
    await append_watches(store, 40)
    projection = Sabotaged(WatchHistoryProjection(), at=25, statement="SELECT 1/0")
    runner = ProjectionRunner(
        projection, store, lambda: db.connect(database_url), batch_size=10, error_delay=0.01
    )
    task = await run(runner)
    await settle(store, pool, runner)
    await stop(task)

    assert projection.fired
    assert runner.stats.errors == 1
    rows = await history_rows(pool)
    assert len(rows) == 40
    assert len({guid for _, guid in rows}) == 40
    assert runner.stats.applied == 40


async def test_a_runner_killed_inside_its_transaction_loses_and_repeats_nothing(
    store: EventStore, pool: asyncpg.Pool[Any], database_url: str
) -> None:
    await append_watches(store, 40)
    projection = Sabotaged(WatchHistoryProjection(), at=25, statement="SELECT pg_sleep(60)")
    first = ProjectionRunner(projection, store, lambda: db.connect(database_url), batch_size=10)
    task = await run(first)

    # Wait until the runner sits inside the batch's transaction (rows of event 21-25 written,
    # not committed), then kill it there.
    async with asyncio.timeout(30):
        while not await pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE query = 'SELECT pg_sleep(60)' AND state = 'active'"
        ):
            await store.wakeups.wait(store.wakeups.generation, 0.02)
    applied_before_kill = len(await history_rows(pool))
    await stop(task)
    assert applied_before_kill == 20  # two batches committed; the third was in flight

    second = ProjectionRunner(WatchHistoryProjection(), store, lambda: db.connect(database_url))
    task = await run(second)
    await settle(store, pool, second)
    await stop(task)

    rows = await history_rows(pool)
    assert len(rows) == 40
    assert len({guid for _, guid in rows}) == 40
    assert second.stats.applied == 20


async def test_one_runner_per_projection_and_a_standby_takes_over(
    store: EventStore, pool: asyncpg.Pool[Any], database_url: str
) -> None:
    await append_watches(store, 10)
    a = ProjectionRunner(WatchStateProjection(), store, lambda: db.connect(database_url))
    b = ProjectionRunner(WatchStateProjection(), store, lambda: db.connect(database_url))
    task_a = await run(a)
    await settle(store, pool, a)
    task_b = await run(b)
    await append_watches(store, 10, account="other")
    await settle(store, pool, a)

    assert a.stats.active
    assert not b.stats.active
    assert b.stats.applied == 0

    await stop(task_a)
    await append_watches(store, 5, account="third")
    await settle(store, pool, b)
    await stop(task_b)

    assert b.stats.applied == 5
    assert a.stats.applied == 20
    count = await pool.fetchval("SELECT count(*) FROM watch_state")
    assert count == 25


async def test_progress_tracker_waits_for_every_projection_and_gives_up_in_time(
    store: EventStore, pool: asyncpg.Pool[Any], database_url: str
) -> None:
    from projections.runner import ProjectionProgress

    listener = LogListener(
        lambda: db.connect(database_url), channels=(DEFAULT_CHANNEL, PROGRESS_CHANNEL)
    )
    await listener.start()
    state = ProjectionRunner(WatchStateProjection(), store, lambda: db.connect(database_url))
    history = ProjectionRunner(WatchHistoryProjection(), store, lambda: db.connect(database_url))
    tracker = ProjectionProgress(
        pool, listener.wakeups_for(PROGRESS_CHANNEL), [state.name, history.name]
    )
    tracking = asyncio.create_task(tracker.run())
    try:
        await append_watches(store, 3)
        cursor = await store.last_cursor()
        assert not await tracker.wait_until_applied(cursor, 0.05)  # nothing runs yet

        first = await run(state)
        assert await tracker.wait_until_applied(LogCursor.START, 1)
        assert not await tracker.wait_until_applied(cursor, 0.2)  # history still behind
        second = await run(history)
        async with asyncio.timeout(30):
            assert await tracker.wait_until_applied(cursor, 30)
        await stop(first)
        await stop(second)
    finally:
        await stop(tracking)
        await listener.close()
