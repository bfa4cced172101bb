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
    ceiling: bool = False

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


def print_figures(title: str, figures: list[Figure]) -> None:
    """A table; each measurement followed by a ceiling shows its share of that ceiling."""
    print(f"\n{title}")
    print(f"{'measurement':52} {'events':>8} {'seconds':>8} {'events/s':>10} {'of ceiling':>10}")
    for i, f in enumerate(figures):
        after = figures[i + 1] if i + 1 < len(figures) else None
        share = f"{f.rate / after.rate:10.0%}" if after and after.ceiling and not f.ceiling else ""
        print(f"{f.name:52} {f.events:8d} {f.seconds:8.2f} {f.rate:10,.0f} {share:>10}")


async def run_bench(suite: str, url: str, *, writers: int, events: int, batch: int) -> int:
    if suite == "eventstore":
        figures = await bench_eventstore(url, writers=writers, events=events, batch=batch)
        print_figures("watchledger bench eventstore", figures)
        return 0
    raise ValueError(f"unknown benchmark suite {suite!r}")
