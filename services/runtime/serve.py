"""Serving: the HTTP API until a signal, or until a background task dies; then stopping
cleanly."""

from __future__ import annotations

import asyncio
import signal

import structlog
from aiohttp import web

from services.http.app import create_app
from services.http.appkeys import SUPERVISOR
from services.http.httpserver import GuardedAppRunner

from .config import Settings

log = structlog.get_logger(__name__)


async def serve(
    settings: Settings, database_url: str, *, started: asyncio.Event | None = None
) -> None:
    """Serve the API until SIGINT or SIGTERM, then let in-flight requests finish. Raises
    :class:`~services.runtime.supervisor.BackgroundTaskDied` (after stopping) when a
    background task dies."""
    await _check_listenable(settings.host, settings.port)
    runner = GuardedAppRunner(
        create_app(settings, database_url),
        settings,
        handle_signals=False,
        shutdown_timeout=settings.shutdown_timeout,
        access_log=None,
    )
    await runner.setup()
    # Set up by the app's cleanup context, which stops it too (runner.cleanup() below).
    supervisor = runner.app[SUPERVISOR]
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, supervisor.stop.set)
    try:
        site = web.TCPSite(runner, settings.host, settings.port)
        await site.start()
        log.info(
            "serving",
            host=settings.host,
            port=settings.port,
            event_loop=type(loop).__module__.partition(".")[0],
        )
        if started is not None:
            started.set()
        await supervisor.watch()
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
