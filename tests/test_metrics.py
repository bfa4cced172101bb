"""/metrics as Prometheus reads it (issue "Run it for real", item 10): prometheus_client's own
aiohttp handler (OpenMetrics when asked, gzip when accepted); the process, its interpreter
and garbage collector, the release, the database pool; projection lag in events and in
seconds and the changes queued for servers, sampled in the background so that a scrape never
waits for the database; long-polls timed apart; no ``_created`` series doubling the rest."""

from __future__ import annotations

import gzip
from importlib.metadata import version
from typing import Any

from aiohttp.test_utils import TestClient

from tests.api import MOVIE, create_account, post_actions, sample_metrics, settle
from tests.servers import pull, send, setup_owner_with_server


async def _scrape(client: TestClient[Any, Any]) -> str:
    """The metrics, after a sample of what the database knows."""
    await sample_metrics(client)
    return await (await client.get("/metrics")).text()


async def test_the_process_the_release_and_the_pool_are_in_the_metrics(
    client: TestClient[Any, Any],
) -> None:
    text = await _scrape(client)
    for series in (
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "python_gc_objects_collected_total",
        "python_info",
        f'watchledger_build_info{{version="{version("watchledger")}"}} 1.0',
        'watchledger_db_pool_connections{state="in_use"}',
        'watchledger_db_pool_connections{state="idle"}',
        "watchledger_db_pool_max_connections 20.0",
    ):
        assert series in text, series
    assert "_created" not in text


async def test_lag_in_events_and_seconds_and_the_queue_depth_are_sampled(
    client: TestClient[Any, Any],
) -> None:
    owner, server = await setup_owner_with_server(client)
    await post_actions(client, owner, {"type": "watched", "guid": MOVIE})
    await settle(client)

    text = await _scrape(client)
    assert 'watchledger_projection_lag_seconds{projection="watch_state"} 0.0' in text
    assert 'watchledger_projection_lag_events{projection="watch_state"} 0.0' in text
    queued = [line for line in text.splitlines() if line.startswith("watchledger_sync_queue_items")]
    assert queued
    assert float(queued[0].split()[-1]) >= 1  # the movie, and the baseline request
    _, cursor = await pull(client, "srv-a", server)
    await pull(client, "srv-a", server, cursor)  # acknowledges them all
    assert "watchledger_sync_queue_items 0.0" in await _scrape(client)


async def test_openmetrics_when_asked_and_gzip_when_accepted(client: TestClient[Any, Any]) -> None:
    open_metrics = await client.get(
        "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert open_metrics.content_type == "application/openmetrics-text"
    assert (await open_metrics.text()).rstrip().endswith("# EOF")
    raw = await client.get("/metrics", headers={"Accept-Encoding": "gzip"}, auto_decompress=False)
    assert raw.headers["Content-Encoding"] == "gzip"
    assert b"watchledger_http_requests_total" in gzip.decompress(await raw.read())


async def test_long_polls_are_timed_apart_from_the_other_requests(
    client: TestClient[Any, Any],
) -> None:
    _, server = await setup_owner_with_server(client)
    await send(client, "srv-a", server, {"account": "owner", "type": "watched", "guid": MOVIE})
    _, cursor = await pull(client, "srv-a", server)
    await pull(client, "srv-a", server, cursor, wait="0.2")  # held 0.2 s: nothing new
    text = await (await client.get("/metrics")).text()
    changes = 'route="/v1/servers/{sid}/changes"'
    long_series = [s for s in text.splitlines() if s.startswith("watchledger_http_long_request")]
    assert any(changes in s for s in long_series)
    short = [s for s in text.splitlines() if s.startswith("watchledger_http_request_duration")]
    assert not any(changes in s for s in short)
    assert any('route="/v1/servers/{sid}/events"' in s for s in short)
    account = await create_account(client, "bob")
    assert account  # the account series are untouched by it
