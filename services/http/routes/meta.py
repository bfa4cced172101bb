"""Operations: liveness, readiness, metrics, the OpenAPI document."""

from __future__ import annotations

import asyncpg
import structlog
from aiohttp import web
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from eventstore import migrations
from services import MIGRATION_PACKAGES
from services.http import wire
from services.http.appkeys import (
    DATABASE_HEALTH,
    FRIENDS,
    METRICS,
    OPENAPI,
    POOL,
    SERVERS,
)
from services.http.endpoints import Context, Declarations, json_response
from services.runtime.version import VERSION

log = structlog.get_logger(__name__)

route = Declarations()


@route(
    "GET",
    "/healthz",
    summary="Liveness: 200 while the process runs, with the release it runs.",
    operation_id="healthz",
    tag="operations",
    responses={200: (wire.Health, "The process runs.")},
)
async def healthz(ctx: Context[None, None]) -> web.StreamResponse:
    return json_response(wire.Health("ok", VERSION))


@route(
    "GET",
    "/readyz",
    summary="Readiness: the database answers and is migrated.",
    operation_id="readyz",
    tag="operations",
    responses={200: (wire.Status, "Ready."), 503: (None, "Not ready, and why.")},
)
async def readyz(ctx: Context[None, None]) -> web.StreamResponse:
    try:
        async with ctx.request.app[POOL].acquire(timeout=2) as conn:
            todo = await migrations.pending(conn, MIGRATION_PACKAGES)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        log.warning("not_ready", reason="database_unreachable", error=str(exc))
        return json_response(
            {"status": "unavailable", "reason": "database_unreachable"}, status=503
        )
    if todo:
        return json_response(
            {
                "status": "unavailable",
                "reason": "migrations_pending",
                "pending": [m.label for m in todo],
            },
            status=503,
        )
    return json_response(wire.Status("ready"))


@route(
    "GET",
    "/metrics",
    summary="Prometheus metrics (the text format, or OpenMetrics as the Accept header asks; "
    "gzip when accepted). Answered from memory: never waits for the database.",
    operation_id="metrics",
    tag="operations",
    responses={200: (None, "Prometheus text exposition format.")},
    raw_response=CONTENT_TYPE_LATEST,
)
async def metrics(ctx: Context[None, None]) -> web.StreamResponse:
    app = ctx.request.app
    registry = app[METRICS]
    registry.long_polls.set(app[SERVERS].wakeups.waiting)
    registry.feed_streams.set(app[FRIENDS].feeds.streams)
    registry.database_up.set(1 if app[DATABASE_HEALTH].up else 0)
    # prometheus_client's own handler: content negotiation (OpenMetrics), gzip, ?name[]=.
    return await registry.handler(ctx.request)


@route(
    "GET",
    "/v1/openapi.json",
    summary="This document.",
    operation_id="openapi",
    tag="operations",
    responses={200: (None, "The OpenAPI 3.1 document.")},
    raw_response="application/json",
)
async def openapi(ctx: Context[None, None]) -> web.StreamResponse:
    return json_response(ctx.request.app[OPENAPI])
