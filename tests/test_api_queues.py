"""Outbound sync queues and their delivery: coalescing, acknowledgement, redelivery, backfill,
revocation, sync off/on, long-poll; and privacy."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from services.http.appkeys import POOL, SERVERS, STREAM_SLOTS
from services.http.auth import Principal
from tests.api import EPISODE, MOVIE, MOVIE_2, create_account, post_actions, settle, t
from tests.servers import grant, pull, register, revoke, send, setup_owner_with_server, sync
from tests.test_api_conventions import problem


def state_change(account: str, guid: str, **fields: Any) -> dict[str, Any]:
    return {
        "kind": "state",
        "account": account,
        "guid": guid,
        "ids": [guid],
        "watched": None,
        "watched_at": None,
        "rating": None,
        "rated_at": None,
        **fields,
    }


async def drain(client: TestClient[Any, Any], sid: str, server: dict[str, str]) -> str:
    """Acknowledge everything pending; the cursor after it."""
    changes, cursor = await pull(client, sid, server)
    while changes:
        changes, cursor = await pull(client, sid, server, cursor)
    return cursor


async def test_turning_sync_on_queues_the_whole_state_and_a_baseline_request(
    client: TestClient[Any, Any],
) -> None:
    ann, srv = await setup_owner_with_server(client, "ann", "srv-a", sync_on=False)
    await post_actions(
        client,
        ann,
        {"type": "watched", "guid": MOVIE, "at": t(1)},
        {"type": "rated", "guid": MOVIE_2, "at": t(2), "rating": 4},
    )
    await settle(client)
    nothing, _ = await pull(client, "srv-a", srv)
    assert nothing == []  # sync off: nothing at all is queued

    await sync(client, ann, True)
    changes, _ = await pull(client, "srv-a", srv)

    assert {"kind": "baseline_request", "account": "ann"} in changes
    assert state_change("ann", MOVIE, watched=True, watched_at=t(1)) in changes
    assert state_change("ann", MOVIE_2, rating=4, rated_at=t(2)) in changes
    assert len(changes) == 3


async def test_every_server_with_access_gets_each_change_once_coalesced(
    client: TestClient[Any, Any],
) -> None:
    ann, srv_a = await setup_owner_with_server(client, "ann", "srv-a")
    srv_b = await register(client, ann, "srv-b")
    bob = await create_account(client, "bob")
    srv_c = await register(client, bob, "srv-c")
    cursors = {
        sid: await drain(client, sid, s)
        for sid, s in (("srv-a", srv_a), ("srv-b", srv_b), ("srv-c", srv_c))
    }

    await post_actions(client, ann, {"type": "watched", "guid": MOVIE, "at": t(1)})
    await post_actions(client, ann, {"type": "unwatched", "guid": MOVIE, "at": t(2)})
    await post_actions(client, ann, {"type": "watched", "guid": MOVIE, "at": t(3)})
    await post_actions(client, ann, {"type": "rated", "guid": MOVIE, "at": t(3), "rating": 8})
    await settle(client)

    for sid, server in (("srv-a", srv_a), ("srv-b", srv_b)):
        changes, _ = await pull(client, sid, server, cursors[sid])
        assert changes == [
            state_change("ann", MOVIE, watched=True, watched_at=t(3), rating=8, rated_at=t(3))
        ]
    nothing, _ = await pull(client, "srv-c", srv_c, cursors["srv-c"])
    assert nothing == []  # bob's server: ann has no access


async def test_unacknowledged_changes_come_again_and_a_cursor_acknowledges_what_came_before(
    client: TestClient[Any, Any],
) -> None:
    ann, srv = await setup_owner_with_server(client, "ann", "srv-a")
    start = await drain(client, "srv-a", srv)
    await post_actions(
        client,
        ann,
        *({"type": "watched", "guid": f"plex://movie/{i:024x}", "at": t(1)} for i in range(5)),
    )
    await settle(client)

    first, cursor = await pull(client, "srv-a", srv, start, limit="3")
    again, _ = await pull(client, "srv-a", srv, start, limit="3")  # not acknowledged: again
    assert [c["guid"] for c in again] == [c["guid"] for c in first]
    rest, end = await pull(client, "srv-a", srv, cursor)  # acknowledges the first three
    assert len(rest) == 2
    assert {c["guid"] for c in first + rest} == {f"plex://movie/{i:024x}" for i in range(5)}
    done, _ = await pull(client, "srv-a", srv, end)
    assert done == []
    # An old cursor no longer brings back what a later one acknowledged.
    old, _ = await pull(client, "srv-a", srv, start)
    assert old == []


async def test_a_change_after_delivery_but_before_acknowledgement_is_delivered_again(
    client: TestClient[Any, Any],
) -> None:
    ann, srv = await setup_owner_with_server(client, "ann", "srv-a")
    start = await drain(client, "srv-a", srv)
    await post_actions(client, ann, {"type": "watched", "guid": MOVIE, "at": t(1)})
    await settle(client)
    [delivered], cursor = await pull(client, "srv-a", srv, start)
    assert delivered["watched"] is True

    await post_actions(client, ann, {"type": "unwatched", "guid": MOVIE, "at": t(2)})
    await settle(client)
    [newer], _ = await pull(client, "srv-a", srv, cursor)  # acknowledging the first keeps this
    assert (newer["watched"], newer["watched_at"]) == (False, t(2))


async def test_a_late_older_event_queues_nothing(client: TestClient[Any, Any]) -> None:
    ann, srv = await setup_owner_with_server(client, "ann", "srv-a")
    await post_actions(client, ann, {"type": "watched", "guid": MOVIE, "at": t(5)})
    await settle(client)
    cursor = await drain(client, "srv-a", srv)
    await post_actions(client, ann, {"type": "unwatched", "guid": MOVIE, "at": t(1)})
    await settle(client)
    nothing, _ = await pull(client, "srv-a", srv, cursor)
    assert nothing == []


async def test_a_newly_shared_server_gets_the_whole_state(client: TestClient[Any, Any]) -> None:
    owner, srv = await setup_owner_with_server(client, "owner", "srv-a")
    await drain(client, "srv-a", srv)
    bob = await create_account(client, "bob")
    await sync(client, bob, True)
    await post_actions(client, bob, {"type": "watched", "guid": EPISODE, "at": t(1)})
    await settle(client)

    await grant(client, owner, "srv-a", "bob", bob)  # answers once the backfill is queued
    changes, _ = await pull(client, "srv-a", srv)

    assert sorted(changes, key=lambda c: c["kind"]) == [
        {"kind": "baseline_request", "account": "bob"},
        state_change("bob", EPISODE, watched=True, watched_at=t(1)),
    ]


async def test_a_grant_while_sync_is_off_queues_nothing(client: TestClient[Any, Any]) -> None:
    owner, srv = await setup_owner_with_server(client, "owner", "srv-a")
    await drain(client, "srv-a", srv)
    bob = await create_account(client, "bob")
    await post_actions(client, bob, {"type": "watched", "guid": EPISODE, "at": t(1)})
    await grant(client, owner, "srv-a", "bob", bob)
    await settle(client)
    nothing, _ = await pull(client, "srv-a", srv)
    assert nothing == []


async def test_revoking_access_drops_pending_items_and_queues_nothing_more(
    client: TestClient[Any, Any],
) -> None:
    owner, srv = await setup_owner_with_server(client, "owner", "srv-a")
    await drain(client, "srv-a", srv)
    bob = await create_account(client, "bob")
    await sync(client, bob, True)
    await grant(client, owner, "srv-a", "bob", bob)
    await post_actions(client, bob, {"type": "watched", "guid": MOVIE, "at": t(1)})
    await settle(client)

    await revoke(client, owner, "srv-a", "bob")
    await post_actions(client, bob, {"type": "watched", "guid": MOVIE_2, "at": t(2)})
    await settle(client)
    nothing, _ = await pull(client, "srv-a", srv)
    assert nothing == []


async def test_sync_off_drops_pending_items_and_sync_on_backfills_again(
    client: TestClient[Any, Any],
) -> None:
    ann, srv = await setup_owner_with_server(client, "ann", "srv-a")
    await post_actions(client, ann, {"type": "watched", "guid": MOVIE, "at": t(1)})
    await settle(client)
    await sync(client, ann, False)
    nothing, cursor = await pull(client, "srv-a", srv)
    assert nothing == []
    await post_actions(client, ann, {"type": "watched", "guid": MOVIE_2, "at": t(2)})
    await settle(client)
    assert (await pull(client, "srv-a", srv, cursor))[0] == []

    await sync(client, ann, True)
    changes, _ = await pull(client, "srv-a", srv, cursor)
    assert {c.get("guid") for c in changes} == {None, MOVIE, MOVIE_2}


async def test_a_title_with_only_a_rating_has_no_watched_value(
    client: TestClient[Any, Any],
) -> None:
    ann, srv = await setup_owner_with_server(client, "ann", "srv-a")
    cursor = await drain(client, "srv-a", srv)
    await post_actions(client, ann, {"type": "rated", "guid": MOVIE, "at": t(1), "rating": 7})
    await post_actions(client, ann, {"type": "unwatched", "guid": MOVIE_2, "at": t(1)})
    await settle(client)
    changes, _ = await pull(client, "srv-a", srv, cursor)
    assert state_change("ann", MOVIE, rating=7, rated_at=t(1)) in changes
    assert state_change("ann", MOVIE_2, watched=False, watched_at=t(1)) in changes


async def test_a_long_poll_returns_as_soon_as_a_change_commits(
    client: TestClient[Any, Any],
) -> None:
    ann, srv = await setup_owner_with_server(client, "ann", "srv-a")
    cursor = await drain(client, "srv-a", srv)
    # Only a NOTIFY can wake the poll quickly now: the dispatcher's fallback poll is an hour.
    assert client.app is not None
    client.app[SERVERS].wakeups.poll = 3600
    await post_actions(
        client, ann, {"type": "watched", "guid": EPISODE, "at": t(0)}
    )  # kick the dispatcher onto the long poll interval
    await settle(client)
    cursor = await drain(client, "srv-a", srv)

    poll = asyncio.create_task(pull(client, "srv-a", srv, cursor, wait="30"))
    async with asyncio.timeout(10):  # the poll holds: nothing is pending
        await client.app[SERVERS].wakeups.for_server("srv-a").until_waiting(1)
    await post_actions(client, ann, {"type": "watched", "guid": MOVIE, "at": t(1)})
    async with asyncio.timeout(10):  # far below wait=30 and the hour-long fallback
        changes, _ = await poll
    assert [c["guid"] for c in changes] == [MOVIE]


async def test_a_long_poll_with_nothing_to_deliver_returns_empty_when_the_wait_ends(
    client: TestClient[Any, Any],
) -> None:
    _, srv = await setup_owner_with_server(client, "ann", "srv-a")
    cursor = await drain(client, "srv-a", srv)
    changes, same = await pull(client, "srv-a", srv, cursor, wait="0.2")
    assert changes == []
    assert same == cursor


async def test_waiting_long_polls_hold_no_database_connection(
    make_client: Callable[..., Any],
) -> None:
    # A thousand polls of one token: far over what one server is allowed in production.
    client = await make_client(max_streams_per_token=1000, max_connections=2000)
    ann, srv = await setup_owner_with_server(client, "ann", "srv-a")
    cursor = await drain(client, "srv-a", srv)
    assert client.app is not None
    pool = client.app[POOL]
    url = str(client.make_url("/v1/servers/srv-a/changes"))

    async def poll(http: aiohttp.ClientSession) -> list[dict[str, Any]]:
        async with http.get(url, params={"cursor": cursor, "wait": "30"}, headers=srv) as response:
            assert response.status == 200
            changes: list[dict[str, Any]] = (await response.json())["changes"]
            return changes

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        polls = [asyncio.create_task(poll(http)) for _ in range(1000)]
        async with asyncio.timeout(20):
            await client.app[SERVERS].wakeups.for_server("srv-a").until_waiting(1000)
        # A thousand requests are waiting, every pooled connection is idle, and one
        # connection (the listener's) LISTENs for them all. (A connection just released is
        # idle once its reset is done, and a background refresh may hold one for a moment:
        # looked at again for a while, a connection a poll held would stay busy.)
        async with asyncio.timeout(10):
            while pool.get_size() - pool.get_idle_size() != 0:  # noqa: ASYNC110 - no event
                await asyncio.sleep(0.01)  # says a released connection's reset is done
        listening = await pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND query LIKE 'LISTEN%'"
        )
        assert listening == 1
        assert not any(p.done() for p in polls)
        await post_actions(client, ann, {"type": "watched", "guid": MOVIE, "at": t(1)})
        async with asyncio.timeout(20):
            results = await asyncio.gather(*polls)
    assert all([c["guid"] for c in changes] == [MOVIE] for changes in results)


async def test_a_token_holds_a_bounded_number_of_long_polls(
    make_client: Callable[..., Any],
) -> None:
    client = await make_client(max_streams_per_token=2)
    ann, srv = await setup_owner_with_server(client, "ann", "srv-a")
    _, other = await setup_owner_with_server(client, "bob", "srv-b")
    cursor = await drain(client, "srv-a", srv)
    assert client.app is not None
    waiting = client.app[SERVERS].wakeups.for_server("srv-a")

    async def poll() -> list[dict[str, Any]]:
        changes, _ = await pull(client, "srv-a", srv, cursor, wait="30")
        return changes

    held = [asyncio.create_task(poll()) for _ in range(2)]
    async with asyncio.timeout(10):
        await waiting.until_waiting(2)
    third = await client.get(
        "/v1/servers/srv-a/changes", params={"cursor": cursor, "wait": "30"}, headers=srv
    )
    await problem(third, 429, "rate_limited")
    assert third.headers["Retry-After"] == "1"
    # Without `wait` it is a plain read, and another token has slots of its own.
    changes, _ = await pull(client, "srv-a", srv, cursor)
    assert changes == []
    await pull(client, "srv-b", other, wait="0.05")  # asserts a 200

    await post_actions(client, ann, {"type": "watched", "guid": MOVIE, "at": t(1)})
    async with asyncio.timeout(10):
        results = await asyncio.gather(*held)
    assert all([c["guid"] for c in r] == [MOVIE] for r in results)
    # The slots are free again.
    changes, _ = await pull(client, "srv-a", srv, cursor, wait="0.05")
    assert [c["guid"] for c in changes] == [MOVIE]


async def test_a_long_poll_whose_client_goes_gives_its_slot_back_at_once(
    make_client: Callable[..., Any],
) -> None:
    client = await make_client(max_streams_per_token=1)
    _, srv = await setup_owner_with_server(client, "ann", "srv-a")
    cursor = await drain(client, "srv-a", srv)
    assert client.app is not None
    waiting = client.app[SERVERS].wakeups.for_server("srv-a")
    slots = client.app[STREAM_SLOTS]
    slots.sweep = 0.05
    # A minute's wait: only noticing the closed connection can end the handler sooner.
    poll = asyncio.create_task(pull(client, "srv-a", srv, cursor, wait="60"))
    async with asyncio.timeout(10):
        await waiting.until_waiting(1)

    poll.cancel()  # the client gives up: its connection closes
    async with asyncio.timeout(5):
        while slots.held(Principal("server", "srv-a")) or waiting.waiting:  # noqa: ASYNC110
            await asyncio.sleep(0.01)  # no event says a handler has ended

    changes, _ = await pull(client, "srv-a", srv, cursor, wait="0.05")  # a 200, not a 429
    assert changes == []


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"wait": "61"}, "wait"),
        ({"wait": "-1"}, "wait"),
        ({"limit": "1001"}, "limit"),
        ({"cursor": "x"}, "cursor"),
    ],
)
async def test_bad_change_queries_are_422(
    client: TestClient[Any, Any], query: dict[str, str], field: str
) -> None:
    _, srv = await setup_owner_with_server(client, "ann", "srv-a")
    response = await client.get("/v1/servers/srv-a/changes", params=query, headers=srv)
    assert (await problem(response, 422, "invalid_request"))["errors"][0]["field"] == field


# -- privacy ----------------------------------------------------------------------------------


async def test_nothing_stored_links_an_event_to_the_server_that_sent_it(
    client: TestClient[Any, Any],
) -> None:
    owner, srv_a = await setup_owner_with_server(client, "zed", "server-alpha-7")
    srv_b = await register(client, owner, "server-bravo-9")
    await send(
        client,
        "server-alpha-7",
        srv_a,
        {"account": "zed", "type": "watched", "guid": MOVIE, "at": t(1)},
    )
    await send(
        client,
        "server-bravo-9",
        srv_b,
        {"account": "zed", "type": "watched", "guid": MOVIE_2, "at": t(1)},
    )
    await post_actions(client, owner, {"type": "watched", "guid": EPISODE, "at": t(1)})
    await settle(client)
    assert client.app is not None
    pool = client.app[POOL]

    # The three actions' log rows are alike in every way but their title and place.
    rows = await pool.fetch(
        "SELECT stream, type, schema_version, data::text AS data FROM events"
        " WHERE type = 'watched' ORDER BY position"
    )
    shapes = [
        (r["stream"], r["type"], r["schema_version"], sorted(__import__("json").loads(r["data"])))
        for r in rows
    ]
    assert shapes == [("watch-zed", "watched", 1, ["at", "guid"])] * 3

    # No row of any table but the server registry, who has access to what (the servers' queues,
    # and the accounts' snapshots: which servers each owns or accepted) names a server.
    registry_tables = {"servers", "sync_access", "sync_queue", "account_snapshots"}
    tables = [
        r["table_name"]
        for r in await pool.fetch(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
        )
    ]
    for table in tables:
        if table in registry_tables:
            continue
        dump = await pool.fetch(f"SELECT t::text AS row FROM {table} t")
        for row in dump:
            if table == "events" and ("server_registered" in row["row"]):
                continue  # the owner's registration event: about the server, not an action
            assert "server-alpha-7" not in row["row"], (table, row["row"])
            assert "server-bravo-9" not in row["row"], (table, row["row"])


async def test_server_event_outcomes_are_counted_without_naming_the_server(
    client: TestClient[Any, Any],
) -> None:
    _, srv = await setup_owner_with_server(client, "ann", "srv-secret-name")
    await send(
        client,
        "srv-secret-name",
        srv,
        {"account": "ann", "type": "watched", "guid": MOVIE, "at": t(1)},
        {"account": "ann", "type": "progress", "guid": MOVIE, "at": t(1)},
    )
    text = await (await client.get("/metrics")).text()
    assert 'watchledger_actions_total{outcome="recorded",source="server"} 1.0' in text
    assert 'watchledger_actions_total{outcome="in_progress_not_synced",source="server"} 1.0' in text
    assert "srv-secret-name" not in text  # routes are labelled by template, not by server
