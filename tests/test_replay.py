"""Replay, point-in-time copies and verify (product rule 12; architecture hard part 5): set-based
rebuilds into side tables give exactly what the live fold gave, swap in while the service keeps
serving and writing, and a tampered projection is found."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from eventstore import EventStore, LogCursor
from eventstore import database as db
from projections.catalog import all_projections
from projections.domain import Rated, Watched, registry, watch_stream
from projections.replay import (
    SIDE_SCHEMA,
    Rebuilder,
    ReplayError,
    copy_at,
    replay,
    swap_in,
    verify,
)
from projections.state import WatchStateProjection
from tests.api import (
    EPISODE,
    MOVIE,
    MOVIE_2,
    SHOW,
    T0,
    create_account,
    post_actions,
    settle,
    t,
)
from tests.servers import grant, register, send, setup_owner_with_server, sync

# Every table a projection owns, in a stable order, for comparing whole databases.
TABLES = {
    "watch_state": "account_id, guid",
    "title_ids": "account_id, id",
    "sync_accounts": "account_id",
    "sync_access": "account_id, server_id",
    "watch_history": "account_id, position",
    "friend_requests": "account_id, friend_id",
    "activity": "account_id, position",
    "activity_profiles": "account_id",
}

IMDB = "imdb://movie/tt0111161"
TMDB = "tmdb://movie/278"
TVDB = "tvdb://movie/190"


async def dump(pool: asyncpg.Pool[Any]) -> dict[str, list[tuple[Any, ...]]]:
    return {
        table: [tuple(r) for r in await pool.fetch(f"SELECT * FROM {table} ORDER BY {key}")]
        for table, key in TABLES.items()
    }


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection[Any]]:
    connection = await db.connect(database_url)
    yield connection
    await connection.close()


@pytest.fixture
async def served(make_client: Callable[..., Any], database_url: str) -> TestClient[Any, Any]:
    """A running service on ``database_url``, with a little of everything recorded."""
    client: TestClient[Any, Any] = await make_client(database_url)
    owner, server = await setup_owner_with_server(client, "ann", "srv-a")
    bob = await create_account(client, "bob")
    await grant(client, owner, "srv-a", "bob", bob)
    await sync(client, bob, True)
    for asker, other in ((owner, "bob"), (bob, "ann"), (bob, "nobody-yet")):
        response = await client.put(f"/v1/me/friends/{other}", headers=asker)
        assert response.status in (204, 404)
    response = await client.patch("/v1/me", json={"visibility": "public"}, headers=bob)
    assert response.status == 200
    await post_actions(
        client,
        owner,
        {"type": "watched", "guid": MOVIE, "at": t(1)},
        {"type": "rated", "guid": MOVIE, "at": t(2), "rating": 8},
        {"type": "unwatched", "guid": MOVIE, "at": t(3)},
        {"type": "watched", "guid": MOVIE, "at": t(2.5)},  # late: history, not state
        {"type": "watched", "guid": EPISODE, "at": t(1)},
        {"type": "rated", "guid": SHOW, "at": t(1), "rating": 3},
        {"type": "unrated", "guid": SHOW, "at": t(4)},
    )
    await send(
        client,
        "srv-a",
        server,
        {"account": "bob", "type": "watched", "guid": MOVIE_2, "at": t(5), "baseline": True},
        {"account": "bob", "type": "watched", "guid": MOVIE_2, "at": t(6)},
        {"account": "bob", "type": "watched", "guid": MOVIE, "at": t(7)},
        {"account": "bob", "type": "watched", "guid": MOVIE, "at": t(1), "baseline": True},
        # Titles named by several ids, linked and merged across slices (rule 1b).
        {"account": "bob", "type": "watched", "guid": IMDB, "at": t(2)},
        {"account": "bob", "type": "rated", "guid": TMDB, "at": t(3), "rating": 6},
        {"account": "bob", "type": "unwatched", "guid": TVDB, "ids": [TMDB], "at": t(4)},
        {"account": "bob", "type": "watched", "guid": MOVIE_2, "ids": [IMDB, TVDB], "at": t(0)},
    )
    await register(client, bob, "srv-b")
    await settle(client)
    return client


@pytest.mark.parametrize("workers", [1, 2, 3])
async def test_a_replay_gives_back_exactly_the_live_projections(
    served: TestClient[Any, Any],
    conn: asyncpg.Connection[Any],
    pool: asyncpg.Pool[Any],
    database_url: str,
    workers: int,
) -> None:
    before = await dump(pool)
    assert before["watch_history"]
    assert before["title_ids"]
    assert before["sync_access"]
    assert before["activity"]
    assert before["friend_requests"]
    opened: list[asyncpg.Connection[Any]] = []

    async def connect() -> asyncpg.Connection[Any]:
        opened.append(await db.connect(database_url))
        return opened[-1]

    report = await replay(conn, all_projections(), slice_events=3, connect=connect, workers=workers)
    await settle(served)

    assert await dump(pool) == before
    assert report.events == await pool.fetchval("SELECT count(*) FROM events")
    assert (await verify(conn, all_projections(), slice_events=4)).ok
    # The projections were shared out among that many connections, all closed again.
    assert len(opened) == (0 if workers == 1 else workers)
    assert all(c.is_closed() for c in opened)
    # The swapped-in tables are what the migrations made: names of indexes and constraints too.
    indexes = await pool.fetch(
        "SELECT indexname FROM pg_indexes WHERE tablename = 'watch_state' ORDER BY 1"
    )
    assert [r[0] for r in indexes] == ["watch_state_pkey", "watch_state_updated_idx"]


async def test_the_api_answers_as_before_after_a_replay(
    served: TestClient[Any, Any], conn: asyncpg.Connection[Any]
) -> None:
    ann = await create_account(served, "cy")
    await post_actions(served, ann, {"type": "watched", "guid": MOVIE, "at": t(1)})
    state = await (await served.get("/v1/me/state", headers=ann)).json()
    history = await (await served.get("/v1/me/history", headers=ann)).json()

    await replay(conn, all_projections())

    assert await (await served.get("/v1/me/state", headers=ann)).json() == state
    assert await (await served.get("/v1/me/history", headers=ann)).json() == history
    # And the service keeps working on the swapped-in tables.
    await post_actions(served, ann, {"type": "rated", "guid": MOVIE, "at": t(2), "rating": 9})
    [item] = (await (await served.get("/v1/me/state", headers=ann)).json())["items"]
    assert item["rating"] == 9


async def test_verify_finds_a_tampered_row_and_names_the_account(
    served: TestClient[Any, Any], conn: asyncpg.Connection[Any], pool: asyncpg.Pool[Any]
) -> None:
    await pool.execute(
        "UPDATE watch_state SET rating = 1 WHERE account_id = 'ann' AND guid = $1", MOVIE
    )
    await pool.execute("DELETE FROM watch_history WHERE account_id = 'bob'")

    report = await verify(conn, all_projections())

    assert not report.ok
    found = {(d.table, d.only_live, d.only_rebuilt, tuple(d.accounts)) for d in report.differences}
    assert found == {("watch_state", 1, 1, ("ann",)), ("watch_history", 0, 7, ("bob",))}
    # Verify changes nothing; a replay repairs.
    assert not (await verify(conn, all_projections())).ok
    await replay(conn, all_projections())
    assert (await verify(conn, all_projections())).ok


async def test_a_replay_under_write_load_loses_and_doubles_nothing(
    served: TestClient[Any, Any], conn: asyncpg.Connection[Any], pool: asyncpg.Pool[Any]
) -> None:
    writers = [await create_account(served, f"w{i}") for i in range(4)]
    written = 0
    stop = asyncio.Event()
    enough = asyncio.Event()

    async def write(headers: dict[str, str]) -> None:
        nonlocal written
        n = 0
        while not stop.is_set():
            n += 1
            # A new title each time: every action is a history record of its own.
            guid = f"plex://movie/{n:024x}"
            await post_actions(served, headers, {"type": "watched", "guid": guid, "at": t(1)})
            written += 1
            if written >= 20:
                enough.set()

    tasks = [asyncio.create_task(write(h)) for h in writers]
    try:
        await enough.wait()
        for _ in range(2):
            await replay(conn, all_projections(), slice_events=7)
        stop.set()
        await asyncio.gather(*tasks)
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    await settle(served)

    records = await pool.fetchval("SELECT count(*) FROM watch_history WHERE account_id ~ '^w'")
    states = await pool.fetchval("SELECT count(*) FROM watch_state WHERE account_id ~ '^w'")
    assert records == states == written
    assert (await verify(conn, all_projections())).ok


async def test_a_swap_catches_up_with_runners_that_went_past_the_rebuild(
    served: TestClient[Any, Any], conn: asyncpg.Connection[Any], pool: asyncpg.Pool[Any]
) -> None:
    # The race a replay under load can meet: the side tables are built, then every runner
    # applies more (the friends runner with a batch that touches none of its tables, so a
    # swap's table locks would not wait for it) before the swap.
    rebuilder = Rebuilder(conn, all_projections(), SIDE_SCHEMA, slice_events=3)
    await rebuilder.create()
    await rebuilder.build(await rebuilder.safe_cursor())
    built = rebuilder.cursor
    ann = await create_account(served, "late")
    await post_actions(
        served,
        ann,
        {"type": "watched", "guid": MOVIE, "at": t(1)},
        {"type": "rated", "guid": MOVIE, "at": t(2), "rating": 7},
    )
    await settle(served)
    live = await dump(pool)
    head = max(
        LogCursor(r[0], r[1])
        for r in await pool.fetch("SELECT transaction_id, position FROM projection_checkpoints")
    )
    assert head > built

    await swap_in(conn, rebuilder)

    # No runner was set back behind what its tables hold: idle, nothing is left to redo.
    checkpoints = await pool.fetch("SELECT transaction_id, position FROM projection_checkpoints")
    assert {LogCursor(r[0], r[1]) for r in checkpoints} == {head}
    assert rebuilder.cursor == head
    assert await dump(pool) == live
    assert (await verify(conn, all_projections())).ok


async def test_a_point_in_time_copy_shows_the_projections_as_they_were(
    served: TestClient[Any, Any], conn: asyncpg.Connection[Any], pool: asyncpg.Pool[Any]
) -> None:
    ann = await create_account(served, "pit")
    [first] = await post_actions(
        served, ann, {"type": "rated", "guid": MOVIE, "at": t(1), "rating": 4}
    )
    await post_actions(served, ann, {"type": "rated", "guid": MOVIE, "at": t(2), "rating": 9})
    await settle(served)
    live = await dump(pool)

    await copy_at(conn, all_projections(), "as_of_first", until_position=first["position"])

    rating = await pool.fetchval(
        "SELECT rating FROM as_of_first.watch_state WHERE account_id = 'pit'"
    )
    assert rating == 4
    assert await dump(pool) == live  # the live tables are untouched
    # A copy is replaced by the next copy of that name; any other schema is refused.
    await copy_at(conn, all_projections(), "as_of_first", until_time=T0)
    assert await pool.fetchval("SELECT count(*) FROM as_of_first.watch_state") == 0
    with pytest.raises(ReplayError):
        await copy_at(conn, all_projections(), "public")
    await pool.execute("CREATE SCHEMA mine")
    with pytest.raises(ReplayError, match="not a point-in-time copy"):
        await copy_at(conn, all_projections(), "mine")


async def test_a_replay_retries_dead_letters(
    served: TestClient[Any, Any],
    conn: asyncpg.Connection[Any],
    pool: asyncpg.Pool[Any],
    store: EventStore,
) -> None:
    ann = await create_account(served, "dl")
    # Still poison on replay: a rating no smallint holds.
    poison = registry.new(Rated(guid=MOVIE, at=T0, rating=40_000))
    await store.append(watch_stream("dl"), [poison])
    [fine] = await store.append(watch_stream("dl"), [registry.new(Watched(guid=MOVIE_2, at=T0))])
    await post_actions(served, ann, {"type": "watched", "guid": EPISODE, "at": t(1)})
    await settle(served)
    # As if an earlier release had failed on a good event (a bug since fixed): dead-lettered,
    # so missing from the state.
    await pool.execute(
        "INSERT INTO projection_dead_letters"
        " (account_id, projection, position, transaction_id, event_id, stream, type, error)"
        " SELECT account_id, 'watch_state', position, transaction_id, event_id, stream, type,"
        " 'KeyError: a bug' FROM events WHERE position = $1",
        fine.position,
    )
    await pool.execute("DELETE FROM watch_state WHERE account_id = 'dl' AND guid = $1", MOVIE_2)

    await replay(conn, [WatchStateProjection()])
    await settle(served)

    letters = await pool.fetch(
        "SELECT projection, type, error FROM projection_dead_letters ORDER BY position, projection"
    )
    # The activity projection folds ratings too, and meets the same poison.
    assert [tuple(r) for r in letters] == [
        ("activity", "rated", letters[0]["error"]),
        ("watch_state", "rated", letters[1]["error"]),
    ]
    assert all(r["error"].startswith("DataError") for r in letters)  # the live folds', kept
    titles = await pool.fetch("SELECT guid FROM watch_state WHERE account_id = 'dl' ORDER BY 1")
    assert [r[0] for r in titles] == sorted([MOVIE_2, EPISODE])
    assert (await verify(conn, all_projections())).ok


async def test_one_replay_at_a_time(
    served: TestClient[Any, Any], conn: asyncpg.Connection[Any], database_url: str
) -> None:
    other = await db.connect(database_url)
    try:
        await other.fetchval("SELECT pg_advisory_lock(hashtextextended('watchledger:replay', 0))")
        with pytest.raises(ReplayError, match="another replay"):
            await replay(conn, all_projections())
    finally:
        await other.close()
    assert (await verify(conn, all_projections())).ok  # free again
