"""Product rule 12 as a property: whatever workload the service took — the accounts' own actions,
server events (baselines too), sync settings, shares offered, accepted, left and revoked, both
deletions, friend requests and their ends (either way between the accounts) and visibility
changes — rebuilding every projection from the log gives exactly the live ones."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventstore import database as db
from projections.catalog import all_projections
from projections.replay import replay, verify
from tests.api import create_account, settle
from tests.servers import register

TITLES = [
    "plex://movie/5d776825880197001ec967c6",
    "plex://movie/5d776825880197001ec967c7",
    "plex://episode/5d9c1276e9d5a1001f4f4d6d",
    "plex://show/5d9c086c46115600200aa2fe",
]
PROJECTION_TABLES = {
    "watch_state": "account_id, guid",
    "sync_accounts": "account_id",
    "sync_access": "account_id, server_id",
    "watch_history": "account_id, position",
    "friend_requests": "account_id, friend_id",
    "activity": "account_id, position",
    "activity_profiles": "account_id",
}

VISIBILITIES = ["private", "friends", "public"]

times = st.integers(min_value=0, max_value=30).map(
    lambda h: f"2026-02-0{1 + h // 10}T{h % 10:02d}:00:00Z"
)
actions = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["watched", "unwatched", "rated", "unrated"]),
        "guid": st.sampled_from(TITLES),
        "at": times,
    }
)
steps = st.one_of(
    st.tuples(st.just("action"), st.integers(0, 1), actions, st.integers(1, 10)),
    st.tuples(st.just("server"), st.integers(0, 1), actions, st.booleans()),
    st.tuples(st.just("sync"), st.integers(0, 1), st.booleans()),
    st.tuples(st.just("share"), st.sampled_from(["offer", "accept", "leave", "revoke"])),
    st.tuples(st.just("delete"), st.integers(0, 1), st.sampled_from(["history", "state"])),
    # Friendships among three accounts (the third only befriends): one asks (or accepts) or
    # ends (or withdraws, declines), either way round; as likely as all the rest together.
    *[st.tuples(st.just("friend"), st.integers(0, 2), st.integers(1, 2), st.booleans())] * 4,
    st.tuples(st.just("visibility"), st.integers(0, 2), st.sampled_from(VISIBILITIES)),
)


async def _tables(pool: asyncpg.Pool[Any]) -> dict[str, list[tuple[Any, ...]]]:
    return {
        table: [tuple(r) for r in await pool.fetch(f"SELECT * FROM {table} ORDER BY {key}")]
        for table, key in PROJECTION_TABLES.items()
    }


@pytest.fixture
async def served(make_client: Callable[..., Any], database_url: str) -> TestClient[Any, Any]:
    client: TestClient[Any, Any] = await make_client(database_url)
    return client


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection[Any]]:
    connection = await db.connect(database_url)
    yield connection
    await connection.close()


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(workload=st.lists(steps, min_size=1, max_size=25))
async def test_replaying_any_workload_gives_the_live_projections(
    served: TestClient[Any, Any],
    conn: asyncpg.Connection[Any],
    pool: asyncpg.Pool[Any],
    workload: list[tuple[Any, ...]],
) -> None:
    tag = uuid.uuid4().hex[:8]  # examples share one database
    names = [f"w{tag}a", f"w{tag}b", f"w{tag}c"]
    accounts = [await create_account(served, name) for name in names]
    server_id = f"s{tag}"
    server = await register(served, accounts[0], server_id)
    for step in workload:
        await _run(served, step, names, accounts, server_id, server)
    await settle(served)
    live = await _tables(pool)
    assert (await verify(conn, all_projections())).ok

    # In slices of a few events: what one slice folds, the next goes on from.
    await replay(conn, all_projections(), slice_events=4)

    assert await _tables(pool) == live


async def _run(
    client: TestClient[Any, Any],
    step: tuple[Any, ...],
    names: list[str],
    accounts: list[dict[str, str]],
    server_id: str,
    server: dict[str, str],
) -> None:
    kind = step[0]
    if kind == "action":
        _, who, action, rating = step
        body = {**action, **({"rating": rating} if action["type"] == "rated" else {})}
        response = await client.post(
            "/v1/me/actions", json={"actions": [body]}, headers=accounts[who]
        )
    elif kind == "server":
        _, who, action, baseline = step
        body = {**action, "account": names[who], "baseline": baseline}
        if action["type"] == "rated":
            body["rating"] = 5
        response = await client.post(
            f"/v1/servers/{server_id}/events", json={"events": [body]}, headers=server
        )
    elif kind == "sync":
        _, who, enabled = step
        response = await client.patch(
            "/v1/me", json={"sync_enabled": enabled}, headers=accounts[who]
        )
    elif kind == "share":
        path = {
            "offer": (client.put, f"/v1/servers/{server_id}/access/{names[1]}", accounts[0]),
            "revoke": (client.delete, f"/v1/servers/{server_id}/access/{names[1]}", accounts[0]),
            "accept": (client.put, f"/v1/me/servers/{server_id}", accounts[1]),
            "leave": (client.delete, f"/v1/me/servers/{server_id}", accounts[1]),
        }
        method, url, headers = path[step[1]]
        response = await method(url, headers=headers)
    elif kind == "friend":
        _, who, offset, asking = step
        method = client.put if asking else client.delete
        other = names[(who + offset) % len(names)]
        response = await method(f"/v1/me/friends/{other}", headers=accounts[who])
    elif kind == "visibility":
        _, who, visibility = step
        response = await client.patch(
            "/v1/me", json={"visibility": visibility}, headers=accounts[who]
        )
    else:
        _, who, what = step
        response = await client.delete(
            f"/v1/me/{what}", params={"confirm": "true"}, headers=accounts[who]
        )
    # Refusals (no offer to accept, sync on for a state deletion, ...) are part of the workload.
    assert response.status < 500, await response.text()
