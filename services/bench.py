"""``watchledger bench``: throughput figures, measured in a scratch database.

The scratch database is created on the same server as the configured one and dropped at the
end: the log is append-only, so a benchmark must never write into a real one.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import msgspec

from eventstore import EventStore, LogCursor, NewEvent, migrations
from eventstore import database as db
from eventstore.queries import load_queries

from .api import MIGRATION_PACKAGES

QUERIES = load_queries("services", "sql/bench.sql")


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` instead (keeps host, socket folder and user)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@asynccontextmanager
async def scratch_database(url: str, prefix: str = "watchledger_scratch") -> AsyncIterator[str]:
    """A new, migrated database beside ``url``'s, dropped on exit."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(url)
    try:
        # Identifiers cannot be bind parameters; the name is ours (prefix + hex), never input.
        await admin.execute(f'CREATE DATABASE "{name}"')
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


class Figure(msgspec.Struct, frozen=True):
    name: str
    events: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else float("inf")


def _event(i: int) -> NewEvent:
    body = {"guid": f"plex://movie/{i:024x}", "at": "2026-11-21T10:00:00Z", "watched": True}
    return NewEvent(type="bench_watched", data=msgspec.Raw(msgspec.json.encode(body)))


async def _timed(name: str, events: int, work: Callable[[], Awaitable[Any]]) -> Figure:
    start = time.perf_counter()
    await work()
    return Figure(name, events, time.perf_counter() - start)


async def bench_eventstore(url: str, *, writers: int, events: int, batch: int) -> list[Figure]:
    figures: list[Figure] = []
    async with scratch_database(url) as scratch:
        pool = await db.create_pool(scratch, min_size=writers, max_size=writers + 2)
        try:
            async with EventStore(pool) as store:
                per_writer = max(1, events // writers)

                async def single_writer(w: int) -> None:
                    stream = f"account-single{w}"
                    for i in range(per_writer):
                        await store.append(stream, [_event(i)])

                async def singles() -> None:
                    await asyncio.gather(*(single_writer(w) for w in range(writers)))

                figures.append(
                    await _timed(
                        f"append, 1 event/tx, {writers} writers", per_writer * writers, singles
                    )
                )

                batches = max(1, events // batch)

                async def batched() -> None:
                    queue = list(range(batches))

                    async def batch_writer(w: int) -> None:
                        while queue:
                            b = queue.pop()
                            await store.append(
                                f"account-batch{b}", [_event(i) for i in range(batch)]
                            )

                    await asyncio.gather(*(batch_writer(w) for w in range(min(writers, 4))))

                figures.append(
                    await _timed(
                        f"append, {batch} events/tx, {min(writers, 4)} writers",
                        batches * batch,
                        batched,
                    )
                )

                total = await store.head()

                async def read_all() -> None:
                    count = 0
                    async for _ in store.iter_all(page_size=5000):
                        count += 1
                    assert count == total, (count, total)

                figures.append(await _timed("read whole log (position order)", total, read_all))

                async def tail_all() -> None:
                    cursor, count = LogCursor.START, 0
                    while True:
                        page = await store.read_safe(cursor, 5000)
                        count += len(page.events)
                        if not page.events:
                            break
                        cursor = page.events[-1].cursor
                    assert count == total, (count, total)

                figures.append(await _timed("read whole log (safe tail order)", total, tail_all))

                # The ceiling: the same rows bulk-loaded with COPY into a plain (logged) table
                # without indexes, constraints or triggers. Rows are built before the clock starts.
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
                async with pool.acquire() as conn:
                    await conn.execute(QUERIES["bench_copy_table"])

                    async def raw_copy() -> None:
                        await conn.copy_records_to_table("bench_copy", records=rows)

                    figures.append(
                        await _timed("raw COPY of the same rows (ceiling)", len(rows), raw_copy)
                    )
        finally:
            await pool.close()
    return figures


def print_figures(title: str, figures: list[Figure], ceiling: Figure | None) -> None:
    print(f"\n{title}")
    print(f"{'measurement':45} {'events':>9} {'seconds':>8} {'events/s':>11} {'of COPY':>8}")
    for f in figures:
        ratio = f"{f.rate / ceiling.rate:7.1%}" if ceiling and f is not ceiling else ""
        print(f"{f.name:45} {f.events:9d} {f.seconds:8.2f} {f.rate:11,.0f} {ratio:>8}")


async def run_bench(suite: str, url: str, *, writers: int, events: int, batch: int) -> int:
    if suite == "eventstore":
        figures = await bench_eventstore(url, writers=writers, events=events, batch=batch)
        print_figures("watchledger bench eventstore", figures, figures[-1])
        return 0
    raise ValueError(f"unknown benchmark suite {suite!r}")
