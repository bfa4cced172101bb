"""Poison events: an event a projection cannot apply is kept as a dead letter with its error,
and the projection (and every write waiting for it) moves on. Other failures are retried."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient

from eventstore import EventStore, NewEvent
from eventstore import database as db
from projections.domain import Rated, Watched, registry, watch_stream
from projections.history import WatchHistoryProjection
from projections.runner import ProjectionRunner
from services.http.appkeys import POOL, STORE
from tests.api import MOVIE, MOVIE_2, OPERATOR, T0, create_account, post_actions, settle, t
from tests.test_projection_runner import append_watches, history_rows, run, stop
from tests.test_projection_runner import settle as settle_runner


async def _dead_letters(pool: asyncpg.Pool[Any]) -> list[tuple[str, str, str]]:
    rows = await pool.fetch(
        "SELECT projection, type, error FROM projection_dead_letters ORDER BY projection, position"
    )
    return [(r["projection"], r["type"], r["error"]) for r in rows]


async def _projections(client: TestClient[Any, Any]) -> dict[str, dict[str, Any]]:
    response = await client.get("/v1/admin/projections", headers=OPERATOR)
    assert response.status == 200
    return {item["name"]: item for item in (await response.json())["items"]}


async def test_an_event_the_database_refuses_is_dead_lettered_and_writes_go_on(
    client: TestClient[Any, Any],
) -> None:
    ann = await create_account(client, "ann")
    await post_actions(client, ann, {"type": "watched", "guid": MOVIE, "at": t(1)})
    assert client.app is not None
    store: EventStore = client.app[STORE]
    # A rating no smallint holds: written by a release (or an import) that did not check it.
    poison = registry.new(Rated(guid=MOVIE, at=T0, rating=40_000))
    await store.append(watch_stream("ann"), [poison])

    started = time.monotonic()
    await post_actions(client, ann, {"type": "rated", "guid": MOVIE_2, "at": t(2), "rating": 7})
    # Read-your-writes waited for the projections, which moved past the poison at once
    # (without dead letters: the full 5 s bound, then every later write too).
    assert time.monotonic() - started < 3
    state = await (await client.get("/v1/me/state", headers=ann)).json()
    assert [(i["guid"], i["watched"], i["rating"]) for i in state["items"]] == [
        (MOVIE, True, None),
        (MOVIE_2, False, 7),
    ]

    # Both projections that fold ratings meet the poison, and each moves past it.
    dead = await _dead_letters(client.app[POOL])
    assert [(p, k) for p, k, _ in dead] == [("activity", "rated"), ("watch_state", "rated")]
    for _, _, error in dead:
        assert error.startswith("DataError")  # asyncpg's: the value does not fit a smallint
        assert "out of int16 range" in error
    status = await _projections(client)
    assert (status["watch_state"]["dead_letters"], status["watch_state"]["lag"]) == (1, 0)
    assert status["watch_history"]["dead_letters"] == 0
    metrics = await (await client.get("/metrics")).text()
    assert 'watchledger_projection_dead_letters_total{projection="watch_state"} 1.0' in metrics


async def test_an_event_the_fold_cannot_read_is_dead_lettered(
    client: TestClient[Any, Any],
) -> None:
    ann = await create_account(client, "ann")
    assert client.app is not None
    store: EventStore = client.app[STORE]
    good = registry.new(Watched(guid=MOVIE, at=T0))
    # Written by a newer release: this one cannot decode it.
    unreadable = NewEvent(type="watched", data=good.data, schema_version=99)
    await store.append(watch_stream("ann"), [unreadable])
    await post_actions(client, ann, {"type": "watched", "guid": MOVIE_2, "at": t(1)})
    await settle(client)

    dead = await _dead_letters(client.app[POOL])
    assert [(p, k) for p, k, _ in dead] == [
        ("activity", "watched"),
        ("watch_history", "watched"),  # not the friendships: they do not fold watch actions
        ("watch_state", "watched"),
    ]
    assert all(error.startswith("UnsupportedSchemaVersion") for _, _, error in dead)
    history = await (await client.get("/v1/me/history", headers=ann)).json()
    assert [item["guid"] for item in history["items"]] == [MOVIE_2]


async def test_a_failure_that_is_not_the_events_fault_is_retried_not_dead_lettered(
    store: EventStore, pool: asyncpg.Pool[Any], database_url: str
) -> None:
    """A table missing (say, mid-migration) fails every batch: nothing is dead-lettered, and
    once the table is back every event is applied."""
    await append_watches(store, 20)
    await pool.execute("ALTER TABLE watch_history RENAME TO watch_history_away")
    runner = ProjectionRunner(
        WatchHistoryProjection(),
        store,
        lambda: db.connect(database_url),
        batch_size=10,
        error_delay=0.01,
    )
    task = await run(runner)
    try:
        async with asyncio.timeout(30):
            # Nothing signals a failed batch but the runner's stats.
            while runner.stats.errors < 2:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        await pool.execute("ALTER TABLE watch_history_away RENAME TO watch_history")
        await settle_runner(store, pool, runner)
    finally:
        await stop(task)
    assert len(await history_rows(pool)) == 20
    assert await _dead_letters(pool) == []
    assert runner.stats.dead_letters == 0
