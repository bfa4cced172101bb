"""Operations: liveness, readiness, metrics, the OpenAPI document."""

from __future__ import annotations

import asyncio

import asyncpg
import structlog
from aiohttp import web
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from eventstore import database as db
from eventstore import migrations
from services import MIGRATION_PACKAGES
from services.http import wire
from services.http.appkeys import (
    DATABASE_HEALTH,
    FRIENDS,
    METRICS,
    OPENAPI,
    POOL,
    READS,
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
    summary="Prometheus metrics (text format).",
    operation_id="metrics",
    tag="operations",
    responses={200: (None, "Prometheus text exposition format.")},
    raw_response=CONTENT_TYPE_LATEST,
)
async def metrics(ctx: Context[None, None]) -> web.StreamResponse:
    app = ctx.request.app
    registry = app[METRICS]
    health = app[DATABASE_HEALTH]
    registry.long_polls.set(app[SERVERS].wakeups.waiting)
    registry.feed_streams.set(app[FRIENDS].feeds.streams)
    # Lag and head are measured now if the database answers soon; if not, the gauges keep the
    # last values measured (a scrape must answer during an outage, or every series is lost).
    try:
        async with asyncio.timeout(2.0):
            status = await app[READS].projections()
    except TimeoutError:
        pass  # slow, or gone: a request that meets it says which
    except Exception as exc:
        if not db.unavailable(exc):
            raise
        health.failed(exc)
    else:
        for item in status:
            registry.lag.labels(item.name).set(item.lag)
            registry.head.set(item.head)
    registry.database_up.set(1 if health.up else 0)
    return web.Response(
        body=generate_latest(registry.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


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
