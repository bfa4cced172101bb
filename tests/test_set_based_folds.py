"""The live fold's set-based runs (projections.runner: consecutive ops of one query with a
``many`` form are one statement) give exactly the rows folding the same ops one at a time
gives: watch state, links, queues (which titles, for which servers), history and activity —
over batches spanning accounts, titles named by one id or several, linked before or in the
batch, actions arriving out of order, repeats, sync on and off."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import asyncpg
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventstore import EventStore, NewEvent, RecordedEvent
from eventstore.database import Connection
from projections import domain
from projections.activity import ActivityProjection
from projections.history import WatchHistoryProjection
from projections.protocol import Op
from projections.runner import _grouped
from projections.state import WatchStateProjection
from tests.api import MOVIE, MOVIE_2, T0

IMDB = "imdb://movie/tt0111161"
TMDB = "tmdb://movie/278"
EPISODE = "plex://episode/5d9c0874ffd9ef001e99607a"

PROJECTIONS = (WatchStateProjection(), WatchHistoryProjection(), ActivityProjection())
TABLES = {
    "watch_state": "SELECT * FROM watch_state WHERE account_id = ANY($1) ORDER BY account_id, guid",
    "title_ids": "SELECT * FROM title_ids WHERE account_id = ANY($1) ORDER BY account_id, id",
    # Which titles wait for which servers (a run numbers its titles in another order).
    "sync_queue": "SELECT account_id, server_id, kind, guid FROM sync_queue"
    " WHERE account_id = ANY($1) ORDER BY account_id, server_id, kind, guid",
    "watch_history": "SELECT * FROM watch_history WHERE account_id = ANY($1)"
    " ORDER BY account_id, position",
    "activity": "SELECT * FROM activity WHERE account_id = ANY($1) ORDER BY account_id, position",
}

_id_sets = st.sampled_from(
    [
        (MOVIE,),
        (IMDB,),
        (TMDB,),
        (MOVIE_2,),
        (EPISODE,),
        (MOVIE, IMDB),  # links IMDB to MOVIE: later one-id actions by IMDB find MOVIE
        (TMDB, IMDB),
    ]
)
_actions = st.lists(
    st.tuples(
        st.integers(0, 2),  # which account
        _id_sets,
        st.sampled_from(["watched", "unwatched", "rated", "unrated"]),
        st.integers(0, 30),  # minute of its time: repeats and late arrivals
        st.integers(1, 10),  # rating
    ),
    min_size=1,
    max_size=30,
)


def _event(ids: tuple[str, ...], kind: str, minute: int, rating: int, n: int) -> NewEvent:
    guid, *more = ids
    at = T0 + timedelta(minutes=minute, seconds=n % 3)
    if kind == "rated":
        return domain.registry.new(domain.Rated(guid=guid, ids=tuple(more), at=at, rating=rating))
    return domain.registry.new(domain.UNRATED_ACTIONS[kind](guid=guid, ids=tuple(more), at=at))


async def _append(
    store: EventStore, accounts: list[str], actions: list[Any], offset: int
) -> list[RecordedEvent]:
    recorded = []
    for n, (who, ids, kind, minute, rating) in enumerate(actions):
        stream = domain.watch_stream(accounts[who])
        [result] = await store.append(stream, [_event(ids, kind, minute, rating, offset + n)])
        recorded.append(result)
    positions = {r.position for r in recorded}
    after = min(positions) - 1
    return [e for e in await store.read_all(after=after) if e.position in positions]


async def _rows(conn: Connection, accounts: list[str]) -> dict[str, list[tuple[Any, ...]]]:
    return {
        name: [tuple(r) for r in await conn.fetch(sql, accounts)] for name, sql in TABLES.items()
    }


def _ops(events: list[RecordedEvent]) -> list[Op]:
    ops: list[Op] = []
    for projection in PROJECTIONS:
        ops += projection.prepare(events)
        ops += [op for event in events for op in projection.apply(event)]
    return ops


async def _fold_in_runs(conn: Connection, ops: list[Op]) -> None:
    for run in _grouped(ops):
        if run.set_based:
            await conn.execute(run.query, *run.args)
        else:
            await conn.executemany(run.query, run.args)


async def _fold_one_by_one(conn: Connection, ops: list[Op]) -> None:
    for op in ops:
        await conn.execute(op.query, *op.args)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(before=_actions, batch=_actions, syncing=st.lists(st.booleans(), min_size=3, max_size=3))
async def test_a_batch_folded_in_runs_gives_the_rows_of_its_events_folded_one_by_one(
    store: EventStore,
    pool: asyncpg.Pool[Any],
    before: list[Any],
    batch: list[Any],
    syncing: list[bool],
) -> None:
    accounts = [f"acc{uuid.uuid4().hex[:8]}" for _ in range(3)]
    for account, sync in zip(accounts, syncing, strict=True):
        await pool.execute("INSERT INTO sync_accounts VALUES ($1, $2)", account, sync)
        await pool.execute("INSERT INTO sync_access VALUES ($1, 's1'), ($1, 's2')", account)
    first = await _append(store, accounts, before, 0)
    second = await _append(store, accounts, batch, 1000)
    results = []
    async with pool.acquire() as conn:
        await _fold_one_by_one(conn, _ops(first))
        for fold in (_fold_in_runs, _fold_one_by_one):
            tx = conn.transaction()
            await tx.start()
            try:
                await fold(conn, _ops(second))
                results.append(await _rows(conn, accounts))
            finally:
                await tx.rollback()
    assert results[0] == results[1]


async def test_a_batch_of_one_id_actions_is_one_statement_a_projection() -> None:
    """The shape of a server's backlog (one id an action, many accounts) folds in one
    statement per projection, not one per event."""
    events = [
        RecordedEvent(
            position=n + 1,
            transaction_id=7,
            event_id=uuid.uuid4(),
            stream=str(domain.watch_stream(f"a{n % 10}")),
            version=n // 10 + 1,
            type="watched",
            data=msgspec.Raw(b'{"guid":"plex://movie/%024x","at":"2026-01-01T00:00:00Z"}' % n),
            schema_version=1,
            recorded_at=T0,
        )
        for n in range(100)
    ]
    for projection in PROJECTIONS:
        runs = _grouped([op for event in events for op in projection.apply(event)])
        assert len(runs) == 1, projection.name
        assert runs[0].set_based, projection.name


@pytest.mark.parametrize("bad", [40_000, -40_000])
async def test_a_rating_the_state_cannot_hold_fails_the_run_and_alone_is_poison(
    store: EventStore, pool: asyncpg.Pool[Any], bad: int
) -> None:
    """A run holding an action the database refuses fails as a whole (so the runner applies
    its batch event by event, dead-lettering only that one), as the one-by-one fold fails on
    it."""
    events = [
        domain.registry.new(domain.Rated(guid=MOVIE, at=T0, rating=5)),
        domain.registry.new(domain.Rated(guid=MOVIE_2, at=T0, rating=bad)),
    ]
    await store.append(domain.watch_stream("ann"), events)
    recorded = await store.read_stream(domain.watch_stream("ann"))
    ops = [op for event in recorded for op in WatchStateProjection().apply(event)]
    async with pool.acquire() as conn:
        for fold in (_fold_in_runs, _fold_one_by_one):
            with pytest.raises((asyncpg.DataError, asyncpg.exceptions.DataError)):
                async with conn.transaction():
                    await fold(conn, ops)
