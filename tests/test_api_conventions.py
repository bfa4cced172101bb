"""The contract's conventions, through a real server: errors, auth, limits, OpenAPI, metrics."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from services.http.routes.docs import ASSETS as DOCS_ASSETS
from tests.api import (
    MOVIE,
    OPERATOR,
    bearer,
    create_account,
    post_actions,
    sample_metrics,
    settle,
)


async def problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status == status, await response.text()
    assert response.content_type == "application/problem+json"
    body: dict[str, Any] = await response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["title"]
    assert body["detail"]
    return body


async def test_missing_malformed_or_unknown_tokens_are_401(client: TestClient[Any, Any]) -> None:
    for headers in (
        {},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": "Bearer wlo.wrong"},
        {"Authorization": "Bearer wla.nobody.secret"},
    ):
        response = await client.get("/v1/me", headers=headers)
        await problem(response, 401, "unauthorized")
        assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_a_known_token_on_another_principals_endpoint_is_403(
    client: TestClient[Any, Any],
) -> None:
    ann = await create_account(client, "ann")
    await problem(
        await client.post(
            "/v1/accounts", json={"id": "x", "kind": "full", "name": "X"}, headers=ann
        ),
        403,
        "forbidden",
    )
    await problem(await client.get("/v1/admin/events", headers=ann), 403, "forbidden")
    await problem(await client.get("/v1/me", headers=OPERATOR), 403, "forbidden")


async def test_an_account_token_with_a_wrong_secret_is_401(client: TestClient[Any, Any]) -> None:
    ann = await create_account(client, "ann")
    token = ann["Authorization"].removeprefix("Bearer ")
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    await problem(await client.get("/v1/me", headers=bearer(forged)), 401, "unauthorized")
    other = token.replace("wla.ann.", "wla.bob.")
    await problem(await client.get("/v1/me", headers=bearer(other)), 401, "unauthorized")


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/v1/accounts"), ("PATCH", "/v1/me"), ("POST", "/v1/me/actions")],
)
async def test_bodies_must_be_json(client: TestClient[Any, Any], method: str, path: str) -> None:
    ann = await create_account(client, "ann")
    headers = {**(OPERATOR if path == "/v1/accounts" else ann), "Content-Type": "text/plain"}
    response = await client.request(method, path, data="{}", headers=headers)
    await problem(response, 415, "unsupported_media_type")
    no_type = await client.request(
        method, path, data=b"{}", headers={**headers, "Content-Type": ""}
    )
    await problem(no_type, 415, "unsupported_media_type")


async def test_bodies_over_one_mebibyte_are_413(client: TestClient[Any, Any]) -> None:
    ann = await create_account(client, "ann")
    big = b'{"actions": [' + b" " * (1024 * 1024) + b"]}"
    response = await client.post(
        "/v1/me/actions", data=io.BytesIO(big), headers={**ann, "Content-Type": "application/json"}
    )
    await problem(response, 413, "request_too_large")


async def test_batches_over_a_thousand_items_are_413(client: TestClient[Any, Any]) -> None:
    ann = await create_account(client, "ann")
    actions = [{"type": "watched", "guid": MOVIE}] * 1001
    response = await client.post("/v1/me/actions", json={"actions": actions}, headers=ann)
    await problem(response, 413, "batch_too_large")
    exactly = await client.post("/v1/me/actions", json={"actions": actions[:1000]}, headers=ann)
    assert exactly.status == 200


async def test_invalid_bodies_are_422_with_field_errors(client: TestClient[Any, Any]) -> None:
    ann = await create_account(client, "ann")
    cases: list[tuple[Any, str]] = [
        ({"actions": [{"type": "watched", "guid": MOVIE, "rating": "ten"}]}, "$.actions[0].rating"),
        ({"actions": [{"type": "seen", "guid": MOVIE}]}, "$.actions[0].type"),
        ({"actions": [{"type": "watched"}]}, "$.actions[0]"),
        ({"actions": [{"type": "watched", "guid": MOVIE, "at": "yesterday"}]}, "$.actions[0].at"),
        (
            {"actions": [{"type": "watched", "guid": MOVIE, "at": "2026-01-01T10:00:00"}]},
            "$.actions[0].at",
        ),
        ({"actions": [{"type": "watched", "guid": MOVIE, "id": "not-a-uuid"}]}, "$.actions[0].id"),
        ({"actions": [{"type": "watched", "guid": MOVIE, "extra": 1}]}, "$.actions[0]"),
        ({"actions": "watched"}, "$.actions"),
        ({}, "$"),
    ]
    for body, field in cases:
        response = await client.post("/v1/me/actions", json=body, headers=ann)
        detail = await problem(response, 422, "invalid_request")
        assert [e["field"] for e in detail["errors"]] == [field], (body, detail)
        assert detail["errors"][0]["message"]
    broken = await client.post(
        "/v1/me/actions", data=b'{"actions": [', headers={**ann, "Content-Type": "application/json"}
    )
    await problem(broken, 422, "invalid_request")


async def test_unknown_routes_and_methods_are_problems_too(client: TestClient[Any, Any]) -> None:
    await problem(await client.get("/v1/nothing-here"), 404, "not_found")
    response = await client.delete("/v1/accounts")
    await problem(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]


async def test_openapi_documents_every_route(client: TestClient[Any, Any]) -> None:
    response = await client.get("/v1/openapi.json")
    assert response.status == 200
    doc = await response.json()
    assert doc["openapi"].startswith("3.1")
    documented = {(path, method.upper()) for path, ops in doc["paths"].items() for method in ops}
    served = set()
    assert client.app is not None
    for route in client.app.router.routes():
        if route.method == "HEAD":
            continue
        path = re.sub(r"\{(\w+):[^}]*\}", r"{\1}", route.resource.canonical)
        served.add((path, route.method))
    # The reference page's scripts and styles are files, not operations.
    assert served - {(path, "GET") for path in DOCS_ASSETS} == documented
    actions = doc["paths"]["/v1/me/actions"]["post"]
    assert set(actions["responses"]) >= {"200", "401", "403", "413", "415", "422"}
    state = doc["paths"]["/v1/me/state"]["get"]
    assert {p["name"] for p in state["parameters"]} == {
        "watched",
        "kind",
        "updated_after",
        "limit",
        "cursor",
    }
    assert "Problem" in doc["components"]["schemas"]
    # Every operation says what it answers when it succeeds.
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            assert any(s.startswith("2") for s in operation["responses"]), (method, path)
    stream = doc["paths"]["/v1/me/feed/stream"]["get"]
    assert [(p["name"], p["in"]) for p in stream["parameters"]] == [("Last-Event-ID", "header")]
    assert set(stream["responses"]["200"]["content"]) == {"text/event-stream"}


def test_the_openapi_document_is_valid() -> None:
    from openapi_spec_validator import validate

    from services.http.openapi import build_openapi
    from services.http.routes import ENDPOINTS

    validate(build_openapi(ENDPOINTS, version="0"))


async def test_health_and_readiness(client: TestClient[Any, Any]) -> None:
    assert (await (await client.get("/healthz")).json())["status"] == "ok"
    assert await (await client.get("/readyz")).json() == {"status": "ready"}


async def test_metrics_count_requests_by_route_and_report_projection_lag(
    make_client: Callable[..., Any],
) -> None:
    client = await make_client()
    ann = await create_account(client, "ann")
    await post_actions(client, ann, {"type": "watched", "guid": MOVIE})
    await client.get("/v1/me", headers={})
    await settle(client)
    await sample_metrics(client)  # the background sampler's turn, now

    response = await client.get("/metrics")
    assert response.status == 200
    assert response.content_type == "text/plain"
    text = await response.text()
    assert (
        'watchledger_http_requests_total{method="POST",route="/v1/me/actions",status="200"} 1.0'
        in text
    )
    assert 'watchledger_http_requests_total{method="GET",route="/v1/me",status="401"} 1.0' in text
    assert (
        'watchledger_http_request_duration_seconds_bucket{le="0.001",method="POST",'
        'route="/v1/me/actions",status="200"}' in text
    )
    assert 'watchledger_projection_lag_events{projection="watch_state"} 0.0' in text
    assert 'watchledger_projection_events_applied_total{projection="watch_history"}' in text
    assert 'watchledger_projection_active{projection="watch_state"} 1.0' in text
    assert "watchledger_log_head_position" in text
    assert 'watchledger_actions_total{outcome="recorded",source="account"} 1.0' in text
    assert "watchledger_long_polls_waiting 0.0" in text
