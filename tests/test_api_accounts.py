"""Accounts and their settings, through a real server; every change is an event in the log."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.api import OPERATOR, create_account
from tests.test_api_conventions import problem


async def test_create_account_returns_its_token_once_and_the_token_works(
    client: TestClient[Any, Any],
) -> None:
    response = await client.post(
        "/v1/accounts", json={"id": "acc-1", "kind": "full", "name": "Ann"}, headers=OPERATOR
    )
    assert response.status == 201
    body = await response.json()
    assert {k: body[k] for k in ("id", "kind", "name")} == {
        "id": "acc-1",
        "kind": "full",
        "name": "Ann",
    }
    token = body["token"]
    assert len(token.rsplit(".", 1)[1]) >= 43  # 256 random bits, base64url

    me = await client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status == 200
    assert await me.json() == {
        "id": "acc-1",
        "kind": "full",
        "name": "Ann",
        "sync_enabled": False,
        "visibility": "friends",
        "counts": {"movies": 0, "episodes": 0},
    }


async def test_the_token_is_stored_only_as_a_hash(client: TestClient[Any, Any]) -> None:
    headers = await create_account(client, "ann")
    token = headers["Authorization"].removeprefix("Bearer ")
    events = await (await client.get("/v1/admin/events", headers=OPERATOR)).json()
    assert token not in str(events)
    [created] = events["items"]
    assert created["type"] == "account_created"
    assert created["data"]["token_hash"] != token


async def test_an_existing_id_is_409(client: TestClient[Any, Any]) -> None:
    await create_account(client, "ann")
    response = await client.post(
        "/v1/accounts", json={"id": "ann", "kind": "managed", "name": "Other"}, headers=OPERATOR
    )
    await problem(response, 409, "account_exists")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"id": "", "kind": "full", "name": "A"}, "$.id"),
        ({"id": "a" * 65, "kind": "full", "name": "A"}, "$.id"),
        ({"id": "has space", "kind": "full", "name": "A"}, "$.id"),
        ({"id": "dot.ted", "kind": "full", "name": "A"}, "$.id"),
        ({"id": "ok", "kind": "admin", "name": "A"}, "$.kind"),
        ({"id": "ok", "kind": "full"}, "$"),
        ({"id": "ok", "kind": "full", "name": ""}, "$.name"),
        ({"id": "ok", "kind": "full", "name": "A", "token": "mine"}, "$"),
    ],
)
async def test_invalid_accounts_are_422(
    client: TestClient[Any, Any], body: dict[str, Any], field: str
) -> None:
    detail = await problem(
        await client.post("/v1/accounts", json=body, headers=OPERATOR), 422, "invalid_request"
    )
    assert detail["errors"][0]["field"] == field


async def test_ids_use_the_whole_allowed_alphabet(client: TestClient[Any, Any]) -> None:
    headers = await create_account(client, "A-z_0-9" + "x" * 57)
    assert (await client.get("/v1/me", headers=headers)).status == 200


async def test_patch_me_changes_settings_and_returns_the_new_me(
    client: TestClient[Any, Any],
) -> None:
    ann = await create_account(client, "ann")

    on = await client.patch("/v1/me", json={"sync_enabled": True}, headers=ann)
    assert on.status == 200
    assert (await on.json())["sync_enabled"] is True

    public = await client.patch("/v1/me", json={"visibility": "public"}, headers=ann)
    body = await public.json()
    assert (body["sync_enabled"], body["visibility"]) == (True, "public")

    both = await client.patch(
        "/v1/me", json={"sync_enabled": False, "visibility": "private"}, headers=ann
    )
    body = await both.json()
    assert (body["sync_enabled"], body["visibility"]) == (False, "private")

    same = await client.patch("/v1/me", json={}, headers=ann)
    assert await same.json() == body
    assert await (await client.get("/v1/me", headers=ann)).json() == body


async def test_settings_changes_are_events_and_no_ops_are_not(client: TestClient[Any, Any]) -> None:
    ann = await create_account(client, "ann")
    await client.patch("/v1/me", json={"sync_enabled": True, "visibility": "public"}, headers=ann)
    await client.patch("/v1/me", json={"sync_enabled": True}, headers=ann)  # no change

    events = (await (await client.get("/v1/admin/events", headers=OPERATOR)).json())["items"]

    assert [(e["stream"], e["type"]) for e in events] == [
        ("account-ann", "account_created"),
        ("account-ann", "sync_changed"),
        ("account-ann", "visibility_changed"),
    ]
    assert events[1]["data"] == {"enabled": True}
    assert events[2]["data"] == {"visibility": "public"}


async def test_a_managed_account_cannot_turn_sync_on(client: TestClient[Any, Any]) -> None:
    kid = await create_account(client, "kid", kind="managed")
    await problem(
        await client.patch("/v1/me", json={"sync_enabled": True}, headers=kid),
        403,
        "managed_account",
    )
    me = await (await client.get("/v1/me", headers=kid)).json()
    assert me["sync_enabled"] is False
    # Everything else it may do.
    assert (await client.patch("/v1/me", json={"visibility": "private"}, headers=kid)).status == 200
    assert (await client.patch("/v1/me", json={"sync_enabled": False}, headers=kid)).status == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"visibility": "everyone"}, "$.visibility"),
        ({"sync_enabled": "yes"}, "$.sync_enabled"),
        ({"sync_enabled": None}, "$.sync_enabled"),
        ({"name": "New"}, "$"),
    ],
)
async def test_invalid_settings_are_422(
    client: TestClient[Any, Any], body: dict[str, Any], field: str
) -> None:
    ann = await create_account(client, "ann")
    detail = await problem(
        await client.patch("/v1/me", json=body, headers=ann), 422, "invalid_request"
    )
    assert detail["errors"][0]["field"] == field


async def test_concurrent_settings_changes_all_land(client: TestClient[Any, Any]) -> None:
    import asyncio

    ann = await create_account(client, "ann")
    changes = [{"visibility": v} for v in ("public", "private", "friends", "public")] + [
        {"sync_enabled": s} for s in (True, False, True)
    ]
    responses = await asyncio.gather(
        *(client.patch("/v1/me", json=c, headers=ann) for c in changes)
    )
    assert all(r.status == 200 for r in responses)
    me = await (await client.get("/v1/me", headers=ann)).json()
    events = (await (await client.get("/v1/admin/events", headers=OPERATOR)).json())["items"]
    last_sync = [e["data"]["enabled"] for e in events if e["type"] == "sync_changed"][-1]
    last_visibility = [
        e["data"]["visibility"] for e in events if e["type"] == "visibility_changed"
    ][-1]
    assert (me["sync_enabled"], me["visibility"]) == (last_sync, last_visibility)
