"""The log is append-only in the database itself; purge is the one sanctioned deletion."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import msgspec
import pytest

from eventstore import ConcurrencyConflict, EventStore, NewEvent
from tests.helpers import body, event


def tombstone(**data: object) -> NewEvent:
    return NewEvent(type="history_deleted", data=msgspec.Raw(msgspec.json.encode(data)))


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE events SET type = 'changed'",
        "UPDATE events SET data = '{}'::jsonb WHERE version = 1",
        "DELETE FROM events",
        "DELETE FROM events WHERE version = 1",
        "TRUNCATE events",
    ],
)
async def test_ordinary_sql_cannot_change_or_remove_events(
    store: EventStore, pool: asyncpg.Pool[Any], statement: str
) -> None:
    await store.append("account-a1", [event(1), event(2)])

    with pytest.raises(asyncpg.ProhibitedSQLStatementAttemptedError, match="append-only"):
        await pool.execute(statement)

    assert [body(e.data) for e in await store.read_stream("account-a1")] == [{"n": 1}, {"n": 2}]


async def test_the_purge_flag_does_not_outlive_a_purge(
    store: EventStore, pool: asyncpg.Pool[Any]
) -> None:
    [first, _] = await store.append("account-a1", [event(1), event(2)])
    async with pool.acquire() as conn, conn.transaction():
        await store.purge("account-a1", [first.position], tombstone(), conn=conn)
        with pytest.raises(asyncpg.ProhibitedSQLStatementAttemptedError):
            await conn.execute("DELETE FROM events")


async def test_purge_removes_exactly_the_named_events_and_leaves_a_tombstone(
    store: EventStore,
) -> None:
    kept, gone = await store.append("account-a1", [event(1), event(2)])
    [other] = await store.append("account-b2", [event(3)])
    [gone_too] = await store.append("history-a1", [event(4)])

    result = await store.purge(
        "account-a1",
        # another account's position is not this account's to remove
        [gone.position, gone_too.position, other.position],
        tombstone(kind="history"),
    )

    assert result.deleted == 2
    stream = await store.read_stream("account-a1")
    assert [(e.version, e.type) for e in stream] == [(1, "noted"), (3, "history_deleted")]
    assert body(stream[-1].data) == {"kind": "history"}
    assert stream[-1].position == result.tombstone_position
    assert result.tombstone_version == 3
    assert await store.read_stream("history-a1") == []
    assert [body(e.data) for e in await store.read_stream("account-b2")] == [{"n": 3}]
    assert kept.position in {e.position for e in stream}


async def test_after_purging_the_newest_event_versions_are_not_reused(store: EventStore) -> None:
    [_, newest] = await store.append("account-a1", [event(1), event(2)])
    await store.purge("account-a1", [newest.position], tombstone())

    [next_one] = await store.append("account-a1", [event(3)])

    assert next_one.version == 4


async def test_a_retried_purge_changes_nothing(store: EventStore) -> None:
    [a, b] = await store.append("account-a1", [event(1), event(2)])
    marker = tombstone()
    first = await store.purge("account-a1", [a.position], marker)

    again = await store.purge("account-a1", [b.position], marker)

    assert again.deleted == 0
    assert again.tombstone_position == first.tombstone_position
    remaining = await store.read_stream("account-a1")
    assert body(remaining[0].data) == {"n": 2}


async def test_a_purge_is_visible_to_tailing_readers(store: EventStore) -> None:
    [a] = await store.append("account-a1", [event(1)])
    result = await store.purge(
        "account-a1",
        [a.position],
        tombstone(),
    )
    page = await store.read_safe()
    assert [e.position for e in page.events] == [result.tombstone_position]
    assert page.events[0].type == "history_deleted"


async def test_purge_ids_are_idempotency_keys_too(store: EventStore) -> None:
    marker_id = uuid.uuid4()
    [a] = await store.append("account-a1", [event(1)])
    marker = NewEvent(type="history_deleted", data=msgspec.Raw(b"{}"), event_id=marker_id)
    await store.purge("account-a1", [a.position], marker)
    [again] = await store.append("account-a1", [marker])
    assert again.duplicate


@pytest.mark.parametrize("purge", ["eventstore_purge_v2", "eventstore_purge"])
async def test_a_purged_event_takes_its_keys_with_it(
    store: EventStore, pool: asyncpg.Pool[Any], purge: str
) -> None:
    """Both purges (the first is the previous release's) remove the events' keys: the same
    event appended again is new, not a duplicate of what is gone."""
    keys = (uuid.uuid4(), uuid.uuid4())
    keyed = NewEvent(type="noted", data=msgspec.Raw(b"{}"), idempotency_keys=keys)
    [a, kept] = await store.append(
        "account-a1",
        [keyed, NewEvent(type="noted", data=msgspec.Raw(b"{}"), idempotency_keys=(uuid.uuid4(),))],
    )
    gone = tombstone()
    extra = [None] if purge == "eventstore_purge_v2" else []
    await pool.fetch(
        f"SELECT * FROM {purge}($1, $2, $3, $4, $5, $6, $7{', $8' if extra else ''})",
        "a1",
        "account-a1",
        [a.position],
        gone.event_id,
        gone.type,
        1,
        b"{}",
        *extra,
    )
    left = await pool.fetch("SELECT position FROM event_keys WHERE account_id = 'a1'")
    assert [row["position"] for row in left] == [kept.position]
    [again] = await store.append(
        "account-a1", [NewEvent(type="noted", data=msgspec.Raw(b"{}"), idempotency_keys=keys[1:])]
    )
    assert not again.duplicate


async def test_a_purge_expecting_a_version_the_stream_left_removes_nothing(
    store: EventStore,
) -> None:
    [a] = await store.append("account-a1", [event(1)])
    # Appended after the deletion read the stream: it would escape the purge.
    await store.append("account-a1", [event(2)])

    with pytest.raises(ConcurrencyConflict) as raised:
        await store.purge("account-a1", [a.position], tombstone(), expected_version=1)

    assert raised.value.actual == 2
    assert [body(e.data) for e in await store.read_stream("account-a1")] == [{"n": 1}, {"n": 2}]


async def test_a_purge_at_the_expected_version_tells_where_its_tombstone_is(
    store: EventStore,
) -> None:
    [a] = await store.append("account-a1", [event(1)])

    result = await store.purge("account-a1", [a.position], tombstone(), expected_version=1)

    page = await store.read_safe()
    assert [e.cursor for e in page.events] == [result.tombstone_cursor]
    assert (result.deleted, result.tombstone_version) == (1, 2)


async def test_a_purge_racing_an_uncommitted_append_fails_on_the_version(
    store: EventStore, pool: asyncpg.Pool[Any]
) -> None:
    [a] = await store.append("account-a1", [event(1)])
    async with pool.acquire() as writer, writer.transaction():
        await store.append("account-a1", [event(2)], conn=writer)
        purging = asyncio.ensure_future(
            store.purge("account-a1", [a.position], tombstone(), expected_version=1)
        )
        # Wait until the purge waits on the writer's version 2 (a lock wait in PostgreSQL).
        async with asyncio.timeout(10):
            while not await pool.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE wait_event_type = 'Lock' AND query LIKE '%eventstore_purge_v2%'"
            ):
                await store.wakeups.wait(store.wakeups.generation, 0.005)
        assert not purging.done()
    with pytest.raises(ConcurrencyConflict):
        await purging
    assert len(await store.read_stream("account-a1")) == 2
