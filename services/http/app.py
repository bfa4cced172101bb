"""The aiohttp application: the endpoints, and (in its cleanup context) the pool, the log,
the projections and the commands, every background task of which the supervisor owns."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from aiohttp import web

from eventstore import EventStore, LogListener, migrations
from eventstore import database as db
from eventstore.wakeups import DEFAULT_CHANNEL
from projections.activity import FeedWakeups
from projections.catalog import all_projections
from projections.queues import QueueWakeups
from projections.runner import PROGRESS_CHANNEL, ProjectionProgress, ProjectionRunner
from services import MIGRATION_PACKAGES
from services.commands.accounts import AccountService
from services.commands.deletions import Deletions
from services.commands.friends import FriendService
from services.commands.progress import ACTION_PROJECTIONS, PROJECTION_NAMES, settle_with
from services.commands.reads import Reads
from services.commands.servers import ServerService
from services.runtime.config import Settings
from services.runtime.supervisor import Supervisor
from services.runtime.version import VERSION

from .appkeys import (
    ACCOUNTS,
    AUTHENTICATOR,
    DATABASE_HEALTH,
    DELETIONS,
    FRIENDS,
    METRICS,
    OPENAPI,
    POOL,
    PROGRESS,
    READS,
    RUNNERS,
    SAMPLER,
    SERVERS,
    SETTINGS,
    STORE,
    STREAM_SLOTS,
    SUPERVISOR,
)
from .auth import Authenticator, operator_token_hash
from .endpoints import bind
from .errors import DatabaseHealth, problem_middleware
from .limits import StreamSlots
from .metrics import Metrics
from .openapi import build_openapi
from .routes import ENDPOINTS
from .routes.docs import add_assets as add_docs_assets
from .sampler import MetricsSampler


def _database(url: str, *, migrate: bool) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS]
        health = app[DATABASE_HEALTH] = DatabaseHealth()
        # No wait on the database is unbounded: connecting, waiting for a free connection, each
        # statement. Past the bound a request answers 503 (services.http.errors), and the pool
        # tells `health` whenever the database answers (the end of an outage). No floor of idle
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
            # Leaving it stops every background task, before the pool closes.
            async with Supervisor() as supervisor:
                listener = LogListener(
                    lambda: db.connect(url), channels=(DEFAULT_CHANNEL, PROGRESS_CHANNEL)
                )
                store = await supervisor.enter(
                    EventStore(pool, listener=listener, group_commit=True)
                )
                progress = listener.wakeups_for(PROGRESS_CHANNEL)
                tracker = ProjectionProgress(pool, progress, PROJECTION_NAMES)
                accounts = AccountService(
                    store,
                    pool,
                    settle_with(tracker),
                    settle_actions=settle_with(tracker, names=ACTION_PROJECTIONS),
                )
                queue_wakeups = QueueWakeups(pool, progress)
                servers = ServerService(store, pool, accounts, queue_wakeups)
                feed_wakeups = FeedWakeups(pool, progress)
                friends = FriendService(pool, accounts, feed_wakeups)
                authenticator = Authenticator(
                    lambda: operator_token_hash(pool, settings),
                    accounts.load,
                    servers.token_hash,
                )
                if migrate:  # a new operator token is made, and shown, at first start
                    await authenticator.operator_hash()
                runners = [
                    ProjectionRunner(p, store, lambda: db.connect(url)) for p in all_projections()
                ]
                app[METRICS].watch_runners(runners)
                app[METRICS].watch_pool(pool)
                reads = Reads(pool, store)
                sampler = MetricsSampler(
                    app[METRICS], reads, pool, health, interval=settings.metrics_interval
                )
                for runner in runners:
                    supervisor.start(f"projection:{runner.name}", runner.run)
                supervisor.start("queue-wakeups", queue_wakeups.run)
                supervisor.start("feed-wakeups", feed_wakeups.run)
                supervisor.start("projection-progress", tracker.run)
                supervisor.start("metrics-sampler", sampler.run)

                app[POOL] = pool
                app[STORE] = store
                app[PROGRESS] = tracker
                app[ACCOUNTS] = accounts
                app[SERVERS] = servers
                app[FRIENDS] = friends
                app[READS] = reads
                app[SAMPLER] = sampler
                app[DELETIONS] = Deletions(store, accounts, settle_with(tracker))
                app[AUTHENTICATOR] = authenticator
                app[RUNNERS] = runners
                app[SUPERVISOR] = supervisor
                yield
        finally:
            await pool.close()

    return ctx


async def _release_long_polls(app: web.Application) -> None:
    # Graceful shutdown waits for in-flight requests: long-polls must not hold it for a minute.
    if SERVERS in app:
        app[SERVERS].wakeups.close()
    if FRIENDS in app:
        app[FRIENDS].feeds.close()


async def _server_header(request: web.Request, response: web.StreamResponse) -> None:
    """Name the software, not its versions (aiohttp's default names Python's and its own,
    which tells an attacker what to try)."""
    response.headers["Server"] = "watchledger"


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
    app[OPENAPI] = build_openapi(ENDPOINTS, version=VERSION)
    app.cleanup_ctx.append(_database(database_url, migrate=migrate))
    app.on_shutdown.append(_release_long_polls)
    app.on_response_prepare.append(_server_header)
    for endpoint in ENDPOINTS:
        app.router.add_route(
            endpoint.method, endpoint.path, bind(endpoint, lambda: app[AUTHENTICATOR])
        )
    add_docs_assets(app)
    return app
