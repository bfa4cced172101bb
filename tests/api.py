"""Helpers for tests that talk to a real running server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp.test_utils import TestClient

from services.http.appkeys import PROGRESS, SAMPLER, STORE

# Operators choose their own (WATCHLEDGER_OPERATOR_TOKEN): any long random text.
OPERATOR_TOKEN = "tests-operator-0f9a2c7b41d86e35a0b9c4d2e7f1a6b3"
OPERATOR = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
MOVIE = "plex://movie/5d776825880197001ec967c6"
MOVIE_2 = "plex://movie/5d776825880197001ec967c7"
SHOW = "plex://show/5d9c086c46115600200aa2fe"
SEASON = "plex://season/602e67d31d3358002c41aa85"
EPISODE = "plex://episode/5d9c1276e9d5a1001f4f4d6d"
EPISODE_2 = "plex://episode/5d9c1276e9d5a1001f4f4d6e"


T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def t(hours: float) -> str:
    """A fixed point in time, ``hours`` after T0, as the API writes it (UTC, Z)."""
    return (T0 + timedelta(hours=hours)).isoformat().replace("+00:00", "Z")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def create_account(
    client: TestClient[Any, Any], account_id: str, kind: str = "full", name: str = "Ann"
) -> dict[str, str]:
    """Create an account; the headers to call as it."""
    response = await client.post(
        "/v1/accounts", json={"id": account_id, "kind": kind, "name": name}, headers=OPERATOR
    )
    assert response.status == 201, await response.text()
    return bearer((await response.json())["token"])


async def post_actions(
    client: TestClient[Any, Any], headers: dict[str, str], *actions: dict[str, Any]
) -> list[dict[str, Any]]:
    response = await client.post("/v1/me/actions", json={"actions": list(actions)}, headers=headers)
    assert response.status == 200, await response.text()
    results: list[dict[str, Any]] = (await response.json())["results"]
    return results


async def settle(client: TestClient[Any, Any]) -> None:
    """Wait until every projection has applied everything committed so far."""
    app = client.app
    assert app is not None
    cursor = await app[STORE].last_cursor()
    applied = await app[PROGRESS].wait_until_applied(cursor, 30)
    assert applied, "projections did not catch up within 30 s"


async def sample_metrics(client: TestClient[Any, Any]) -> None:
    """The metrics sampler's turn now (it runs every few seconds in the background): what the
    database knows (lag, queued changes, whether it answers) reaches /metrics."""
    app = client.app
    assert app is not None
    await app[SAMPLER].sample()
