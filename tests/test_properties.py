"""Properties of the log over generated sequences of appends (hypothesis)."""

from __future__ import annotations

import uuid
from itertools import pairwise

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventstore import EventStore, LogCursor, NewEvent
from tests.helpers import event

# A plan: a list of appends, each (stream index, batch size).
plans = st.lists(
    st.tuples(st.integers(min_value=0, max_value=3), st.integers(min_value=1, max_value=6)),
    min_size=1,
    max_size=12,
)
SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def _streams() -> list[str]:
    # Fresh streams per example: examples share one database.
    tag = uuid.uuid4().hex[:8]
    return [f"account-p{tag}{i}" for i in range(4)]


async def _apply(
    store: EventStore, streams: list[str], plan: list[tuple[int, int]]
) -> list[tuple[str, list[NewEvent]]]:
    done = []
    for n, (s, size) in enumerate(plan):
        batch = [event(n * 10 + i) for i in range(size)]
        await store.append(streams[s], batch)
        done.append((streams[s], batch))
    return done


@SETTINGS
@given(plan=plans)
async def test_appending_the_same_events_twice_stores_them_once(
    store: EventStore, plan: list[tuple[int, int]]
) -> None:
    streams = _streams()
    done = await _apply(store, streams, plan)
    first = {s: await store.read_stream(s) for s in streams}

    # Again, in other batches and another order: every one is a duplicate of itself.
    for stream, batch in reversed(done):
        results = await store.append(stream, list(reversed(batch)))
        assert all(r.duplicate for r in results)
        stored = {e.event_id: e.position for e in first[stream]}
        assert all(stored[r.event_id] == r.position for r in results)

    assert {s: await store.read_stream(s) for s in streams} == first


@SETTINGS
@given(plan=plans)
async def test_positions_read_back_strictly_increase_and_versions_have_no_gaps(
    store: EventStore, plan: list[tuple[int, int]]
) -> None:
    streams = _streams()
    done = await _apply(store, streams, plan)
    mine = set(streams)

    everything = [e async for e in store.iter_all(page_size=5)]
    positions = [e.position for e in everything]
    assert all(a < b for a, b in pairwise(positions))

    for stream in streams:
        expected = [ev.event_id for s, batch in done if s == stream for ev in batch]
        stored = await store.read_stream(stream)
        assert [e.version for e in stored] == list(range(1, len(expected) + 1))
        assert [e.event_id for e in stored] == expected

    # The safe (tailing) order reads the same events, each once, in strictly increasing cursors.
    tailed = []
    cursor = LogCursor.START
    while page := (await store.read_safe(cursor, 7)).events:
        tailed.extend(page)
        cursor = page[-1].cursor
    ours = [e for e in tailed if e.stream in mine]
    assert sorted(e.position for e in ours) == sorted(
        e.position for e in everything if e.stream in mine
    )
    cursors = [e.cursor for e in tailed]
    assert all(a < b for a, b in pairwise(cursors))
