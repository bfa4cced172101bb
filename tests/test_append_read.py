"""Appending and reading: atomicity, idempotency by event id, expected versions, reads."""

from __future__ import annotations

import asyncio
import uuid

import msgspec
import pytest

from eventstore import ConcurrencyConflict, EventStore, InvalidStreamName, NewEvent, StreamName
from tests.helpers import body, event


async def test_append_assigns_versions_and_increasing_positions(store: EventStore) -> None:
    results = await store.append("account-a1", [event(1), event(2), event(3)])

    assert [r.version for r in results] == [1, 2, 3]
    assert [r.duplicate for r in results] == [False, False, False]
    positions = [r.position for r in results]
    assert positions == sorted(positions)
    assert len(set(positions)) == 3

    stored = await store.read_stream("account-a1")
    assert [e.version for e in stored] == [1, 2, 3]
    assert [body(e.data) for e in stored] == [{"n": 1}, {"n": 2}, {"n": 3}]
    assert [e.position for e in stored] == positions
    assert [e.event_id for e in stored] == [r.event_id for r in results]
    assert all(e.type == "noted" and e.schema_version == 1 for e in stored)
    assert await store.stream_version("account-a1") == 3


async def test_read_stream_pages_by_version(store: EventStore) -> None:
    await store.append("account-a1", [event(i) for i in range(5)])
    page = await store.read_stream("account-a1", after_version=2, limit=2)
    assert [e.version for e in page] == [3, 4]


async def test_an_empty_append_stores_nothing(store: EventStore) -> None:
    assert await store.append("account-a1", []) == []
    assert await store.head() == 0


async def test_a_stored_event_id_is_a_duplicate_with_its_original_position(
    store: EventStore,
) -> None:
    first = event(1)
    [original] = await store.append("account-a1", [first])

    [again] = await store.append("account-a1", [first])

    assert again.duplicate is True
    assert again.position == original.position
    assert again.version == original.version
    assert len(await store.read_stream("account-a1")) == 1


async def test_a_batch_mixing_stored_and_new_ids_stores_only_the_new(store: EventStore) -> None:
    old = event(1)
    await store.append("account-a1", [old])

    results = await store.append("account-a1", [event(2), old, event(3)])

    assert [r.duplicate for r in results] == [False, True, False]
    assert [r.version for r in results] == [2, 1, 3]
    assert [body(e.data)["n"] for e in await store.read_stream("account-a1")] == [1, 2, 3]


async def test_retrying_a_whole_batch_with_its_expected_version_is_not_a_conflict(
    store: EventStore,
) -> None:
    batch = [event(1), event(2)]
    await store.append("account-a1", batch, expected_version=0)

    retried = await store.append("account-a1", batch, expected_version=0)

    assert all(r.duplicate for r in retried)


async def test_one_id_twice_in_one_append_is_refused(store: EventStore) -> None:
    same = event(1)
    with pytest.raises(ValueError, match="same event"):
        await store.append("account-a1", [same, same])
    assert await store.head() == 0


async def test_expected_version_must_match(store: EventStore) -> None:
    await store.append("account-a1", [event(1)], expected_version=0)
    await store.append("account-a1", [event(2)], expected_version=1)

    with pytest.raises(ConcurrencyConflict) as caught:
        await store.append("account-a1", [event(3)], expected_version=1)

    assert caught.value.expected == 1
    assert caught.value.actual == 2
    assert caught.value.stream == "account-a1"
    assert await store.stream_version("account-a1") == 2


async def test_expected_version_zero_means_the_stream_must_be_new(store: EventStore) -> None:
    await store.append("account-a1", [event(1)])
    with pytest.raises(ConcurrencyConflict):
        await store.append("account-a1", [event(2)], expected_version=0)


