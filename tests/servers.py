"""Helpers for tests of media servers, through a real running server."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from tests.api import OPERATOR, bearer, create_account


async def register(
    client: TestClient[Any, Any],
    owner: dict[str, str],
    server_id: str,
    version: str = "1.32.5.7349",
) -> dict[str, str]:
    """Register a server as its owner; the headers to call as the server."""
    response = await client.post(
        "/v1/servers",
        json={"id": server_id, "name": server_id.upper(), "version": version},
        headers=owner,
    )
    assert response.status == 201, await response.text()
    return bearer((await response.json())["token"])


async def offer(
    client: TestClient[Any, Any], owner: dict[str, str], server_id: str, account: str
) -> None:
    """The owner shares a server: an offer the account must accept."""
    response = await client.put(f"/v1/servers/{server_id}/access/{account}", headers=owner)
    assert response.status == 204, await response.text()


async def accept(client: TestClient[Any, Any], headers: dict[str, str], server_id: str) -> None:
    """The account accepts the offer of a server."""
    response = await client.put(f"/v1/me/servers/{server_id}", headers=headers)
    assert response.status == 204, await response.text()


async def leave(client: TestClient[Any, Any], headers: dict[str, str], server_id: str) -> None:
    """The account declines the offer of a server, or leaves it."""
    response = await client.delete(f"/v1/me/servers/{server_id}", headers=headers)
    assert response.status == 204, await response.text()


async def grant(
    client: TestClient[Any, Any],
    owner: dict[str, str],
    server_id: str,
    account: str,
    headers: dict[str, str],
) -> None:
    """Share a server with an account, which accepts: it has access (``headers``: the
    account's)."""
    await offer(client, owner, server_id, account)
    await accept(client, headers, server_id)


async def revoke(
    client: TestClient[Any, Any], owner: dict[str, str], server_id: str, account: str
) -> None:
    response = await client.delete(f"/v1/servers/{server_id}/access/{account}", headers=owner)
    assert response.status == 204, await response.text()


async def sync(client: TestClient[Any, Any], headers: dict[str, str], enabled: bool) -> None:
    response = await client.patch("/v1/me", json={"sync_enabled": enabled}, headers=headers)
    assert response.status == 200, await response.text()


async def send(
    client: TestClient[Any, Any], server_id: str, server: dict[str, str], *events: dict[str, Any]
) -> list[dict[str, Any]]:
    response = await client.post(
        f"/v1/servers/{server_id}/events", json={"events": list(events)}, headers=server
    )
    assert response.status == 200, await response.text()
    results: list[dict[str, Any]] = (await response.json())["results"]
    return results


async def pull(
    client: TestClient[Any, Any],
    server_id: str,
    server: dict[str, str],
    cursor: str | None = None,
    **params: str,
) -> tuple[list[dict[str, Any]], str]:
    query = {**params, **({"cursor": cursor} if cursor else {})}
    response = await client.get(f"/v1/servers/{server_id}/changes", params=query, headers=server)
    assert response.status == 200, await response.text()
    body = await response.json()
    return body["changes"], body["cursor"]


async def setup_owner_with_server(
    client: TestClient[Any, Any],
    account: str = "owner",
    server_id: str = "srv-a",
    *,
    sync_on: bool = True,
) -> tuple[dict[str, str], dict[str, str]]:
    """An account that owns one server (sync on by default): (account headers, server headers)."""
    owner = await create_account(client, account)
    server = await register(client, owner, server_id)
    if sync_on:
        await sync(client, owner, True)
    return owner, server


__all__ = [
    "OPERATOR",
    "accept",
    "grant",
    "leave",
    "offer",
    "pull",
    "register",
    "revoke",
    "send",
    "setup_owner_with_server",
    "sync",
]
