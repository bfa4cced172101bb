"""Tailing the log: gap-free under concurrent writers, exactly once, woken by NOTIFY."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg

from eventstore import EventStore, LogCursor, RecordedEvent
from tests.helpers import body, event

WRITERS = 16
EVENTS_PER_WRITER = 25


async def _collect(
    store: EventStore, count: int, after: LogCursor = LogCursor.START
) -> list[RecordedEvent]:
    got: list[RecordedEvent] = []
    async for recorded in store.tail(after, batch_size=7):
        got.append(recorded)
        if len(got) == count:
            break
    return got


async def test_read_safe_holds_back_rows_behind_an_open_transaction(
    store: EventStore, pool: asyncpg.Pool[Any]
) -> None:
    async with pool.acquire() as holder:
        tx = holder.transaction()
        await tx.start()
        await store.append("account-slow", [event(1)], conn=holder)
        # Commits while the older transaction is still open; its position is the larger one,
        # but a position-ordered reader that moved past it could still miss the slow one.
        await store.append("account-fast", [event(2)])

        page = await store.read_safe()
        assert page.events == []
        assert page.held_back is True

        await tx.commit()

    page = await store.read_safe()
    assert [body(e.data)["n"] for e in page.events] == [1, 2]
    assert page.held_back is False
    assert page.last_cursor == page.events[-1].cursor


async def test_a_rolled_back_append_is_never_read(
    store: EventStore, pool: asyncpg.Pool[Any]
) -> None:
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        await store.append("account-a1", [event(1)], conn=conn)
        await tx.rollback()
    await store.append("account-a1", [event(2)])

    page = await store.read_safe()
    assert [body(e.data)["n"] for e in page.events] == [2]
    assert [e.version for e in page.events] == [1]


async def test_tail_resumes_after_a_cursor(store: EventStore) -> None:
    await store.append("account-a1", [event(i) for i in range(5)])
    first_two = await _collect(store, 2)

    rest = await _collect(store, 3, after=first_two[-1].cursor)

    assert [body(e.data)["n"] for e in first_two + rest] == [0, 1, 2, 3, 4]


async def test_tail_is_woken_by_notify_not_by_polling(store: EventStore) -> None:
    assert store.poll_interval >= 30
    reader = asyncio.create_task(_collect(store, 1))
    await store.append("account-a1", [event(0)])  # the tail may or may not have read yet
    await store.append("account-a1", [event(1)])

    async with asyncio.timeout(10):  # far below the 30 s poll
        [first] = await reader
    assert body(first.data) == {"n": 0}
    later = asyncio.create_task(_collect(store, 1, after=first.cursor))
    async with asyncio.timeout(10):
        assert body((await later)[0].data) == {"n": 1}


async def test_tail_gets_events_after_the_listener_connection_is_lost(
    store: EventStore, pool: asyncpg.Pool[Any]
) -> None:
    assert store.listener is not None
    assert store.listener.connected
    reader = asyncio.create_task(_collect(store, 1))
    old_pid = store.listener._conn.get_server_pid()  # type: ignore[union-attr]

    await pool.execute("SELECT pg_terminate_backend($1)", old_pid)
    await store.append("account-a1", [event(42)])

    async with asyncio.timeout(10):
        [got] = await reader
    assert body(got.data) == {"n": 42}
    async with asyncio.timeout(10):
        while store.listener.reconnects == 0:
            # The listener wakes every waiter when it has reconnected.
            await store.wakeups.wait(store.wakeups.generation, None)
    assert store.listener.connected


async def test_sixteen_writers_and_a_transaction_held_open_lose_nothing_and_repeat_nothing(
    store: EventStore, pool: asyncpg.Pool[Any]
) -> None:
    """16 concurrent writers append single events while one more writer holds its transaction
    open for a second with an event in it. The tail must hold everything that committed behind
    that transaction back (not skip it), then deliver every event exactly once, in order."""
    total = WRITERS * EVENTS_PER_WRITER + 1
    writers_started = asyncio.Event()
    writers_done = asyncio.Event()
    holder_open = asyncio.Event()
    holder_xid: list[int] = []
    seen_while_open: list[RecordedEvent] = []
    collected: list[RecordedEvent] = []
    appended: set[Any] = set()

    async def reader() -> None:
        async for recorded in store.tail(batch_size=50):
            collected.append(recorded)
            if holder_open.is_set():
                seen_while_open.append(recorded)
            if len(collected) == total:
                return

    async def writer(w: int) -> None:
        for i in range(EVENTS_PER_WRITER):
            if w == 0 and i == EVENTS_PER_WRITER // 4:
                writers_started.set()
            if i == EVENTS_PER_WRITER // 2:
                await holder_open.wait()  # the rest commit after the holder began
            [result] = await store.append(f"account-w{w}", [event(w * 1000 + i)])
            appended.add(result.event_id)

    async def holder() -> None:
        await writers_started.wait()
        async with pool.acquire() as conn, conn.transaction():
            [result] = await store.append("account-holder", [event(-1)], conn=conn)
            appended.add(result.event_id)
            holder_xid.append(await conn.fetchval("SELECT pg_current_xact_id()"))
            opened = time.monotonic()
            holder_open.set()
            await writers_done.wait()
            await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - opened)))
            holder_open.clear()
        store.notify_appended()

    read_task = asyncio.create_task(reader())
    hold_task = asyncio.create_task(holder())
    await asyncio.gather(*(writer(w) for w in range(WRITERS)))
    writers_done.set()
    async with asyncio.timeout(60):
        await asyncio.gather(hold_task, read_task)

    # Exactly once: every appended event, no other, none twice.
    assert len(collected) == total
    assert {e.event_id for e in collected} == appended
    # In order: strictly increasing tail cursors, and each stream in version order.
    cursors = [(e.transaction_id, e.position) for e in collected]
    assert cursors == sorted(cursors)
    assert len(set(cursors)) == total
    for w in range(WRITERS):
        versions = [e.version for e in collected if e.stream == f"account-w{w}"]
        assert versions == list(range(1, EVENTS_PER_WRITER + 1))
    # Held back, not skipped: nothing that started after the holder was read while it was open.
    assert all(e.transaction_id < holder_xid[0] for e in seen_while_open)
    # And the trap was really set: events with higher positions committed while the holder's
    # row was invisible, so a reader checkpointing by position alone would have passed it over.
    later = [e for e in collected if e.transaction_id > holder_xid[0]]
    assert len(later) >= WRITERS * (EVENTS_PER_WRITER - EVENTS_PER_WRITER // 2)
    [held] = [e for e in collected if e.stream == "account-holder"]
    assert held.position < min(e.position for e in later)