async def test_of_many_writers_racing_for_one_version_exactly_one_wins(store: EventStore) -> None:
    await store.append("account-race", [event(0)])

    async def attempt(i: int) -> bool:
        try:
            await store.append("account-race", [event(i)], expected_version=1)
        except ConcurrencyConflict:
            return False
        return True

    for _round in range(5):
        version = await store.stream_version("account-race")

        async def attempt_at(i: int, version: int = version) -> bool:
            try:
                await store.append("account-race", [event(i)], expected_version=version)
            except ConcurrencyConflict:
                return False
            return True

        outcomes = await asyncio.gather(*(attempt_at(i) for i in range(16)))
        assert outcomes.count(True) == 1
    assert await store.stream_version("account-race") == 6
    assert await attempt(99) is False


async def test_concurrent_appends_without_expected_version_all_land_without_gaps(
    store: EventStore,
) -> None:
    async def writer(w: int) -> None:
        for i in range(10):
            await store.append("account-shared", [event(w * 100 + i)])

    await asyncio.gather(*(writer(w) for w in range(16)))

    stored = await store.read_stream("account-shared", limit=1000)
    assert [e.version for e in stored] == list(range(1, 161))
    assert sorted(body(e.data)["n"] for e in stored) == sorted(
        w * 100 + i for w in range(16) for i in range(10)
    )


async def test_concurrent_retries_of_one_event_store_it_once(store: EventStore) -> None:
    for round_ in range(10):
        same = event(round_)
        results = await asyncio.gather(*(store.append("account-a1", [same]) for _ in range(16)))
        assert len({r[0].position for r in results}) == 1
        assert [r[0].duplicate for r in results].count(False) == 1
    assert len(await store.read_stream("account-a1")) == 10


@pytest.mark.parametrize(
    "name", ["account", "account-", "-acc", "Account-1", "1account-x", "acc ount-x", ""]
)
async def test_stream_names_are_checked(store: EventStore, name: str) -> None:
    with pytest.raises(InvalidStreamName):
        await store.append(name, [event()])


def test_stream_name_parts() -> None:
    assert StreamName.parse("account-acc-1") == StreamName("account", "acc-1")
    assert str(StreamName("account", "acc-1")) == "account-acc-1"


async def test_read_all_in_position_order_and_in_pages(store: EventStore) -> None:
    await store.append("account-a1", [event(1), event(2)])
    await store.append("account-b2", [event(3)])
    await store.append("server-s1", [event(4)])

    everything = await store.read_all()
    assert [body(e.data)["n"] for e in everything] == [1, 2, 3, 4]
    assert [e.stream for e in everything] == ["account-a1", "account-a1", "account-b2", "server-s1"]

    first = await store.read_all(limit=3)
    rest = await store.read_all(after=first[-1].position)
    assert first + rest == everything
    assert [e async for e in store.iter_all(page_size=2)] == everything
    assert await store.head() == everything[-1].position


async def test_read_category(store: EventStore) -> None:
    await store.append("account-a1", [event(1)])
    await store.append("server-s1", [event(2)])
    await store.append("account-b2", [event(3)])

    accounts = await store.read_category("account")
    assert [body(e.data)["n"] for e in accounts] == [1, 3]
    after_first = await store.read_category("account", after=accounts[0].position)
    assert [body(e.data)["n"] for e in after_first] == [3]
    assert [e.stream for e in await store.read_category("server")] == ["server-s1"]


async def test_recorded_events_carry_their_transaction(store: EventStore) -> None:
    await store.append("account-a1", [event(1), event(2)])
    await store.append("account-a1", [event(3)])
    stored = await store.read_stream("account-a1")
    assert stored[0].transaction_id == stored[1].transaction_id
    assert stored[2].transaction_id > stored[1].transaction_id
    assert stored[0].cursor.position == stored[0].position


async def test_event_ids_are_the_ones_given(store: EventStore) -> None:
    given = uuid.uuid4()
    [result] = await store.append("account-a1", [event(1, event_id=given)])
    assert result.event_id == given
    [stored] = await store.read_stream("account-a1")
    assert stored.event_id == given


