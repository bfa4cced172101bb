"""``watchledger bench``: throughput figures, measured in a scratch database.

The scratch database is created on the same server as the configured one and dropped at the
end: the log is append-only, so a benchmark must never write into a real one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from itertools import pairwise
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import msgspec

from eventstore import EventStore, LogCursor, NewEvent, migrations
from eventstore import database as db
from eventstore.queries import load_queries
from services import MIGRATION_PACKAGES

QUERIES = load_queries("services", "sql/bench.sql")


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` instead (keeps host, socket folder and user)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@asynccontextmanager
async def scratch_database(
    url: str, prefix: str = "watchledger_scratch", *, template: str | None = None
) -> AsyncIterator[str]:
    """A new, migrated database beside ``url``'s, dropped on exit; a copy of database
    ``template`` (see :func:`base_log`) if given."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(url)
    try:
        # Identifiers cannot be bind parameters; the names are ours (prefix + hex), never input.
        if template is None:
            await admin.execute(f'CREATE DATABASE "{name}"')
        else:
            # A file copy: a copy of a large log written block by block to the WAL takes long.
            await admin.execute(
                f'CREATE DATABASE "{name}" TEMPLATE "{template}" STRATEGY FILE_COPY'
            )
        scratch = with_database(url, name)
        conn = await db.connect(scratch)
        try:
            await migrations.migrate(conn, MIGRATION_PACKAGES)
        finally:
            await conn.close()
        yield scratch
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@asynccontextmanager
async def base_log(url: str, events: int) -> AsyncIterator[str | None]:
    """A database holding a log of about ``events`` events, its projections caught up
    (:func:`~services.ops.bench_replay.fill_log`), made once and dropped on exit: each suite
    run on it gets a copy (``template`` of :func:`scratch_database`). None for no events."""
    if not events:
        yield None
        return
    from .bench_replay import fill_log

    async with scratch_database(url, "watchledger_scratch_base") as base:
        conn = await db.connect(base)
        try:
            await fill_log(conn, base, events)
        finally:
            await conn.close()
        # A template must have no other session; the base is ours alone.
        yield urlsplit(base).path.lstrip("/")


class Figure(msgspec.Struct, frozen=True):
    name: str
    events: int
    seconds: float
    ceiling: bool = False
    # The rates of each turn, when the figure is the median of several (in the order run).
    turns: tuple[float, ...] = ()

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else float("inf")


def _event(i: int) -> NewEvent:
    body = {"guid": f"plex://movie/{i:024x}", "at": "2026-11-21T10:00:00Z", "watched": True}
    return NewEvent(type="bench_watched", data=msgspec.Raw(msgspec.json.encode(body)))


async def _timed(
    name: str, events: int, work: Callable[[], Awaitable[Any]], *, ceiling: bool = False
) -> Figure:
    start = time.perf_counter()
    await work()
    return Figure(name, events, time.perf_counter() - start, ceiling)


