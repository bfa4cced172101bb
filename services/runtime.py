"""Running the service: choosing the database, serving until a signal, stopping cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path

import structlog
from aiohttp import web

from .api import background_tasks, create_app
from .config import Settings
from .embedded import EmbeddedPostgres
from .httpserver import GuardedAppRunner

log = structlog.get_logger(__name__)


@contextlib.contextmanager
def database(settings: Settings) -> Iterator[str]:
    """The database URL to use: ``WATCHLEDGER_DATABASE_URL``, or an embedded PostgreSQL that
    runs for as long as this context is open."""
    if settings.database_url:
        yield settings.database_url
        return
    with EmbeddedPostgres(Path(settings.data_dir)) as url:
        yield url


async def serve(
    settings: Settings, database_url: str, *, started: asyncio.Event | None = None
) -> None:
    """Serve the API until SIGINT or SIGTERM, then let in-flight requests finish."""
    await _check_listenable(settings.host, settings.port)
    runner = GuardedAppRunner(
        create_app(settings, database_url),
        settings,
        handle_signals=False,
        shutdown_timeout=settings.shutdown_timeout,
        access_log=None,
    )
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        site = web.TCPSite(runner, settings.host, settings.port)
        await site.start()
        log.info("serving", host=settings.host, port=settings.port)
        if started is not None:
            started.set()
        stopping = asyncio.create_task(stop.wait(), name="wait-for-signal")
        watched = {stopping, *background_tasks(runner.app)}
        done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
        if stopping not in done:
            stopping.cancel()
            failed = done.pop()
            # A background task never ends by itself: stop the whole rather than limp on.
            error = None if failed.cancelled() else failed.exception()
            log.error("background_task_died", task=failed.get_name(), exc_info=error)
            raise RuntimeError(f"background task {failed.get_name()} died")
        log.info("stopping", shutdown_timeout=settings.shutdown_timeout)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await runner.cleanup()
        log.info("stopped")


async def _check_listenable(host: str, port: int) -> None:
    """Bind the address once before anything else starts: a busy port or an address not on
    this machine fails at once (OSError), before the database is connected and the background
    tasks are started only to be torn down half-way (asyncpg then reports connections cut in
    their handshake). The real listener binds it again right after set-up."""
    probe = await asyncio.get_running_loop().create_server(
        asyncio.Protocol, host, port, reuse_address=True
    )
    probe.close()
    await probe.wait_closed()
