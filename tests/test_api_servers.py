"""Servers and access, server-originated events with every outcome, baselines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from projections import domain
from services.http.appkeys import STORE
from tests.api import EPISODE, MOVIE, MOVIE_2, OPERATOR, create_account, post_actions, settle, t
from tests.servers import (
    accept,
    grant,
    leave,
    offer,
    pull,
    register,
    revoke,
    send,
    setup_owner_with_server,
    sync,
)
from tests.test_api_conventions import problem

# -- registration and access ------------------------------------------------------------------


async def test_an_account_registers_a_server_and_the_servers_token_works(
    client: TestClient[Any, Any],
) -> None:
    ann = await create_account(client, "ann")
    response = await client.post(
        "/v1/servers",
        json={"id": "srv-a", "name": "Living room", "version": "1.32.5.7349"},
        headers=ann,
    )
    assert response.status == 201
    body = await response.json()
    assert {k: body[k] for k in ("id", "owner", "name", "version")} == {
        "id": "srv-a",
        "owner": "ann",
        "name": "Living room",
        "version": "1.32.5.7349",
    }
    server = {"Authorization": f"Bearer {body['token']}"}
    info = await (await client.get("/v1/servers/srv-a", headers=server)).json()
    assert info == {
        "id": "srv-a",
        "owner": "ann",
        "name": "Living room",
        "version": "1.32.5.7349",
        "accounts": ["ann"],
    }
    assert await (await client.get("/v1/servers/srv-a", headers=ann)).json() == info


async def test_the_operator_registers_a_server_for_a_named_owner(
    client: TestClient[Any, Any],
) -> None:
    await create_account(client, "ann")
    body = {"id": "srv-a", "name": "A", "version": "1.40.0.1", "owner": "ann"}
    response = await client.post("/v1/servers", json=body, headers=OPERATOR)
    assert response.status == 201
    assert (await response.json())["owner"] == "ann"

    no_owner = await client.post(
        "/v1/servers", json={**body, "id": "srv-b", "owner": None}, headers=OPERATOR
    )
    assert (await problem(no_owner, 422, "invalid_request"))["errors"][0]["field"] == "$.owner"
    unknown = await client.post(
        "/v1/servers", json={**body, "id": "srv-c", "owner": "nobody"}, headers=OPERATOR
    )
    await problem(unknown, 422, "invalid_request")


async def test_an_account_cannot_register_a_server_for_another(
    client: TestClient[Any, Any],
) -> None:
    ann = await create_account(client, "ann")
    await create_account(client, "bob")
    body = {"id": "srv-a", "name": "A", "version": "1.40.0.1", "owner": "bob"}
    await problem(await client.post("/v1/servers", json=body, headers=ann), 403, "forbidden")


@pytest.mark.parametrize(
    ("version", "status", "code"),
    [
        ("1.27.1.0", 422, "server_too_old"),
        ("1.26.9", 422, "server_too_old"),
        ("0.9.99", 422, "server_too_old"),
        ("1.27.2", 201, None),
        ("1.27.2.5929-a806c5905", 201, None),
        ("2.0.0", 201, None),
        ("latest", 422, "invalid_request"),
        ("1.27", 422, "invalid_request"),
    ],
)
async def test_server_versions(
    client: TestClient[Any, Any], version: str, status: int, code: str | None
) -> None:
    ann = await create_account(client, "ann")
    response = await client.post(
        "/v1/servers", json={"id": "s", "name": "S", "version": version}, headers=ann
    )
    if code is None:
        assert response.status == status
    else:
        await problem(response, status, code)


async def test_server_ids_are_unique(client: TestClient[Any, Any]) -> None:
    ann = await create_account(client, "ann")
    bob = await create_account(client, "bob")
    await register(client, ann, "srv-a")
    again = await client.post(
        "/v1/servers", json={"id": "srv-a", "name": "B", "version": "1.40.0"}, headers=bob
    )
    await problem(again, 409, "server_exists")


async def test_who_may_see_a_server(client: TestClient[Any, Any]) -> None:
    ann = await create_account(client, "ann")
    bob = await create_account(client, "bob")
    srv_a = await register(client, ann, "srv-a")
    await register(client, bob, "srv-b")
    await problem(await client.get("/v1/servers/srv-a", headers=bob), 403, "forbidden")
    await problem(await client.get("/v1/servers/srv-b", headers=srv_a), 403, "forbidden")
    await problem(await client.get("/v1/servers/srv-a", headers=OPERATOR), 403, "forbidden")
    await problem(await client.get("/v1/servers/nope", headers=ann), 404, "not_found")


async def test_a_share_is_an_offer_until_accepted(client: TestClient[Any, Any]) -> None:
    ann = await create_account(client, "ann")
    bob = await create_account(client, "bob")
    cy = await create_account(client, "cy")
    await register(client, ann, "srv-a")

    await offer(client, ann, "srv-a", "bob")
    await offer(client, ann, "srv-a", "bob")  # again: nothing changes
    await offer(client, ann, "srv-a", "cy")
    await offer(client, ann, "srv-a", "ann")  # the owner has access anyway
    info = await (await client.get("/v1/servers/srv-a", headers=ann)).json()
    assert info["accounts"] == ["ann"]  # offers are not access
    srv_a = {"id": "srv-a", "name": "SRV-A", "owner": "ann", "version": "1.32.5.7349"}
    mine = await (await client.get("/v1/me/servers", headers=bob)).json()
    assert mine == {"items": [], "offers": [srv_a]}

    await accept(client, bob, "srv-a")
    await accept(client, bob, "srv-a")  # again: nothing changes
    info = await (await client.get("/v1/servers/srv-a", headers=ann)).json()
    assert info["accounts"] == ["ann", "bob"]
    mine = await (await client.get("/v1/me/servers", headers=bob)).json()
    assert mine == {"items": [srv_a], "offers": []}

    await leave(client, cy, "srv-a")  # declines the offer
    await problem(await client.put("/v1/me/servers/srv-a", headers=cy), 404, "not_found")
    await offer(client, ann, "srv-a", "cy")  # offered again
    await revoke(client, ann, "srv-a", "cy")  # and withdrawn
    await revoke(client, ann, "srv-a", "cy")  # again: nothing changes
    await problem(await client.put("/v1/me/servers/srv-a", headers=cy), 404, "not_found")
    assert (await (await client.get("/v1/me/servers", headers=cy)).json())["offers"] == []

    await leave(client, bob, "srv-a")  # leaves the shared server
    await leave(client, bob, "srv-a")  # again: nothing changes
    info = await (await client.get("/v1/servers/srv-a", headers=ann)).json()
    assert info["accounts"] == ["ann"]

    await problem(
        await client.delete("/v1/servers/srv-a/access/ann", headers=ann), 422, "invalid_request"
    )
    await problem(await client.delete("/v1/me/servers/srv-a", headers=ann), 422, "invalid_request")
    await accept(client, ann, "srv-a")  # the owner's own: it has access
    await problem(await client.put("/v1/me/servers/nope", headers=bob), 404, "not_found")
    await problem(await client.delete("/v1/me/servers/nope", headers=bob), 404, "not_found")
    await problem(await client.put("/v1/servers/srv-a/access/bob", headers=bob), 403, "forbidden")
    await problem(
        await client.put("/v1/servers/srv-a/access/nobody", headers=ann), 404, "not_found"
    )
    await problem(await client.put("/v1/servers/nope/access/bob", headers=ann), 404, "not_found")

    events = (await (await client.get("/v1/admin/events", headers=OPERATOR)).json())["items"]
    server_events = [
        (e["stream"], e["type"], e["data"].get("server_id"))
        for e in events
        if "server" in e["type"] or "access" in e["type"]
    ]
    assert server_events == [
        ("account-ann", "server_registered", "srv-a"),
        ("account-bob", "access_offered", "srv-a"),
        ("account-cy", "access_offered", "srv-a"),
        ("account-bob", "access_accepted", "srv-a"),
        ("account-cy", "access_declined", "srv-a"),
        ("account-cy", "access_offered", "srv-a"),
        ("account-cy", "access_revoked", "srv-a"),
        ("account-bob", "access_left", "srv-a"),
    ]


async def test_until_accepted_a_server_can_neither_read_nor_write_the_account(
    client: TestClient[Any, Any],
) -> None:
    """Product rule 3: consent. Bob is offered Ann's server and has sync on; until he
    accepts, the server gets nothing of his and its events for him are refused."""
    ann, srv = await setup_owner_with_server(client, "ann", "srv-a")
    bob = await create_account(client, "bob")
    await sync(client, bob, True)
    await post_actions(client, bob, {"type": "watched", "guid": MOVIE, "at": t(1)})
    await offer(client, ann, "srv-a", "bob")
    await settle(client)

    changes, cursor = await pull(client, "srv-a", srv)
    assert all(c["account"] == "ann" for c in changes)
    [refused] = await send(
        client, "srv-a", srv, {"account": "bob", "type": "watched", "guid": EPISODE}
    )
    assert refused == {"status": "rejected", "code": "no_access"}

    await accept(client, bob, "srv-a")  # answers once the backfill is queued
    changes, cursor = await pull(client, "srv-a", srv, cursor)
    assert sorted((c["kind"], c["account"], c.get("guid")) for c in changes) == [
        ("baseline_request", "bob", None),
        ("state", "bob", MOVIE),
    ]
    [recorded] = await send(
        client, "srv-a", srv, {"account": "bob", "type": "watched", "guid": EPISODE}
    )
    assert recorded["status"] == "recorded"

    # Bob leaves: what was pending for him goes, and the server is refused again.
    await post_actions(client, bob, {"type": "watched", "guid": MOVIE_2, "at": t(2)})
    await leave(client, bob, "srv-a")
    changes, cursor = await pull(client, "srv-a", srv, cursor)
    assert [c for c in changes if c["account"] == "bob"] == []
    [refused] = await send(
        client, "srv-a", srv, {"account": "bob", "type": "watched", "guid": MOVIE_2}
    )
    assert refused == {"status": "rejected", "code": "no_access"}
    info = await (await client.get("/v1/servers/srv-a", headers=ann)).json()
    assert info["accounts"] == ["ann"]


async def test_shares_recorded_before_consent_are_offers(client: TestClient[Any, Any]) -> None:
    """A legacy ``access_granted`` (written before shares needed consent) gives no access: it is
    an offer the account can accept or decline."""
    _, srv = await setup_owner_with_server(client, "ann", "srv-a")
    bob = await create_account(client, "bob")
    await sync(client, bob, True)
    app = client.app
    assert app is not None
    store = app[STORE]
    version = await store.stream_version("account-bob")
    await store.append(
        "account-bob",
        [domain.registry.new(domain.AccessGranted(server_id="srv-a"))],
        expected_version=version,
    )
    await settle(client)
    mine = await (await client.get("/v1/me/servers", headers=bob)).json()
    assert ([s["id"] for s in mine["items"]], [s["id"] for s in mine["offers"]]) == ([], ["srv-a"])
    [refused] = await send(
        client, "srv-a", srv, {"account": "bob", "type": "watched", "guid": MOVIE}
    )
    assert refused == {"status": "rejected", "code": "no_access"}
    await accept(client, bob, "srv-a")
    [recorded] = await send(
        client, "srv-a", srv, {"account": "bob", "type": "watched", "guid": MOVIE}
    )
    assert recorded["status"] == "recorded"


async def test_my_servers_lists_owned_and_shared(client: TestClient[Any, Any]) -> None:
    ann = await create_account(client, "ann")
    bob = await create_account(client, "bob")
    await register(client, ann, "srv-a")
    await register(client, bob, "srv-b")
    await grant(client, bob, "srv-b", "ann", ann)
    mine = await (await client.get("/v1/me/servers", headers=ann)).json()
    assert [(s["id"], s["owner"]) for s in mine["items"]] == [("srv-a", "ann"), ("srv-b", "bob")]
    await revoke(client, bob, "srv-b", "ann")
    mine = await (await client.get("/v1/me/servers", headers=ann)).json()
    assert [s["id"] for s in mine["items"]] == ["srv-a"]


# -- server events ----------------------------------------------------------------------------


async def test_every_outcome_of_a_server_event(client: TestClient[Any, Any]) -> None:
    owner, srv = await setup_owner_with_server(client, "ann", "srv-a")
    bob = await create_account(client, "bob")  # shared, sync on
    await grant(client, owner, "srv-a", "bob", bob)
    await sync(client, bob, True)
    cy = await create_account(client, "cy")  # shared, sync off
    await grant(client, owner, "srv-a", "cy", cy)
    kid = await create_account(client, "kid", kind="managed")  # shared, managed
    await grant(client, owner, "srv-a", "kid", kid)
    dee = await create_account(client, "dee")  # sync on, no access
    await sync(client, dee, True)
    eve = await create_account(client, "eve")  # sync on, offered but not accepted
    await sync(client, eve, True)
    await offer(client, owner, "srv-a", "eve")

    future = (datetime.now(UTC) + timedelta(minutes=10)).isoformat()
    cases: list[tuple[dict[str, Any], str]] = [
        ({"account": "ann", "type": "watched", "guid": MOVIE, "at": t(1)}, "recorded"),
        ({"account": "bob", "type": "rated", "guid": MOVIE, "at": t(1), "rating": 8}, "recorded"),
        ({"account": "ann", "type": "watched", "guid": MOVIE, "at": t(1)}, "duplicate"),
        ({"account": "nobody", "type": "watched", "guid": MOVIE}, "unknown_account"),
        ({"account": "kid", "type": "watched", "guid": MOVIE}, "managed_account"),
        ({"account": "dee", "type": "watched", "guid": MOVIE}, "no_access"),
        ({"account": "eve", "type": "watched", "guid": MOVIE}, "no_access"),
        ({"account": "cy", "type": "watched", "guid": MOVIE}, "sync_disabled"),
        (
            {"account": "ann", "type": "watched", "guid": "plex://track/5d07cdd6403c640290f7d0a2"},
            "music_not_synced",
        ),
        (
            {"account": "ann", "type": "watched", "guid": "com.plexapp.agents.imdb://tt0080684"},
            "unsupported_guid",
        ),
        (
            {"account": "ann", "type": "watched", "guid": MOVIE, "edition": "Director's Cut"},
            "edition_not_synced",
        ),
        (
            {"account": "ann", "type": "progress", "guid": MOVIE, "at": t(1)},
            "in_progress_not_synced",
        ),
        ({"account": "ann", "type": "rated", "guid": MOVIE, "rating": 11}, "invalid_rating"),
        ({"account": "ann", "type": "watched", "guid": MOVIE, "rating": 3}, "invalid_rating"),
        ({"account": "ann", "type": "watched", "guid": MOVIE, "at": future}, "at_in_future"),
        # The first in the contract's order wins.
        ({"account": "nobody", "type": "progress", "guid": "plex://track/x"}, "unknown_account"),
        ({"account": "kid", "type": "progress", "guid": "local://1"}, "managed_account"),
        ({"account": "dee", "type": "watched", "guid": "plex://track/x"}, "no_access"),
        ({"account": "cy", "type": "watched", "guid": "plex://track/x"}, "sync_disabled"),
        (
            {"account": "ann", "type": "progress", "guid": "plex://album/x", "edition": "x"},
            "music_not_synced",
        ),
        # A server names titles by whichever ids it knows; they must agree on the kind.
        (
            {
                "account": "ann",
                "type": "watched",
                "guid": "tvdb://show/81189/s1e1",
                "ids": ["imdb://episode/tt0959621", "tvdb://episode/349232"],
                "at": t(2),
            },
            "recorded",
        ),
        (
            {"account": "ann", "type": "watched", "guid": MOVIE, "ids": ["tvdb://show/1"]},
            "conflicting_ids",
        ),
        (
            {
                "account": "ann",
                "type": "progress",
                "guid": MOVIE,
                "ids": ["tvdb://show/1"],
                "edition": "x",
            },
            "conflicting_ids",
        ),
        (
            {"account": "ann", "type": "progress", "guid": MOVIE, "edition": "x"},
            "edition_not_synced",
        ),
        (
            {"account": "ann", "type": "progress", "guid": MOVIE, "rating": 99},
            "in_progress_not_synced",
        ),
        (
            {"account": "ann", "type": "rated", "guid": MOVIE, "rating": 0, "at": future},
            "invalid_rating",
        ),
        (
            {"account": "ann", "type": "watched", "guid": MOVIE, "edition": None, "at": t(2)},
            "recorded",
        ),
    ]
    results = await send(client, "srv-a", srv, *(event for event, _ in cases))
    outcomes = [r["status"] if r["status"] != "rejected" else r["code"] for r in results]
    assert outcomes == [expected for _, expected in cases]


async def test_a_server_may_post_only_for_itself_and_batches_are_bounded(
    client: TestClient[Any, Any],
) -> None:
    owner, srv_a = await setup_owner_with_server(client, "ann", "srv-a")
    await register(client, owner, "srv-b")
    event = {"account": "ann", "type": "watched", "guid": MOVIE}
    await problem(
        await client.post("/v1/servers/srv-b/events", json={"events": [event]}, headers=srv_a),
        403,
        "forbidden",
    )
    await problem(
        await client.post("/v1/servers/srv-a/events", json={"events": [event]}, headers=owner),
        403,
        "forbidden",
    )
    too_many = await client.post(
        "/v1/servers/srv-a/events", json={"events": [event] * 1001}, headers=srv_a
    )
    await problem(too_many, 413, "batch_too_large")
    bad = await client.post(
        "/v1/servers/srv-a/events", json={"events": [{**event, "type": "paused"}]}, headers=srv_a
    )
    assert (await problem(bad, 422, "invalid_request"))["errors"][0]["field"] == "$.events[0].type"
    await problem(await client.get("/v1/servers/srv-b/changes", headers=srv_a), 403, "forbidden")


async def test_server_events_become_state_and_history_like_the_accounts_own(
    client: TestClient[Any, Any],
) -> None:
    ann, srv = await setup_owner_with_server(client, "ann", "srv-a")
    await send(
        client,
        "srv-a",
        srv,
        {"account": "ann", "type": "watched", "guid": MOVIE, "at": t(1)},
        {"account": "ann", "type": "rated", "guid": MOVIE, "at": t(2), "rating": 6},
    )
    await settle(client)
    state = await (await client.get(f"/v1/me/state/{MOVIE}", headers=ann)).json()
    assert (state["watched"], state["watched_at"], state["rating"]) == (True, t(1), 6)
    me = await (await client.get("/v1/me", headers=ann)).json()
    assert me["counts"] == {"movies": 1, "episodes": 0}


async def test_a_batch_spanning_many_accounts_is_one_transaction(
    client: TestClient[Any, Any],
) -> None:
    """Issue 12: a server's backlog for many users commits once, not once an account; each
    account's events still go to its own stream, and each event's outcome is its own."""
    owner, srv = await setup_owner_with_server(client, "ann", "srv-a")
    names = ["bob", "cy", "dee", "eve"]
    for name in names:
        headers = await create_account(client, name)
        await grant(client, owner, "srv-a", name, headers)
        await sync(client, headers, True)
    events = [
        {"account": name, "type": "watched", "guid": guid, "at": t(i)}
        for i, name in enumerate(["ann", *names, "ann"])
        for guid in (MOVIE, EPISODE)
    ]
    results = await send(client, "srv-a", srv, *events)
    assert [r["status"] for r in results] == ["recorded"] * 12
    store = client.app[STORE]
    watched = [e for e in await store.read_all() if e.type == "watched"]
    assert len(watched) == 12
    assert len({e.transaction_id for e in watched}) == 1
    assert {e.stream for e in watched} == {domain.watch_stream(a) for a in ["ann", *names]}


async def test_turning_sync_off_stops_server_events_but_keeps_what_was_recorded(
    client: TestClient[Any, Any],
) -> None:
    ann, srv = await setup_owner_with_server(client, "ann", "srv-a")
    [before] = await send(
        client, "srv-a", srv, {"account": "ann", "type": "watched", "guid": MOVIE, "at": t(1)}
    )
    await sync(client, ann, False)
    [after] = await send(
        client, "srv-a", srv, {"account": "ann", "type": "watched", "guid": MOVIE_2}
    )
    [own] = await post_actions(client, ann, {"type": "watched", "guid": EPISODE})
    await settle(client)
    assert (before["status"], after, own["status"]) == (
        "recorded",
        {"status": "rejected", "code": "sync_disabled"},
        "recorded",
    )
    state = await (await client.get("/v1/me/state", headers=ann)).json()
    assert sorted(i["guid"] for i in state["items"]) == sorted([MOVIE, EPISODE])


async def test_a_managed_account_cannot_sync_from_servers(client: TestClient[Any, Any]) -> None:
    owner, srv = await setup_owner_with_server(client, "ann", "srv-a")
    kid = await create_account(client, "kid", kind="managed")
    await grant(client, owner, "srv-a", "kid", kid)
    [result] = await send(
        client, "srv-a", srv, {"account": "kid", "type": "watched", "guid": MOVIE}
    )
    assert result == {"status": "rejected", "code": "managed_account"}


async def test_a_baseline_adds_history_only_for_titles_without_history(
    client: TestClient[Any, Any],
) -> None:
    ann, srv = await setup_owner_with_server(client, "ann", "srv-a")
    await post_actions(client, ann, {"type": "watched", "guid": MOVIE, "at": t(1)})
    results = await send(
        client,
        "srv-a",
        srv,
        # MOVIE has history: no new record, but the newer time still wins the state.
        {"account": "ann", "type": "watched", "guid": MOVIE, "at": t(5), "baseline": True},
        # MOVIE_2 has none: one record, with the time of the most recent viewing.
        {"account": "ann", "type": "watched", "guid": MOVIE_2, "at": t(3), "baseline": True},
        {
            "account": "ann",
            "type": "rated",
            "guid": EPISODE,
            "at": t(3),
            "rating": 9,
            "baseline": True,
        },
    )
    assert [r["status"] for r in results] == ["recorded"] * 3
    await settle(client)

    history = (await (await client.get("/v1/me/history", headers=ann)).json())["items"]
    assert [(h["guid"], h["at"]) for h in history] == [(MOVIE_2, t(3)), (MOVIE, t(1))]
    movie = await (await client.get(f"/v1/me/state/{MOVIE}", headers=ann)).json()
    assert movie["watched_at"] == t(5)
    episode = await (await client.get(f"/v1/me/state/{EPISODE}", headers=ann)).json()
    assert episode["rating"] == 9
    # Later, ordinary history keeps being recorded.
    await send(
        client, "srv-a", srv, {"account": "ann", "type": "watched", "guid": MOVIE_2, "at": t(6)}
    )
    await settle(client)
    history = (
        await (await client.get("/v1/me/history", params={"guid": MOVIE_2}, headers=ann)).json()
    )["items"]
    assert [h["at"] for h in history] == [t(6), t(3)]


async def test_an_older_baseline_loses_to_newer_state(client: TestClient[Any, Any]) -> None:
    ann, srv = await setup_owner_with_server(client, "ann", "srv-a")
    await post_actions(client, ann, {"type": "unwatched", "guid": MOVIE, "at": t(4)})
    await send(
        client,
        "srv-a",
        srv,
        {"account": "ann", "type": "watched", "guid": MOVIE, "at": t(2), "baseline": True},
    )
    await settle(client)
    state = await (await client.get(f"/v1/me/state/{MOVIE}", headers=ann)).json()
    assert (state["watched"], state["watched_at"]) == (False, t(4))


async def test_servers_do_not_see_queues_of_accounts_they_lost(
    client: TestClient[Any, Any],
) -> None:
    owner, srv = await setup_owner_with_server(client, "ann", "srv-a")
    bob = await create_account(client, "bob")
    await sync(client, bob, True)
    await grant(client, owner, "srv-a", "bob", bob)
    await post_actions(client, bob, {"type": "watched", "guid": MOVIE, "at": t(1)})
    await settle(client)
    await revoke(client, owner, "srv-a", "bob")
    changes, _ = await pull(client, "srv-a", srv)
    assert all(c["account"] == "ann" for c in changes)


async def test_a_servers_echo_of_an_action_made_with_a_client_id_is_a_duplicate(
    client: TestClient[Any, Any],
) -> None:
    """An app records an action with its own id; the service sends it to a server; the
    server reports back what it applied (no id, same title, type, time): the same action."""
    import uuid

    ann, srv = await setup_owner_with_server(client, "ann", "srv-a")
    _, cursor = await pull(client, "srv-a", srv)  # the sync-on backfill
    [own] = await post_actions(
        client, ann, {"type": "watched", "guid": MOVIE, "at": t(1), "id": str(uuid.uuid4())}
    )
    await settle(client)
    [change], cursor = await pull(client, "srv-a", srv, cursor)
    [echo] = await send(
        client,
        "srv-a",
        srv,
        {"account": "ann", "type": "watched", "guid": change["guid"], "at": change["watched_at"]},
    )
    assert own["status"] == "recorded"
    assert echo == {"status": "duplicate"}
    await settle(client)
    history = (await (await client.get("/v1/me/history", headers=ann)).json())["items"]
    assert len(history) == 1
    nothing, _ = await pull(client, "srv-a", srv, cursor)
    assert nothing == []


async def test_a_server_event_with_more_than_eight_ids_is_422(
    client: TestClient[Any, Any],
) -> None:
    owner, server = await setup_owner_with_server(client, "ann", "srv-a")
    await sync(client, owner, True)
    ids = [f"tmdb://movie/{n}" for n in range(1, 10)]
    event = {"account": "ann", "type": "watched", "guid": "tmdb://movie/550", "at": t(1)}
    response = await client.post(
        "/v1/servers/srv-a/events", json={"events": [{**event, "ids": ids}]}, headers=server
    )
    body = await problem(response, 422, "invalid_request")
    assert body["errors"][0]["field"].endswith("ids")
    [eight] = await send(client, "srv-a", server, {**event, "ids": ids[:8]})
    assert eight["status"] == "recorded"
