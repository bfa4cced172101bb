"""The aiohttp application: composition of pool, log, projections and routes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version

import structlog
from aiohttp import web

from eventstore import EventStore, LogCursor, LogListener, migrations
from eventstore import database as db
from eventstore.wakeups import DEFAULT_CHANNEL
from projections.runner import PROGRESS_CHANNEL, ProjectionProgress, ProjectionRunner
from projections.watch import all_projections

from .accounts import AccountService
from .appkeys import (
    ACCOUNTS,
    DATABASE_HEALTH,
    METRICS,
    MIGRATION_PACKAGES,
    OPENAPI,
    POOL,
    PROGRESS,
    PROJECTION_NAMES,
    RUNNERS,
    SERVERS,
    SETTINGS,
    STORE,
    STREAM_SLOTS,
)
from .auth import operator_token_hash
from .config import Settings
from .endpoints import Authenticator, bind
from .errors import DatabaseHealth, problem_middleware
from .limits import StreamSlots
from .metrics import Metrics
from .openapi import build_openapi
from .routes import ENDPOINTS
from .servers import QueueWakeups, ServerService

log = structlog.get_logger(__name__)

__all__ = ["MIGRATION_PACKAGES", "STORE", "create_app"]


def _version() -> str:
    try:
        return package_version("watchledger")
    except PackageNotFoundError:
        return "0.0.0"


def _database(url: str, *, migrate: bool) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS]
        health = app[DATABASE_HEALTH] = DatabaseHealth()
        # No wait on the database is unbounded: connecting, waiting for a free connection, each
        # statement. Past the bound a request answers 503 (services.errors), and the pool tells
        # `health` whenever the database answers (the end of an outage). No floor of idle
        # connections: asyncpg would restore it during an outage with a traceback a try (and
        # the background readers keep connections busy anyway).
        bound = settings.database_timeout
        pool = await db.create_pool(
            url,
            min_size=0,
            max_size=settings.pool_size,
            timeout=bound,
            acquire_timeout=bound,
            command_timeout=bound,
            on_answer=health.answered,
        )
        try:
            if migrate:
                # On a connection of its own: a migration's statements may take much longer.
                conn = await db.connect(url)
                try:
                    await migrations.migrate(conn, MIGRATION_PACKAGES)
                finally:
                    await conn.close()
            listener = LogListener(
                lambda: db.connect(url), channels=(DEFAULT_CHANNEL, PROGRESS_CHANNEL)
            )
            async with EventStore(pool, listener=listener) as store:
                progress = listener.wakeups_for(PROGRESS_CHANNEL)
                app[POOL] = pool
                app[STORE] = store

                tracker = ProjectionProgress(pool, progress, PROJECTION_NAMES)
                app[PROGRESS] = tracker

                async def settle(cursor: LogCursor) -> None:
                    # Read-your-writes: a write answers once every projection (state and queues,
                    # history) has applied it; past the bound it answers anyway, and says so.
                    # While the database is gone it answers at once (it is in the log), and
                    # quietly: the outage is logged once, not once per write.
                    applied = await tracker.wait_until_applied(
                        cursor, SETTLE_WITHIN, unless_lost=True
                    )
                    if not applied and tracker.lost is None:
                        log.warning("projections_behind", position=cursor.position)

                accounts = AccountService(store, pool, settle)
                app[ACCOUNTS] = accounts

                queue_wakeups = QueueWakeups(pool, progress)
                servers = ServerService(store, pool, accounts, queue_wakeups)
                app[SERVERS] = servers
                authenticator = Authenticator(
                    lambda: operator_token_hash(pool, settings),
                    accounts.load,
                    servers.token_hash,
                )
                if migrate:  # a new operator token is made, and shown, at first start
                    await authenticator.operator_hash()
                app[_AUTHENTICATOR] = authenticator
                runners = [
                    ProjectionRunner(p, store, lambda: db.connect(url)) for p in all_projections()
                ]
                app[RUNNERS] = runners
                app[METRICS].watch_runners(runners)
                tasks = [asyncio.create_task(r.run(), name=f"projection:{r.name}") for r in runners]
                tasks.append(asyncio.create_task(queue_wakeups.run(), name="queue-wakeups"))
                tasks.append(asyncio.create_task(tracker.run(), name="projection-progress"))
                app[_TASKS] = tasks
                try:
                    yield
                finally:
                    for task in tasks:
                        task.cancel()
                    for task in tasks:
                        with contextlib.suppress(asyncio.CancelledError):
                            await task
        finally:
            await pool.close()

    return ctx


_AUTHENTICATOR = web.AppKey("authenticator", Authenticator)
# How long a write waits for the projections to apply it before answering anyway.
SETTLE_WITHIN = 5.0
_TASKS: web.AppKey[list[asyncio.Task[None]]] = web.AppKey("tasks", list)


async def _release_long_polls(app: web.Application) -> None:
    # Graceful shutdown waits for in-flight requests: long-polls must not hold it for a minute.
    if SERVERS in app:
        app[SERVERS].wakeups.close()


def background_tasks(app: web.Application) -> list[asyncio.Task[None]]:
    """Every long-running task of the app, for a supervisor to watch: none ends by itself."""
    return [*app[STORE].background_tasks(), *app[_TASKS]]


def create_app(settings: Settings, database_url: str, *, migrate: bool = True) -> web.Application:
    """The whole service as one aiohttp application (database set up in its cleanup context)."""
    metrics = Metrics()
    app = web.Application(
        client_max_size=1024 * 1024,
        middlewares=[metrics.middleware(), problem_middleware],
    )
    app[SETTINGS] = settings
    app[METRICS] = metrics
    app[STREAM_SLOTS] = StreamSlots(settings.max_streams_per_token)
    app[OPENAPI] = build_openapi(ENDPOINTS, version=_version())
    app.cleanup_ctx.append(_database(database_url, migrate=migrate))
    app.on_shutdown.append(_release_long_polls)
    for endpoint in ENDPOINTS:
        app.router.add_route(
            endpoint.method, endpoint.path, bind(endpoint, lambda: app[_AUTHENTICATOR])
        )
    return app
