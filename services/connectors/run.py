"""``watchledger connect``: one connector process — its webhook listener, its poller, its
changes loop and its sender, under one supervisor — until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import signal
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import aiohttp
import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.runtime.supervisor import Supervisor

from .config import ConnectorConfig
from .connector import Connector
from .emby import EmbyServer
from .jellyfin import JellyfinServer
from .metrics import ConnectorMetrics
from .model import BadWebhook, MediaServer
from .plex import PlexServer
from .state import LocalState
from .upstream import Backoff, Watchledger

log = structlog.get_logger(__name__)

CONNECTOR = web.AppKey("connector", Connector)
# A Plex webhook may carry a poster; nothing else comes near this.
MAX_WEBHOOK_BYTES = 16 * 1024 * 1024
# Seconds the sender gets, on stop, to hand over what is queued (it stays queued otherwise).
FINAL_FLUSH = 10.0


def media_server(config: ConnectorConfig, http: aiohttp.ClientSession) -> MediaServer:
    if config.kind == "plex":
        return PlexServer(http, config.media_url, config.media_token)
    if config.kind == "jellyfin":
        return JellyfinServer(http, config.media_url, config.media_token)
    return EmbyServer(http, config.media_url, config.media_token)


def listener(connector: Connector) -> web.Application:
    """The connector's own HTTP listener: ``POST /webhook``, ``GET /metrics``, ``GET /healthz``."""
    app = web.Application(client_max_size=MAX_WEBHOOK_BYTES)
    app[CONNECTOR] = connector
    app.router.add_post("/webhook", _webhook)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/healthz", _healthz)
    return app


async def _webhook(request: web.Request) -> web.Response:
    connector = request.app[CONNECTOR]
    metrics = connector.metrics
    secret = connector.config.webhook_secret
    if secret is not None and not hmac.compare_digest(
        request.query.get("secret", "").encode(), secret.reveal().encode()
    ):
        metrics.webhooks.labels(outcome="unauthorized").inc()
        return web.json_response({"error": "wrong or missing ?secret="}, status=401)
    body = await request.read()
    try:
        outcome = await connector.on_webhook(body, request.headers.get("Content-Type", ""))
    except BadWebhook as exc:
        metrics.webhooks.labels(outcome="bad").inc()
        log.warning("webhook_rejected", reason=str(exc))
        return web.json_response({"error": str(exc)}, status=400)
    metrics.webhooks.labels(outcome=outcome).inc()
    return web.json_response({"outcome": outcome}, status=202 if outcome == "deferred" else 200)


async def _metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[CONNECTOR].metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@contextlib.asynccontextmanager
async def opened(
    config: ConnectorConfig, *, backoff: Backoff | None = None, sender_window: float = 0.25
) -> AsyncIterator[Connector]:
    """A connector with its HTTP session and state file open (not yet started)."""
    state = LocalState(config.state_file, config.server_id)
    try:
        async with aiohttp.ClientSession() as http:
            server = media_server(config, http)
            upstream = Watchledger(
                http, config.watchledger_url, config.server_id, config.server_token
            )
            yield Connector(
                config,
                server,
                upstream,
                state,
                ConnectorMetrics(config.kind),
                backoff=backoff,
                sender_window=sender_window,
            )
    finally:
        state.close()


async def run(
    connector: Connector,
    *,
    stop: asyncio.Event | None = None,
    started: asyncio.Event | None = None,
) -> None:
    """Run ``connector`` until ``stop`` is set (or SIGINT/SIGTERM, with no ``stop`` given):
    start it, listen, poll, follow changes and send; on stop, stop taking webhooks, then hand
    over what is queued (at most :data:`FINAL_FLUSH` seconds; the rest stays queued)."""
    await connector.start()
    config = connector.config
    runner = web.AppRunner(listener(connector), access_log=None, handle_signals=False)
    await runner.setup()
    loop = asyncio.get_running_loop()
    async with Supervisor() as supervisor:
        signals = stop is None
        if signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, supervisor.stop.set)
        else:
            assert stop is not None
            supervisor.start("connector-stop", _relay(stop, supervisor.stop))
        try:
            site = web.TCPSite(runner, config.listen_host, config.listen_port)
            await site.start()
            connector.listening_port = int(runner.addresses[0][1])
            log.info(
                "connector_listening",
                kind=connector.server.kind,
                host=config.listen_host,
                port=connector.listening_port,
            )
            supervisor.start("connector-sender", connector.sender.run)
            supervisor.start("connector-poller", connector.poll_forever)
            supervisor.start("connector-changes", connector.follow_changes)
            if started is not None:
                started.set()
            await supervisor.watch()
        finally:
            if signals:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(sig)
            await runner.cleanup()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(connector.sender.flush(), FINAL_FLUSH)
    log.info("connector_stopped", pending=connector.state.pending_count())


@contextlib.asynccontextmanager
async def started(connector: Connector) -> AsyncIterator[Connector]:
    """``connector`` running (both sides checked, listening, its tasks going) until the block
    ends, then stopped as SIGTERM stops it: for a program that runs connectors in its own event
    loop (the benchmark, the tests)."""
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run(connector, stop=stop, started=ready))
    waiting = asyncio.create_task(ready.wait())
    done, _ = await asyncio.wait({task, waiting}, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        waiting.cancel()
        task.result()  # it could not start: its error
    try:
        yield connector
    finally:
        stop.set()
        await task


def _relay(source: asyncio.Event, target: asyncio.Event) -> Callable[[], Coroutine[Any, Any, None]]:
    async def relay() -> None:
        await source.wait()
        target.set()
        await asyncio.Event().wait()  # a supervised task does not end by itself

    return relay
