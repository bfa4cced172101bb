"""The benchmark runs end to end (tiny sizes; figures are printed, never asserted on)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import asyncpg
import pytest

from services.ops.bench import BenchOptions, run_bench

# The benchmarks' own databases: other sessions' tests make and drop theirs on the same server
# meanwhile.
_SCRATCH_DATABASES = (
    "SELECT datname FROM pg_database WHERE datname LIKE 'watchledger\\_scratch\\_%'"
)


async def test_every_benchmark_prints_its_figures_and_leaves_no_database(
    server_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    conn = await asyncpg.connect(server_url)
    try:
        before = {r[0] for r in await conn.fetch(_SCRATCH_DATABASES)}
        tiny = BenchOptions(
            writers=2,
            events=40,
            batch=10,
            clients=2,
            requests=6,
            request_batch=5,
            request_batches=2,
            samples=3,
            servers=3,
            ingest_requests=2,
            spread_accounts=3,
            queued=50,
        )
        assert await run_bench("all", server_url, tiny) == 0
        after = {r[0] for r in await conn.fetch(_SCRATCH_DATABASES)}
    finally:
        await conn.close()

    out = capsys.readouterr().out
    for line in (
        "append, 1 event/tx, 2 writers",
        "ceiling: plain INSERT",
        "append, 10 events/tx, 2 writers",
        "ceiling: COPY",
        "read the whole log, position order",
        "read the whole log, safe tailing order",
        "POST /v1/me/actions, 1 action/request, 2 clients",
        "POST /v1/me/actions, 5 actions/request, 2 clients",
        "POST /v1/me/actions, 1 action/request, 2 clients, 4 ids each: ",
        "POST /v1/me/actions, 5 actions/request, 2 clients, 4 ids each: ",
        "of the 1-id rate (turn by turn: ",
        "read-your-writes",
        "POST /v1/servers/{sid}/events, 5 events/request",
        "POST /v1/servers/{sid}/events, 5 events/request, 3 accounts each",
        "ceiling: COPY of as many rows",
        "server A -> long-poll on B, 3 servers polling, 50 items queued elsewhere",
    ):
        assert line in out
    assert after == before


async def test_the_replay_benchmark_prints_rates_beside_its_ceiling(
    server_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    tiny = BenchOptions(log_events=3_000, accounts=20)

    assert await run_bench("replay", server_url, tiny) == 0

    out = capsys.readouterr().out
    for line in (
        "generated a log of 3,000 events over 20 accounts",
        "replay watch_state",
        "replay watch_history",
        "replay all projections, 1 connection",
        "replay all projections, 2 connections",
        "ceiling: COPY the log TO STDOUT",
        "events export (NDJSON)",
        "events import",
        "events/min",
        "of the ceiling",
    ):
        assert line in out


async def test_the_feeds_benchmark_prints_reads_streams_and_the_fan_out(
    server_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    tiny = BenchOptions(friends=3, activities=600, samples=3, streams=25, idle_seconds=0.1)

    assert await run_bench("feeds", server_url, tiny) == 0

    out = capsys.readouterr().out
    for line in (
        "activity rows written (3 friends + 3 others)",
        "GET /v1/me/feed",
        "GET /v1/accounts/{friend}/activity",
        "idle feed streams held by one `watchledger serve` process: 25",
        "a friend's action reaches its stream among them",
        "worst case, an action of an account all 25 streams' readers are friends with",
    ):
        assert line in out


async def test_the_connectors_benchmark_prints_scan_baseline_and_server_to_server(
    server_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    tiny = BenchOptions(items=60, samples=3)

    assert await run_bench("connectors", server_url, tiny) == 0

    out = capsys.readouterr().out
    for line in (
        "connector first scan, 60 items",
        "Jellyfin listing, no connector (ceiling)",
        "baseline upload, 60 titles, to recorded",
        "POST /v1/servers/{sid}/events, 1000/request (ceiling)",
        "webhook on Plex -> played on Jellyfin (connectors)",
        "server A event -> long-poll on B (service alone)",
    ):
        assert line in out


async def test_the_load_benchmark_drives_wrk_and_measures_its_ceiling_with_pgbench(
    server_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    tiny = BenchOptions(load_accounts=5, connections=4, seconds=1)

    assert await run_bench("load", server_url, tiny) == 0

    out = capsys.readouterr().out
    for line in (
        "POST /v1/me/actions, 1 action/request, 4 connections (wrk), 5 accounts",
        "ceiling: single-row commits, 16 connections (pgbench)",
        "read-your-writes under that load (0 stale reads)",
        "serve RSS under that load:",
    ):
        assert line in out


async def test_the_quick_run_of_every_suite_prints_one_json_document(server_url: str) -> None:
    """`watchledger bench all --quick --json`, as CI runs it: every suite at smoke sizes, no
    thresholds; the figures come as one JSON document on stdout."""
    watchledger = str(Path(sys.executable).with_name("watchledger"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHLEDGER_")}
    env |= {"WATCHLEDGER_DATABASE_URL": server_url, "WATCHLEDGER_LOG_LEVEL": "warning"}
    process = await asyncio.create_subprocess_exec(
        watchledger,
        "bench",
        "all",
        "--quick",
        "--json",
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(300):
        out, err = await process.communicate()
    assert process.returncode == 0, err.decode()[-3000:]
    [document] = [line for line in out.decode().splitlines() if line.startswith('{"sections"')]
    sections = {s["suite"]: s for s in json.loads(document)["sections"]}
    assert set(sections) == {
        "eventstore", "api", "servers", "feeds", "replay", "connectors", "load",
    }  # fmt: skip
    for section in sections.values():
        assert section["figures"] or section["latencies"]
        for figure in section["figures"]:
            assert figure["rate"] > 0
    assert sections["load"]["memory_mib"]["peak"] > 0
    ceilings = [f for f in sections["load"]["figures"] if f["of_ceiling"] is not None]
    assert ceilings  # each figure beside its ceiling, as a ratio