async def bench_eventstore(url: str, *, writers: int, events: int, batch: int) -> list[Figure]:
    """Append and read figures for the event store, each beside the raw ceiling it compares to."""
    figures: list[Figure] = []
    per_writer = max(1, events // writers)
    batches = max(1, events // batch)
    batch_writers = min(writers, 4)
    async with scratch_database(url) as scratch:
        pool = await db.create_pool(scratch, min_size=writers, max_size=writers + 2)
        try:
            async with EventStore(pool) as store:
                await pool.execute(QUERIES["bench_tables"])

                async def singles() -> None:
                    async def writer(w: int) -> None:
                        for i in range(per_writer):
                            await store.append(f"account-single{w}", [_event(i)])

                    await asyncio.gather(*(writer(w) for w in range(writers)))

                async def raw_inserts() -> None:
                    async def writer(w: int) -> None:
                        for i in range(per_writer):
                            await pool.execute(
                                QUERIES["bench_insert"],
                                f"r{w}",
                                f"account-r{w}",
                                i + 1,
                                uuid.uuid4(),
                                "bench_watched",
                                1,
                                bytes(_event(i).data),
                            )

                    await asyncio.gather(*(writer(w) for w in range(writers)))

                async def batched() -> None:
                    todo = list(range(batches))

                    async def writer() -> None:
                        while todo:
                            b = todo.pop()
                            await store.append(f"account-b{b}", [_event(i) for i in range(batch)])

                    await asyncio.gather(*(writer() for _ in range(batch_writers)))

                # Rows for COPY are built before the clock starts.
                rows = [
                    (
                        f"c{b}",
                        f"account-c{b}",
                        i + 1,
                        uuid.uuid4(),
                        "bench_watched",
                        1,
                        bytes(_event(i).data),
                    )
                    for b in range(batches)
                    for i in range(batch)
                ]

                async def raw_copy() -> None:
                    await pool.copy_records_to_table("bench_copy", records=rows)

                n_single, n_batch = per_writer * writers, batches * batch
                figures += [
                    await _timed(f"append, 1 event/tx, {writers} writers", n_single, singles),
                    await _timed(
                        f"  ceiling: plain INSERT, 1 row/tx, {writers} writers",
                        n_single,
                        raw_inserts,
                        ceiling=True,
                    ),
                    await _timed(
                        f"append, {batch} events/tx, {batch_writers} writers", n_batch, batched
                    ),
                    await _timed(
                        "  ceiling: COPY of the same rows", len(rows), raw_copy, ceiling=True
                    ),
                ]
                total = await store.head()

                async def read_all() -> None:
                    count = sum([1 async for _ in store.iter_all(page_size=5000)])
                    assert count == total, (count, total)

                async def tail_all() -> None:
                    cursor, count = LogCursor.START, 0
                    while page := (await store.read_safe(cursor, 5000)).events:
                        count += len(page)
                        cursor = page[-1].cursor
                    assert count == total, (count, total)

                figures += [
                    await _timed("read the whole log, position order", total, read_all),
                    await _timed("read the whole log, safe tailing order", total, tail_all),
                ]
        finally:
            await pool.close()
    return figures


class Latency(msgspec.Struct, frozen=True):
    name: str
    samples: list[float]

    def quantile(self, q: float) -> float:
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


_SERVER_PIDS: dict[str, int] = {}


def server_pid(base: str) -> int:
    """The process id of the server :func:`running_server` runs at ``base``."""
    return _SERVER_PIDS[base]


@asynccontextmanager
async def running_server(
    database_url: str, operator_token: str, *, env: dict[str, str] | None = None
) -> AsyncIterator[str]:
    """``watchledger serve`` in a child process (its own core, as in production), with extra
    settings ``env``; its URL (its process: :func:`server_pid`)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ,
        "WATCHLEDGER_DATABASE_URL": database_url,
        "WATCHLEDGER_OPERATOR_TOKEN": operator_token,
        "WATCHLEDGER_LOG_LEVEL": "warning",
        "WATCHLEDGER_PORT": str(port),
        **(env or {}),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.ops.cli", "serve", env=env, stdin=asyncio.subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    _SERVER_PIDS[base] = proc.pid
    try:
        async with aiohttp.ClientSession() as http, asyncio.timeout(60):
            while True:
                if proc.returncode is not None:
                    raise RuntimeError(f"watchledger serve exited with {proc.returncode}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"{base}/readyz") as ready:
                        if ready.status == 200:
                            break
                await asyncio.sleep(0.1)
        yield base
    finally:
        proc.send_signal(signal.SIGTERM)
        await proc.wait()


async def projections_caught_up(http: aiohttp.ClientSession, admin: dict[str, str]) -> float:
    """Wait until every projection has applied the whole log (``GET /v1/admin/projections``,
    read every 10 ms); the seconds it took."""
    started = time.perf_counter()
    while True:
        async with http.get("/v1/admin/projections", headers=admin) as status:
            status.raise_for_status()
            if all(p["lag"] == 0 for p in (await status.json())["items"]):
                return time.perf_counter() - started
        await asyncio.sleep(0.01)


async def bench_api(
    url: str,
    *,
    clients: int,
    requests: int,
    batch: int,
    batches: int,
    samples: int,
    template: str | None = None,
) -> tuple[list[Figure], list[Latency]]:
    """HTTP figures: actions/s one per request and ``batch`` per request; read-your-writes lag."""
    operator = f"wlo.{secrets.token_urlsafe(32)}"
    async with (
        scratch_database(url, template=template) as scratch,
        running_server(scratch, operator) as base,
    ):
        connector = aiohttp.TCPConnector(limit=clients)
        async with aiohttp.ClientSession(base, connector=connector) as http:
            tokens = []
            for i in range(clients):
                body = {"id": f"bench{i}", "kind": "full", "name": f"Bench {i}"}
                async with http.post(
                    "/v1/accounts", json=body, headers={"Authorization": f"Bearer {operator}"}
                ) as created:
                    created.raise_for_status()
                    tokens.append({"Authorization": f"Bearer {(await created.json())['token']}"})

            async def post(headers: dict[str, str], actions: list[dict[str, Any]]) -> None:
                async with http.post(
                    "/v1/me/actions", json={"actions": actions}, headers=headers
                ) as response:
                    response.raise_for_status()
                    await response.read()

            def action(n: int, ids: int) -> dict[str, Any]:
                """A title new to the account, named by its Plex GUID alone, or with its IMDb,
                TMDB and TVDB ids too (ids=4: each action links 4 ids, the dearer case)."""
                named: dict[str, Any] = {"type": "watched", "guid": f"plex://movie/{n:024x}"}
                if ids == 4:
                    named["ids"] = [f"imdb://movie/tt{n}", f"tmdb://movie/{n}", f"tvdb://movie/{n}"]
                return named

            def singles(base: int, ids: int) -> Callable[[], Awaitable[None]]:
                async def run() -> None:
                    per_client = requests // clients

                    async def client(c: int) -> None:
                        for i in range(per_client):
                            await post(tokens[c], [action(base + c * 1_000_000 + i, ids)])

                    await asyncio.gather(*(client(c) for c in range(clients)))

                return run

            def batched(base: int, ids: int) -> Callable[[], Awaitable[None]]:
                async def run() -> None:
                    todo = list(range(batches))

                    async def client(c: int) -> None:
                        while todo:
                            b = todo.pop()
                            first = base + b * batch
                            await post(tokens[c], [action(first + i, ids) for i in range(batch)])

                    await asyncio.gather(*(client(c) for c in range(min(clients, 4))))

                return run

            admin = {"Authorization": f"Bearer {operator}"}

            async def caught_up() -> None:
                # A run leaves the projections a backlog, which the next run must not pay for
                # (nor the lag's first sample).
                await projections_caught_up(http, admin)

            # Each shape with one id per action and with four (the same sizes, titles new to
            # the account in both), so identity's cost is read off one run: in turns, from a
            # caught-up service each time, each figure the median of its turns. The two go in
            # turn about (1 then 4, 4 then 1, ...), so a machine slowing down or speeding up
            # through the run weighs on both alike.
            shapes: list[tuple[str, int, Callable[[int, int], Callable[[], Awaitable[None]]]]] = [
                (
                    f"POST /v1/me/actions, 1 action/request, {clients} clients",
                    (requests // clients) * clients,
                    singles,
                ),
                (
                    f"POST /v1/me/actions, {batch} actions/request, {min(clients, 4)} clients",
                    batches * batch,
                    batched,
                ),
            ]
            figures = []
            offset = 0
            for name, events, shape in shapes:
                turns: dict[int, list[Figure]] = {1: [], 4: []}
                for turn in range(IDENTITY_TURNS):
                    for ids in (1, 4) if turn % 2 == 0 else (4, 1):
                        await caught_up()
                        offset += 100_000_000  # titles new to the accounts in every turn
                        turns[ids].append(
                            await _timed(f"{name}{_ids(ids)}", events, shape(offset, ids))
                        )
                figures += [_median(turns[1]), _median(turns[4])]
            await caught_up()

            lags: list[float] = []
            for i in range(samples):
                guid = f"plex://episode/{90_000_000 + i:024x}"
                await post(tokens[0], [{"type": "watched", "guid": guid}])
                answered = time.perf_counter()
                while True:
                    async with http.get(f"/v1/me/state/{guid}", headers=tokens[0]) as state:
                        await state.read()
                        if state.status == 200:
                            break
                lags.append(time.perf_counter() - answered)
    return figures, [Latency("read-your-writes: 200 from POST -> visible in GET state", lags)]


async def _copy_ceiling(scratch: str, count: int) -> Figure:
    """The same number of event rows COPYed into a table shaped like the log's: the ceiling
    of any ingest."""
    rows = [
        (f"c{i % 1000}", f"watch-c{i % 1000}", i // 1000 + 1, uuid.uuid4(), "bench_watched", 1,
         bytes(_event(i).data))
        for i in range(count)
    ]  # fmt: skip
    conn = await db.connect(scratch)
    try:
        await conn.execute(QUERIES["bench_tables"])

        async def copy() -> None:
            await conn.copy_records_to_table("bench_copy", records=rows)

        return await _timed("  ceiling: COPY of as many rows", count, copy, ceiling=True)
    finally:
        await conn.close()


async def bench_servers(
    url: str,
    *,
    servers: int,
    samples: int,
    ingest_requests: int,
    batch: int,
    spread: int = 1000,
    queued: int = 0,
    template: str | None = None,
) -> tuple[list[Figure], list[Latency]]:
    """Server-to-server propagation with ``servers`` long-polling (one account owns them all, so
    every change fans out to every queue), and bulk ingest of ``batch`` events a request: for
    one account, and spread over ``spread`` accounts (a server's backlog for all its users),
    beside a COPY of as many rows. ``queued`` items wait meanwhile in another (offline)
    server's queue."""
    if servers < 2:
        raise ValueError("server-to-server propagation needs at least 2 servers")
    operator = f"wlo.{secrets.token_urlsafe(32)}"
    async with (
        scratch_database(url, template=template) as scratch,
        running_server(scratch, operator) as base,
    ):
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(base, connector=connector) as http:
            admin = {"Authorization": f"Bearer {operator}"}

            async def call(
                method: str, path: str, headers: dict[str, str], body: Any = None
            ) -> Any:
                async with http.request(method, path, json=body, headers=headers) as response:
                    response.raise_for_status()
                    return await response.json() if response.status != 204 else None

            async def account(name: str) -> dict[str, str]:
                created = await call(
                    "POST", "/v1/accounts", admin, {"id": name, "kind": "full", "name": name}
                )
                headers = {"Authorization": f"Bearer {created['token']}"}
                await call("PATCH", "/v1/me", headers, {"sync_enabled": True})
                return headers

            async def server(owner: dict[str, str], sid: str) -> dict[str, str]:
                body = {"id": sid, "name": sid, "version": "1.40.0.1"}
                created = await call("POST", "/v1/servers", owner, body)
                return {"Authorization": f"Bearer {created['token']}"}

            owner = await account("fan")
            tokens = [await server(owner, f"s{i}") for i in range(servers)]
            if queued:
                # Another server's backlog (it is offline): what the dispatcher looks past.
                conn = await db.connect(scratch)
                try:
                    await conn.execute(QUERIES["bench_backlog"], queued)
                finally:
                    await conn.close()
            received: dict[str, float] = {}
            arrived = asyncio.Event()

            async def long_poll(i: int) -> None:
                cursor = None
                while True:
                    params = {"wait": "30", **({"cursor": cursor} if cursor else {})}
                    async with http.get(
                        f"/v1/servers/s{i}/changes", params=params, headers=tokens[i]
                    ) as r:
                        body = await r.json()
                    cursor = body["cursor"]
                    if i == 1:
                        for change in body["changes"]:
                            received.setdefault(change.get("guid", ""), time.perf_counter())
                        arrived.set()

            polls = [asyncio.create_task(long_poll(i)) for i in range(servers)]
            try:
                lags = []
                for n in range(samples):
                    guid = f"plex://movie/{n + 1:024x}"
                    event = {"account": "fan", "type": "watched", "guid": guid}
                    sent = time.perf_counter()
                    await call("POST", "/v1/servers/s0/events", tokens[0], {"events": [event]})
                    while guid not in received:
                        arrived.clear()
                        await arrived.wait()
                    lags.append(received[guid] - sent)
            finally:
                for task in polls:
                    task.cancel()
                await asyncio.gather(*polls, return_exceptions=True)

            # Bulk ingest: another account, one server of its own (fan-out of one).
            bulk_owner = await account("bulk")
            bulk = await server(bulk_owner, "bulk-server")

            async def ingest() -> None:
                for r in range(ingest_requests):
                    events = [
                        {
                            "account": "bulk",
                            "type": "watched",
                            "guid": f"plex://episode/{r * batch + i:024x}",
                        }
                        for i in range(batch)
                    ]
                    await call("POST", "/v1/servers/bulk-server/events", bulk, {"events": events})

            figures = [
                await _timed(
                    f"POST /v1/servers/{{sid}}/events, {batch} events/request",
                    ingest_requests * batch,
                    ingest,
                )
            ]

            # A busy server's backlog after an outage: each batch spans many accounts.
            wide_owner = await account("wide")
            wide = await server(wide_owner, "wide-server")

            async def member(k: int) -> None:
                headers = await account(f"w{k}")
                await call("PUT", f"/v1/servers/wide-server/access/w{k}", wide_owner)
                await call("PUT", "/v1/me/servers/wide-server", headers)

            for start in range(0, spread, 16):
                await asyncio.gather(*(member(k) for k in range(start, min(spread, start + 16))))

            async def ingest_wide() -> None:
                for r in range(ingest_requests):
                    events = [
                        {
                            "account": f"w{(r * batch + i) % spread}",
                            "type": "watched",
                            "guid": f"plex://movie/{r * batch + i:024x}",
                        }
                        for i in range(batch)
                    ]
                    await call("POST", "/v1/servers/wide-server/events", wide, {"events": events})

            figures.append(
                await _timed(
                    f"POST /v1/servers/{{sid}}/events, {batch} events/request, "
                    f"{min(batch, spread)} accounts each",
                    ingest_requests * batch,
                    ingest_wide,
                )
            )
            settled = await projections_caught_up(http, admin)
        figures.append(await _copy_ceiling(scratch, ingest_requests * batch))
    backlog = f", {queued:,} items queued elsewhere" if queued else ""
    latencies = [
        Latency(f"server A -> long-poll on B, {servers} servers polling{backlog}", lags),
        Latency("wide ingest's last 200 -> every projection caught up", [settled]),
    ]
    return figures, latencies


# Turns of each shape with 1 and with 4 ids (the machine's noise is of the order of the cost:
# with 3, the ratio of one invocation to the next moved by 10 points on a busy machine).
IDENTITY_TURNS = 5


def _median(figures: list[Figure]) -> Figure:
    """The run with the median rate, carrying every run's rate."""
    median = sorted(figures, key=lambda figure: figure.rate)[len(figures) // 2]
    return msgspec.structs.replace(median, turns=tuple(figure.rate for figure in figures))


def _ids(ids: int) -> str:
    return "" if ids == 1 else f", {ids} ids each"


def print_identity_cost(figures: list[Figure]) -> None:
    """Each 4-id figure's rate against the 1-id figure just before it (issue 10: within 25 %):
    the ratio of their medians, then each turn's own ratio (the two figures run side by side)."""
    for one, four in pairwise(figures):
        if four.name == one.name + _ids(4):
            line = f"{four.name}: {four.rate / one.rate:.0%} of the 1-id rate"
            if len(one.turns) == len(four.turns) > 1:
                each = ", ".join(f"{f / o:.0%}" for o, f in zip(one.turns, four.turns, strict=True))
                line += f" (turn by turn: {each})"
            print(line)


def print_latencies(latencies: list[Latency]) -> None:
    print(f"{'latency':52} {'samples':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for lat in latencies:
        print(
            f"{lat.name:52} {len(lat.samples):8d} {lat.quantile(0.5) * 1000:8.1f} "
            f"{lat.quantile(0.99) * 1000:8.1f} {max(lat.samples) * 1000:8.1f}"
        )


def print_figures(title: str, figures: list[Figure]) -> None:
    """A table; each measurement followed by a ceiling shows its share of that ceiling."""
    print(f"\n{title}")
    print(f"{'measurement':52} {'events':>8} {'seconds':>8} {'events/s':>10} {'of ceiling':>10}")
    for i, f in enumerate(figures):
        after = figures[i + 1] if i + 1 < len(figures) else None
        share = f"{f.rate / after.rate:10.0%}" if after and after.ceiling and not f.ceiling else ""
        print(f"{f.name:52} {f.events:8d} {f.seconds:8.2f} {f.rate:10,.0f} {share:>10}")


class BenchOptions(msgspec.Struct, frozen=True, kw_only=True):
    writers: int = 16
    events: int = 20_000
    batch: int = 500
    clients: int = 32
    requests: int = 5_000
    request_batch: int = 1_000
    request_batches: int = 20
    samples: int = 200
    servers: int = 100
    ingest_requests: int = 20
    spread_accounts: int = 1_000
    queued: int = 200_000
    log_events: int = 2_000_000
    accounts: int = 5_000
    base_log: int = 0
    friends: int = 200
    activities: int = 1_000_000
    streams: int = 10_000
    idle_seconds: float = 20.0
    items: int = 10_000
    load_accounts: int = 2_000
    connections: int = 32
    seconds: float = 10.0
    mixed: bool = False


# Sizes of --quick: every suite in about a minute, a smoke run (CI runs it; no thresholds).
QUICK = BenchOptions(
    writers=4,
    events=400,
    batch=100,
    clients=4,
    requests=60,
    request_batch=100,
    request_batches=2,
    samples=10,
    servers=5,
    ingest_requests=2,
    spread_accounts=50,
    queued=5_000,
    log_events=5_000,
    accounts=50,
    base_log=2_000,
    friends=10,
    activities=2_000,
    streams=50,
    idle_seconds=1.0,
    items=300,
    load_accounts=50,
    connections=8,
    seconds=2.0,
    mixed=True,
)

SUITES = ("eventstore", "api", "servers", "feeds", "replay", "connectors", "load")
# What `all` runs; with --quick, every suite.
ALL = ("eventstore", "api", "servers")


def _latency_row(lat: Latency) -> dict[str, Any]:
    return {
        "name": lat.name,
        "samples": len(lat.samples),
        "p50_ms": round(lat.quantile(0.5) * 1000, 2),
        "p99_ms": round(lat.quantile(0.99) * 1000, 2),
        "max_ms": round(max(lat.samples) * 1000, 2),
    }


class Report:
    """The figures of a run, by suite: printed as tables as they come, or kept for one JSON
    document at the end (``--json``)."""

    def __init__(self, *, as_json: bool) -> None:
        self.as_json = as_json
        self.sections: list[dict[str, Any]] = []

    def add(self, title: str, figures: list[Figure], latencies: Sequence[Latency] = ()) -> None:
        if not self.as_json:
            print_figures(title, figures)
            if latencies:
                print_latencies(list(latencies))
            return
        rows = []
        for i, f in enumerate(figures):
            after = figures[i + 1] if i + 1 < len(figures) else None
            share = f.rate / after.rate if after and after.ceiling and not f.ceiling else None
            rows.append(
                {"name": f.name.strip(), "events": f.events, "seconds": round(f.seconds, 4),
                 "rate": round(f.rate, 1), "ceiling": f.ceiling, "of_ceiling": share}
            )  # fmt: skip
        suite, _, on = title.removeprefix("watchledger bench ").partition(" (")
        self.sections.append(
            {
                "suite": suite,
                **({"on": on.removesuffix(")")} if on else {}),
                "figures": rows,
                "latencies": [_latency_row(lat) for lat in latencies],
            }
        )

    def attach(self, key: str, value: object) -> None:
        """A further field of the last suite's section (JSON only)."""
        if self.as_json and self.sections:
            self.sections[-1][key] = value

    def text(self, show: Callable[[], None]) -> None:
        """Lines only a person reads (derived figures); left out of the JSON document."""
        if not self.as_json:
            show()

    def finish(self) -> None:
        if self.as_json:
            print(msgspec.json.encode({"sections": self.sections}).decode())


async def run_bench(
    suite: str | Sequence[str],
    url: str,
    options: BenchOptions,
    *,
    quick: bool = False,
    as_json: bool = False,
) -> int:
    """Run a suite or several (``eventstore``, ``api``, ``servers``, ``feeds``, ``replay``,
    ``connectors``, ``load``, or ``all``: the first three; with ``quick``, every suite at smoke
    sizes) and print their figures (as one JSON document with ``as_json``); the suites run on
    a base log share one (``options.base_log``)."""
    if quick:
        options = QUICK
    named = (suite,) if isinstance(suite, str) else tuple(suite)
    chosen = {s for n in named for s in ((SUITES if quick else ALL) if n == "all" else (n,))}
    report = Report(as_json=as_json)
    # Titles of the suites run on a base log say so.
    on_log = f" (on a log of {options.base_log:,} events)" if options.base_log else ""
    on_base = bool(chosen & {"api", "servers", "load"})
    async with base_log(url, options.base_log if on_base else 0) as template:
        await _run_suites(chosen, url, options, report, template, on_log)
    report.finish()
    return 0


async def _run_suites(
    chosen: set[str],
    url: str,
    options: BenchOptions,
    report: Report,
    template: str | None,
    on_log: str,
) -> None:
    if "eventstore" in chosen:
        figures = await bench_eventstore(
            url, writers=options.writers, events=options.events, batch=options.batch
        )
        report.add("watchledger bench eventstore", figures)
    if "api" in chosen:
        figures, latencies = await bench_api(
            url,
            clients=options.clients,
            requests=options.requests,
            batch=options.request_batch,
            batches=options.request_batches,
            samples=options.samples,
            template=template,
        )
        report.add(f"watchledger bench api{on_log}", figures, latencies)
        report.text(lambda: print_identity_cost(figures))
    if "servers" in chosen:
        figures, latencies = await bench_servers(
            url,
            servers=options.servers,
            samples=options.samples,
            ingest_requests=options.ingest_requests,
            batch=options.request_batch,
            spread=options.spread_accounts,
            queued=options.queued,
            template=template,
        )
        report.add(f"watchledger bench servers{on_log}", figures, latencies)
    if "feeds" in chosen:
        from .bench_feeds import bench_feeds, print_streams

        figures, latencies, streams = await bench_feeds(
            url,
            friends=options.friends,
            activities=options.activities,
            samples=options.samples,
            streams=options.streams,
            idle_seconds=options.idle_seconds,
        )
        report.add("watchledger bench feeds", figures, latencies)
        report.text(lambda: print_streams(streams))
    if "load" in chosen:
        from .bench_load import bench_load

        figures, latencies, memory = await bench_load(
            url,
            accounts=options.load_accounts,
            connections=options.connections,
            seconds=options.seconds,
            template=template,
            mixed=options.mixed,
        )
        report.add(f"watchledger bench load{on_log}", figures, latencies)
        report.attach("memory_mib", msgspec.to_builtins(memory))
        report.text(lambda: print(memory.line()))
    if "connectors" in chosen:
        from .bench_connectors import bench_connectors

        figures, latencies = await bench_connectors(
            url, items=options.items, samples=options.samples
        )
        report.add("watchledger bench connectors", figures, latencies)
    if "replay" in chosen:
        from .bench_replay import bench_replay, print_per_minute

        figures = await bench_replay(url, events=options.log_events, accounts=options.accounts)
        report.add("watchledger bench replay", figures)
        report.text(lambda: print_per_minute(figures))
