"""``watchledger bench feeds``: feed read latency, and idle feed streams one process holds.

The reads: one account with ``friends`` friends (made through the API, so through the log
and the friendships projection) who hold ``activities`` activities in total, plus as many
again by accounts that are not its friends (the index holds both). The activity rows are
written straight into the activity projection's table, in its exact shape: folding a million
events through the live projection would make the benchmark minutes longer and measures
nothing about reads. Then ``VACUUM ANALYZE``, as autovacuum would. Measured through HTTP, one
request at a time; the ceiling is the same feed queries sent straight to PostgreSQL, and the
floor ``GET /healthz`` over the same connection.

The streams: ``streams`` idle ``GET /v1/me/feed/stream`` connections, opened by this process
on ``streams / 10`` accounts (10 each). The server's memory (RSS) and its CPU time over an
idle ``idle_seconds`` are read from ``/proc`` before and after they are open; then one friend
of one streaming account acts, and the time until that stream has it is measured. Last, the
worst case of fan-out on read: an account every streaming account is friends with acts, and
each of the ``streams`` streams reads its feed for it (the reads batched, see
``services.commands.friends.StreamReads``); the time until every stream has the event (and
its spread across them) is measured.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from datetime import UTC, datetime
from typing import Any

import aiohttp
import msgspec

from eventstore import database as db
from projections.activity import feed_page

from .bench import Figure, Latency, running_server, scratch_database, server_pid

_FILL_ACTIVITY = """
INSERT INTO activity (account_id, position, transaction_id, event_id, type, guid, rating, at)
SELECT a.id, b.base + n, '1'::xid8, gen_random_uuid(),
       CASE WHEN n % 4 = 0 THEN 'rated' ELSE 'watched' END,
       'plex://movie/' || lpad(to_hex(b.base + n), 24, '0'),
       CASE WHEN n % 4 = 0 THEN 1 + n % 10 END,
       timestamptz '2024-11-21' + (n * 86400.0 * 730 / $2) * interval '1 second'
           + (random() * 3600) * interval '1 second'
FROM unnest($1::text[]) WITH ORDINALITY AS a(id, ord)
CROSS JOIN LATERAL (SELECT a.ord * 100000000 AS base) b
CROSS JOIN generate_series(1, $2) AS n
"""


class StreamFigures(msgspec.Struct, frozen=True):
    streams: int
    rss_before_mb: float
    rss_after_mb: float
    cpu_idle_before: float
    cpu_idle_after: float
    idle_seconds: float
    delivery_ms: float
    # An action of an account every streaming account is friends with: until each has it.
    fan_out_p50_ms: float
    fan_out_p99_ms: float
    fan_out_all_ms: float


def proc_stats(pid: int) -> tuple[float, float]:
    """(RSS in MiB, CPU seconds used so far) of a process, from /proc."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    with open(f"/proc/{pid}/status") as status:
        rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return rss / 1024, cpu


async def _idle_cpu(pid: int, seconds: float) -> float:
    """CPU seconds the process uses over ``seconds`` of wall time."""
    _, before = proc_stats(pid)
    await asyncio.sleep(seconds)
    _, after = proc_stats(pid)
    return after - before


