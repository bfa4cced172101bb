"""Appending to many streams at once (a server batch spanning many accounts): one transaction,
results per stream in input order, ids and keys deduplicated as in a single-stream append,
and concurrent calls over the same streams neither deadlock nor lose an event."""

from __future__ import annotations

import asyncio
import random
import uuid
from typing import Any

import msgspec
import pytest

from eventstore import EventStore, NewEvent
from tests.helpers import body, event


def keyed(n: int, *keys: uuid.UUID) -> NewEvent:
    return NewEvent(
        type="noted", data=msgspec.Raw(msgspec.json.encode({"n": n})), idempotency_keys=keys
    )


async def test_many_streams_in_one_transaction_each_in_its_own_order(store: EventStore) -> None:
    await store.append("account-b", [event(0)])
    batches = [
        ("account-c", [event(1), event(2)]),
        ("account-a", [event(3)]),
        ("account-b", [event(4), event(5), event(6)]),
    ]
    results = await store.append_many(batches)

    assert [[r.version for r in rs] for rs in results] == [[1, 2], [1], [2, 3, 4]]
    assert len({r.transaction_id for rs in results for r in rs}) == 1  # one commit
    for (stream, events), rs in zip(batches, results, strict=True):
        stored = await store.read_stream(stream)
        assert [e.event_id for e in stored[-len(events) :]] == [e.event_id for e in events]
        assert [r.event_id for r in rs] == [e.event_id for e in events]
        assert [r.position for r in rs] == [e.position for e in stored[-len(events) :]]
    assert [body(e.data)["n"] for e in await store.read_stream("account-b")] == [0, 4, 5, 6]


async def test_ids_and_keys_are_duplicates_per_stream_as_in_a_single_append(
    store: EventStore,
) -> None:
    shared = uuid.uuid4()
    first, later = keyed(1, shared), keyed(2, shared)
    [[stored]] = await store.append_many([("account-a", [first])])
    results = await store.append_many(
        [
            ("account-a", [later, event(3)]),  # the key is known in account a
            ("account-b", [keyed(4, shared)]),  # not in account b: keys are per partition
            ("account-c", [first]),  # an id is per partition too
        ]
    )
    assert [[r.duplicate for r in rs] for rs in results] == [[True, False], [False], [False]]
    assert results[0][0].position == stored.position
    again = await store.append_many([("account-b", [keyed(5, shared)]), ("account-d", [])])
    assert again[0][0].duplicate
    assert again[1] == []


async def test_a_stream_named_twice_or_an_event_twice_is_refused(store: EventStore) -> None:
    with pytest.raises(ValueError, match="each stream once"):
        await store.append_many([("account-a", [event(1)]), ("account-a", [event(2)])])
    same = event(3)
    with pytest.raises(ValueError, match="twice"):
        await store.append_many([("account-a", [same, same])])
    # Two streams of one account share its ids and keys: refused before anything is written.
    key = uuid.uuid4()
    with pytest.raises(ValueError, match="twice"):
        await store.append_many([("account-a", [keyed(4, key)]), ("watch-a", [keyed(5, key)])])
    with pytest.raises(ValueError, match="twice"):
        await store.append_many([("account-a", [same]), ("watch-a", [event(6), same])])
    assert await store.head() == 0
    assert await store.append_many([]) == []
    # Other accounts' streams may carry the same key (keys are per account).
    results = await store.append_many(
        [("account-a", [keyed(7, key)]), ("watch-b", [keyed(8, key)])]
    )
    assert [[r.duplicate for r in rs] for rs in results] == [[False], [False]]


async def test_duplicates_by_id_or_any_key_mixed_with_new_events_over_many_streams(
    store: EventStore,
) -> None:
    """Stored events named again by id, by their first key or their second, between new events
    with several keys each: the duplicates answer the stored events, the new ones take the next
    versions in input order, positions in stream order, and their keys name them from then on."""
    k1, k2, k3, k4 = (uuid.uuid4() for _ in range(4))
    by_id = event(1)
    [[a1, a2], [b1]] = await store.append_many(
        [("account-a", [by_id, keyed(2, k1, k2)]), ("account-b", [keyed(3, k3)])]
    )
    new_a, new_b = keyed(10, k4), keyed(11, uuid.uuid4(), uuid.uuid4())
    results = await store.append_many(
        [
            ("account-b", [keyed(12, uuid.uuid4(), k3), new_b]),
            ("account-a", [by_id, new_a, keyed(13, k2)]),
        ]
    )
    [[dup_b, fresh_b], [dup_id, fresh_a, dup_k2]] = results
    assert (dup_b.duplicate, dup_b.position) == (True, b1.position)
    assert (dup_id.duplicate, dup_id.position) == (True, a1.position)
    assert (dup_k2.duplicate, dup_k2.position) == (True, a2.position)
    assert not fresh_a.duplicate
    assert not fresh_b.duplicate
    assert (fresh_a.version, fresh_b.version) == (3, 2)
    assert fresh_a.position < fresh_b.position  # account-a sorts first
    assert [e.event_id for e in await store.read_stream("account-a")][-1] == new_a.event_id
    again = await store.append_many([("account-a", [keyed(14, k4)])])
    assert (again[0][0].duplicate, again[0][0].position) == (True, fresh_a.position)


