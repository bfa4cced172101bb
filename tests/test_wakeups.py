"""The one follow loop and the one keyed wake-up dispatcher every reader of the log builds on."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
import structlog

from eventstore import (
    EventStore,
    HintFollower,
    KeyedWakeups,
    LogCursor,
    RecordedEvent,
    Wakeups,
    wakeups,
)
from tests.helpers import event


async def test_a_follow_reads_again_at_once_from_where_its_consumer_seeks(
    store: EventStore,
) -> None:
    await store.append("account-ann", [event(1), event(2), event(3)])
    # An hour between polls: whatever comes quickly below came without one.
    follow = store.follow(batch_size=10, poll_interval=3600)
    pages = aiter(follow)
    async with asyncio.timeout(10):
        first = await anext(pages)
        assert [e.version for e in first] == [1, 2, 3]
        assert follow.cursor == first[-1].cursor
        # The consumer could not take the page (its batch rolled back): same page again, now.
        follow.seek(LogCursor.START)
        again = await anext(pages)
    assert [e.event_id for e in again] == [e.event_id for e in first]

    # Nothing new: the follow waits, and the next append's hint wakes it with that event only.
    async def next_page() -> list[RecordedEvent]:
        return await anext(pages)

    waiting = asyncio.create_task(next_page())
    await store.wakeups.until_waiting(1)
    assert not waiting.done()
    await store.append("account-ann", [event(4)], expected_version=3)
    async with asyncio.timeout(10):
        latest = await waiting
    assert [e.version for e in latest] == [4]


async def test_keyed_wakeups_wake_only_the_key_that_changed() -> None:
    keyed = KeyedWakeups()
    ann, bob = keyed.for_key("srv-ann"), keyed.for_key("srv-bob")
    assert keyed.for_key("srv-ann") is ann
    ann_waits = asyncio.create_task(ann.wait(ann.generation, None))
    bob_waits = asyncio.create_task(bob.wait(bob.generation, None))
    await ann.until_waiting(1)
    await bob.until_waiting(1)
    assert keyed.waiting == 2

    keyed.wake(["srv-bob", "srv-nobody-waits-on"])
    assert await bob_waits is True
    assert not ann_waits.done()
    assert keyed.waiting == 1

    keyed.close()
    assert keyed.closing
    assert await ann_waits is True
    assert keyed.waiting == 0


async def test_a_hint_follower_refreshes_once_per_hint_and_outlives_a_database_error(
    pool: asyncpg.Pool[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    hints = Wakeups()
    refreshed = Wakeups()
    failures = 3
    lost: list[BaseException | None] = []

    async def refresh() -> None:
        nonlocal failures
        if failures:
            failures -= 1
            # A real error from the database, as mid-migration: the table is not there yet.
            await pool.fetch("SELECT * FROM not_migrated_yet")
        await pool.fetchval("SELECT 1")
        refreshed.wake()

    follower = HintFollower(
        "test", hints, refresh, poll=3600, max_backoff=0.01, on_lost=lost.append
    )
    with structlog.testing.capture_logs() as entries:
        # A logger made now logs into the capture (the module's may be cached from earlier).
        monkeypatch.setattr(wakeups, "log", structlog.get_logger(wakeups.__name__))
        generation = refreshed.generation
        task = asyncio.create_task(follower.run())
        try:
            async with asyncio.timeout(10):
                assert await refreshed.wait(generation, None)
                # Through the errors, then waiting for the next hint (the poll is an hour).
                await hints.until_waiting(1)
                generation = refreshed.generation
                hints.wake()
                assert await refreshed.wait(generation, None)
                await hints.until_waiting(1)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    assert [type(error) for error in lost] == [asyncpg.UndefinedTableError] * 3
    # One outage: said once when it began and once when it ended, not once per attempt.
    said = [e["event"] for e in entries if e.get("follower") == "test"]
    assert said == ["follower_interrupted", "follower_resumed"]