async def bench_feeds(
    url: str,
    *,
    friends: int,
    activities: int,
    samples: int,
    streams: int,
    idle_seconds: float,
) -> tuple[list[Figure], list[Latency], StreamFigures]:
    operator = f"wlo.{secrets.token_urlsafe(32)}"
    per_token = 10
    env = {
        "WATCHLEDGER_MAX_CONNECTIONS": str(streams + 1000),
        "WATCHLEDGER_MAX_STREAMS_PER_TOKEN": str(per_token),
        "WATCHLEDGER_POOL_SIZE": "10",
    }
    async with (
        scratch_database(url) as scratch,
        running_server(scratch, operator, env=env) as base,
    ):
        admin = {"Authorization": f"Bearer {operator}"}
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(base, connector=connector) as http:

            async def account(name: str) -> dict[str, str]:
                body = {"id": name, "kind": "full", "name": name}
                async with http.post("/v1/accounts", json=body, headers=admin) as created:
                    created.raise_for_status()
                    return {"Authorization": f"Bearer {(await created.json())['token']}"}

            async def put(path: str, headers: dict[str, str]) -> None:
                async with http.put(path, headers=headers) as response:
                    response.raise_for_status()

            reader = await account("reader")
            names = [f"friend{i:04d}" for i in range(friends)]
            strangers = [f"stranger{i:04d}" for i in range(friends)]
            for name in [*names, *strangers]:
                headers = await account(name)
                if name in names:
                    await put(f"/v1/me/friends/{name}", reader)
                    await put("/v1/me/friends/reader", headers)
            # Settings as the server's pooled connections have them (no JIT).
            conn = await db.connect(scratch, server_settings=db.POOL_SETTINGS)
            try:
                per_account = activities // friends
                started = time.perf_counter()
                await conn.execute(_FILL_ACTIVITY, names, per_account)
                await conn.execute(_FILL_ACTIVITY, strangers, per_account)
                await conn.execute("VACUUM ANALYZE activity, friend_requests, activity_profiles")
                filled = Figure(
                    f"activity rows written ({friends} friends + {friends} others)",
                    2 * per_account * friends,
                    time.perf_counter() - started,
                )

                async def timed_get(path: str, **params: Any) -> tuple[float, Any]:
                    began = time.perf_counter()
                    async with http.get(path, headers=reader, params=params) as response:
                        response.raise_for_status()
                        body = await response.json()
                    return time.perf_counter() - began, body

                first: list[float] = []
                deep: list[float] = []
                activity: list[float] = []
                floor: list[float] = []
                ceiling: list[float] = []
                end_of_time = datetime(9999, 1, 1, tzinfo=UTC)  # the first page's key
                for i in range(samples):
                    took, page = await timed_get("/v1/me/feed")
                    first.append(took)
                    cursor = page["next_cursor"]
                    # Deeper pages, as a reader scrolling back would ask for them.
                    for _ in range(4):
                        if cursor is None:
                            break  # a feed too short for that (tiny sizes)
                        took, page = await timed_get("/v1/me/feed", cursor=cursor)
                        deep.append(took)
                        cursor = page["next_cursor"]
                    took, _ = await timed_get(f"/v1/accounts/{names[i % friends]}/activity")
                    activity.append(took)
                    began = time.perf_counter()
                    async with http.get("/healthz") as health:
                        await health.read()
                    floor.append(time.perf_counter() - began)
                    began = time.perf_counter()
                    await feed_page(conn, "reader", (end_of_time, 0), 101)
                    ceiling.append(time.perf_counter() - began)
                latencies = [
                    Latency("GET /v1/me/feed, first page (100)", first),
                    Latency("GET /v1/me/feed, pages 2-5 (cursor)", deep),
                    Latency("GET /v1/accounts/{friend}/activity", activity),
                    Latency("ceiling: the feed's queries alone (asyncpg)", ceiling),
                    Latency("floor: GET /healthz", floor),
                ]
                stream_figures = await _streams(
                    http, base, account, put, streams, per_token, idle_seconds
                )
            finally:
                await conn.close()
    return [filled], latencies, stream_figures