async def test_an_event_is_a_duplicate_by_either_of_its_keys(store: EventStore) -> None:
    client_id, natural = uuid.uuid4(), uuid.uuid4()
    first = NewEvent(
        type="noted", data=msgspec.Raw(b"{}"), event_id=client_id, idempotency_keys=(natural,)
    )
    [stored] = await store.append("account-a1", [first])

    by_key = NewEvent(
        type="noted", data=msgspec.Raw(b"{}"), event_id=natural, idempotency_keys=(natural,)
    )
    by_id = NewEvent(
        type="noted", data=msgspec.Raw(b"{}"), event_id=client_id, idempotency_keys=(uuid.uuid4(),)
    )
    other = NewEvent(type="noted", data=msgspec.Raw(b"{}"), idempotency_keys=(uuid.uuid4(),))
    results = await store.append("account-a1", [by_key, other, by_id])

    assert [r.duplicate for r in results] == [True, False, True]
    assert results[0].event_id == results[2].event_id == client_id
    assert results[0].position == results[2].position == stored.position
    assert len(await store.read_stream("account-a1")) == 2

    # Each name is unique in its own column: a key equal to another event's id is not a match.
    unrelated = NewEvent(type="noted", data=msgspec.Raw(b"{}"), idempotency_keys=(other.event_id,))
    [separate] = await store.append("account-a1", [unrelated])
    assert not separate.duplicate


async def test_an_event_is_a_duplicate_by_any_of_its_many_keys(store: EventStore) -> None:
    k1, k2, k3, k4, k5 = (uuid.uuid4() for _ in range(5))
    noted = msgspec.Raw(b"{}")
    [a] = await store.append(
        "account-a1", [NewEvent(type="noted", data=noted, idempotency_keys=(k1, k2))]
    )
    [b] = await store.append(
        "account-a1", [NewEvent(type="noted", data=noted, idempotency_keys=(k3,))]
    )

    results = await store.append(
        "account-a1",
        [
            NewEvent(type="noted", data=noted, idempotency_keys=(k4, k2)),  # a's second key
            NewEvent(type="noted", data=noted, idempotency_keys=(k5, k5)),  # new; a key twice
            NewEvent(type="noted", data=noted, idempotency_keys=(k3, k1)),  # b's, and a's
        ],
    )

    assert [r.duplicate for r in results] == [True, False, True]
    assert results[0].position == a.position
    # Keys of two stored events: the duplicate names the first.
    assert results[2].position == a.position < b.position
    # A duplicate's other keys are not taken: k4 is still free.
    [later] = await store.append(
        "account-a1", [NewEvent(type="noted", data=noted, idempotency_keys=(k4,))]
    )
    assert not later.duplicate
    assert len(await store.read_stream("account-a1")) == 4
    # Keys belong to their partition only.
    [elsewhere] = await store.append(
        "account-a2", [NewEvent(type="noted", data=noted, idempotency_keys=(k1,))]
    )
    assert not elsewhere.duplicate


async def test_one_append_cannot_name_one_key_twice(store: EventStore) -> None:
    key = uuid.uuid4()
    # Two events (each its own id) with one key.
    events = [
        NewEvent(type="noted", data=msgspec.Raw(b"{}"), idempotency_keys=(key,)) for _ in "ab"
    ]
    with pytest.raises(ValueError, match="same event"):
        await store.append("account-a1", events)
    assert await store.read_stream("account-a1") == []


async def test_concurrent_appends_of_one_key_store_it_once(store: EventStore) -> None:
    key = uuid.uuid4()
    noted = msgspec.Raw(b"{}")
    results = await asyncio.gather(
        *(
            store.append("account-a1", [NewEvent(type="noted", data=noted, idempotency_keys=keys)])
            # Each racer's keys share the one key, and have one of their own besides.
            for keys in ((uuid.uuid4(), key) for _ in range(12))
        )
    )
    assert [r[0].duplicate for r in results].count(False) == 1
    assert len({r[0].position for r in results}) == 1
