"""The aiohttp application: composition (pool, event store, listener) and the HTTP routes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import msgspec
import structlog
from aiohttp import web

from eventstore import EventStore, LogListener, migrations
from eventstore import database as db

from .config import Settings

log = structlog.get_logger(__name__)

# Packages owning tables, in the order their migrations apply.
MIGRATION_PACKAGES = ("eventstore", "projections")

SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", asyncpg.Pool)
STORE = web.AppKey("store", EventStore)

_json = msgspec.json.Encoder()


def json_response(body: Any, *, status: int = 200) -> web.Response:
    return web.Response(body=_json.encode(body), status=status, content_type="application/json")


def _database(url: str, *, migrate: bool) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS]
        pool = await db.create_pool(url, min_size=1, max_size=settings.pool_size)
        try:
            if migrate:
                async with pool.acquire() as conn:
                    await migrations.migrate(conn, MIGRATION_PACKAGES)
            listener = LogListener(lambda: db.connect(url))
            async with EventStore(pool, listener=listener) as store:
                app[POOL] = pool
                app[STORE] = store
                yield
        finally:
            await pool.close()

    return ctx


async def healthz(request: web.Request) -> web.Response:
    """200 while the process runs."""
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """200 when the database answers and every migration is applied; else 503 and why."""
    try:
        async with request.app[POOL].acquire(timeout=2) as conn:
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
    return json_response({"status": "ready"})


def create_app(settings: Settings, database_url: str, *, migrate: bool = True) -> web.Application:
    """The whole service as one aiohttp application (database set up in its cleanup context)."""
    app = web.Application(client_max_size=1024 * 1024)
    app[SETTINGS] = settings
    app.cleanup_ctx.append(_database(database_url, migrate=migrate))
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app