async def _streams(
    http: aiohttp.ClientSession,
    base: str,
    account: Any,
    put: Any,
    streams: int,
    per_token: int,
    idle_seconds: float,
) -> StreamFigures:
    pid = server_pid(base)
    accounts = (streams + per_token - 1) // per_token
    tokens = [await account(f"streamer{i:05d}") for i in range(accounts)]
    friend_headers = await account("actor")
    # The first streaming account is the actor's friend: it gets the action measured below.
    await put("/v1/me/friends/actor", tokens[0])
    await put("/v1/me/friends/streamer00000", friend_headers)
    # Every streaming account is the star's friend: its action wakes every stream. They ask
    # at once; the star accepts one by one (its changes are one stream's, appended in turn).
    star = await account("star")
    gate = asyncio.Semaphore(32)

    async def ask_star(headers: dict[str, str]) -> None:
        async with gate:
            await put("/v1/me/friends/star", headers)

    await asyncio.gather(*(ask_star(headers) for headers in tokens))
    for i in range(accounts):
        await put(f"/v1/me/friends/streamer{i:05d}", star)

    cpu_before = await _idle_cpu(pid, idle_seconds)
    rss_before, _ = proc_stats(pid)
    opened: list[aiohttp.ClientResponse] = []
    try:
        for i in range(streams):
            response = await http.get("/v1/me/feed/stream", headers=tokens[i // per_token])
            response.raise_for_status()
            opened.append(response)
        await asyncio.sleep(1)  # let the server settle after the burst of connections
        cpu_after = await _idle_cpu(pid, idle_seconds)
        rss_after, _ = proc_stats(pid)

        watching = opened[0]
        began = time.perf_counter()
        async with http.post(
            "/v1/me/actions",
            json={"actions": [{"type": "watched", "guid": "plex://movie/" + "f" * 24}]},
            headers=friend_headers,
        ) as posted:
            posted.raise_for_status()
        async with asyncio.timeout(30):
            await _next_event(watching)
        delivery = time.perf_counter() - began

        # Every stream reads on its own, from now until it has the star's action.
        arrivals = [asyncio.create_task(_next_event(response)) for response in opened]
        began = time.perf_counter()
        async with http.post(
            "/v1/me/actions",
            json={"actions": [{"type": "watched", "guid": "plex://movie/" + "e" * 24}]},
            headers=star,
        ) as posted:
            posted.raise_for_status()
        try:
            async with asyncio.timeout(120):
                fan_out = sorted(arrived - began for arrived in await asyncio.gather(*arrivals))
        finally:
            for arrival in arrivals:
                arrival.cancel()
    finally:
        for response in opened:
            response.close()
    return StreamFigures(
        streams=streams,
        rss_before_mb=rss_before,
        rss_after_mb=rss_after,
        cpu_idle_before=cpu_before,
        cpu_idle_after=cpu_after,
        idle_seconds=idle_seconds,
        delivery_ms=delivery * 1000,
        fan_out_p50_ms=fan_out[len(fan_out) // 2] * 1000,
        fan_out_p99_ms=fan_out[min(len(fan_out) - 1, len(fan_out) * 99 // 100)] * 1000,
        fan_out_all_ms=fan_out[-1] * 1000,
    )


async def _next_event(response: aiohttp.ClientResponse) -> float:
    """Read a stream until its next event's data; when it came (``perf_counter``)."""
    while True:
        line = await response.content.readline()
        if not line:
            raise EOFError("the stream ended")
        if line.startswith(b"data:"):
            return time.perf_counter()


def print_streams(figures: StreamFigures) -> None:
    print(f"\nidle feed streams held by one `watchledger serve` process: {figures.streams}")
    print(
        f"  server RSS: {figures.rss_before_mb:.0f} MiB with none open, "
        f"{figures.rss_after_mb:.0f} MiB with {figures.streams} open "
        f"({(figures.rss_after_mb - figures.rss_before_mb) * 1024 / figures.streams:.1f} KiB each)"
    )
    share = 100 / figures.idle_seconds
    print(
        f"  server CPU while idle ({figures.idle_seconds:g} s): "
        f"{figures.cpu_idle_before * share:.1f}% of a core with none open, "
        f"{figures.cpu_idle_after * share:.1f}% with {figures.streams} open"
    )
    print(
        f"  a friend's action reaches its stream among them: {figures.delivery_ms:.0f} ms "
        "(POST answered, then the event read)"
    )
    print(
        f"  worst case, an action of an account all {figures.streams} streams' readers are "
        f"friends with (every stream reads its feed): every stream has it after "
        f"{figures.fan_out_all_ms:.0f} ms (p50 {figures.fan_out_p50_ms:.0f} ms, "
        f"p99 {figures.fan_out_p99_ms:.0f} ms)"
    )