async def test_concurrent_batches_over_the_same_streams_all_land_without_deadlock(
    store: EventStore,
) -> None:
    """Each writer names the streams in its own random order; the store orders them, so no
    two transactions wait on each other crosswise."""
    streams = [f"account-s{i}" for i in range(12)]

    async def writer(w: int) -> None:
        rng = random.Random(w)
        for round_ in range(6):
            chosen = rng.sample(streams, 8)
            await store.append_many([(s, [event(w * 1000 + round_)]) for s in chosen])

    await asyncio.gather(*(writer(w) for w in range(8)))

    total = 0
    for stream in streams:
        stored = await store.read_stream(stream, limit=1000)
        assert [e.version for e in stored] == list(range(1, len(stored) + 1))
        total += len(stored)
    assert total == 8 * 6 * 8


async def test_group_commit_shares_one_transaction_among_concurrent_appends(
    pool: Any,
) -> None:
    """32 appends at once to different streams (and two to one stream): they commit in
    fewer transactions than appends, each answered with its own results, each stream's
    events in the order they were appended."""
    async with EventStore(pool, group_commit=True) as grouped:
        lone = await grouped.append("account-lone", [event(0)])  # alone: a plain append
        assert [r.version for r in lone] == [1]
        calls = [grouped.append(f"account-g{i}", [event(i), event(i + 100)]) for i in range(32)]
        calls += [grouped.append("account-g0", [event(500)])]
        results = await asyncio.gather(*calls)

        assert [[r.version for r in rs] for rs in results[:32]] == [[1, 2]] * 32
        assert [r.version for r in results[32]] == [3]
        transactions = {r.transaction_id for rs in results for r in rs}
        assert 1 < len(transactions) < 33
        stored = await grouped.read_stream("account-g0")
        assert [body(e.data)["n"] for e in stored] == [0, 100, 500]
        again = await grouped.append("account-g5", [event(5)])
        assert not again[0].duplicate  # a new event id: appended, not mistaken for the old

        same = event(7)
        with pytest.raises(ValueError, match="twice"):
            await grouped.append("account-g7", [same, same])


async def test_in_a_failing_group_each_append_gets_its_own_outcome(pool: Any) -> None:
    """One member's failure (here data PostgreSQL refuses) is its own: the others, tried
    alone, are appended."""
    async with EventStore(pool, group_commit=True) as grouped:
        first = grouped.append("account-x1", [event(1)])
        broken = grouped.append("account-x2", [NewEvent(type="noted", data=msgspec.Raw(b"{"))])
        ok, failed = await asyncio.gather(first, broken, return_exceptions=True)
        assert isinstance(failed, Exception), failed
        assert not isinstance(ok, BaseException)
        assert [r.version for r in ok] == [1]
        [then] = await grouped.append("account-x1", [event(2)])
        assert then.version == 2


async def test_a_stream_held_by_another_transaction_does_not_fail_its_group(
    pool: Any, store: EventStore
) -> None:
    """Another transaction holds account-a's next version past the group's retries: the
    group's statement fails, and each of its appends, tried alone, lands."""
    async with EventStore(pool, group_commit=True) as grouped:
        holding, release = asyncio.Event(), asyncio.Event()

        async def holder() -> None:
            async with pool.acquire() as conn, conn.transaction():
                await store.append("account-a", [event(0)], conn=conn)
                holding.set()
                await release.wait()

        held = asyncio.create_task(holder())
        await holding.wait()
        group = asyncio.gather(
            grouped.append("account-a", [event(1)]), grouped.append("account-b", [event(2)])
        )
        await asyncio.sleep(1.2)  # past the group's retry window, the lock still held
        release.set()
        await held
        a, b = await group
        assert [r.version for r in a] == [2]
        assert [r.version for r in b] == [1]


async def test_closing_mid_flush_answers_every_waiter(pool: Any) -> None:
    async with EventStore(pool, group_commit=True) as grouped:
        calls = [asyncio.create_task(grouped.append(f"account-c{i}", [event(i)])) for i in range(3)]
        await asyncio.sleep(0)  # queued, the flush started
        flushing = grouped._group._flushing  # type: ignore[union-attr]
        assert flushing is not None
        flushing.cancel()
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        assert all(isinstance(o, RuntimeError) for o in outcomes), outcomes
