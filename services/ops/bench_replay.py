"""`watchledger bench replay`: how fast projections are rebuilt from a large log, beside the
rate at which the same log can merely be read (a raw ``COPY … TO STDOUT``, the ceiling), and
how fast the log is exported and imported.

The log has the shape users give it: thousands of accounts, each with an account stream
(created, sync turned on for most, a server registered by some) and a watch stream of watched,
unwatched, rated and unrated actions over a few hundred titles (movies and episodes), some of
them baseline records, many late (their ``at`` older than what came before), in many
transactions. It is written straight into the log table by set-based SQL (writing two million
events through the API would measure the API, which ``bench api`` does).
"""

from __future__ import annotations

import sys
import tempfile
import time
from typing import IO, Any

import asyncpg

from eventstore import EventStore
from eventstore import database as db
from eventstore.exchange import export_events, import_events
from eventstore.queries import load_queries
from projections.catalog import all_projections
from projections.replay import replay

from .bench import Figure, scratch_database
from .exchange import ImportRules

QUERIES = load_queries("services", "sql/bench_replay.sql")
# Rows written per generating statement (and transaction).
_GENERATE_BATCH = 250_000


async def _generate(conn: asyncpg.Connection[Any], events: int, accounts: int) -> int:
    """Write a log of about ``events`` events; how many it holds."""
    await conn.execute(QUERIES["bench_log_accounts"], accounts)
    watch = max(0, events - await conn.fetchval("SELECT count(*) FROM events"))
    for first in range(0, watch, _GENERATE_BATCH):
        last = min(watch, first + _GENERATE_BATCH)
        await conn.execute(QUERIES["bench_log_watch"], first, last, accounts)
    await conn.execute("ANALYZE events")
    total: int = await conn.fetchval("SELECT count(*) FROM events")
    return total


# Actions an account holds in a base log (as in the replay benchmark's default shape).
_ACTIONS_AN_ACCOUNT = 400


async def fill_log(conn: asyncpg.Connection[Any], url: str, events: int) -> None:
    """Give the (new, migrated) database at ``url`` (``conn``) a log of about ``events``
    events over an account per 400 of them, its projections rebuilt from it (the replay, two
    connections), vacuumed and analysed: a scenario then run on it measures a log of that
    size. Says on stderr how long it took (stdout may be a JSON document)."""
    accounts = max(1, events // _ACTIONS_AN_ACCOUNT)
    started = time.perf_counter()
    total = await _generate(conn, events, accounts)
    generated = time.perf_counter() - started
    await replay(conn, all_projections(), connect=lambda: db.connect(url), workers=2)
    await conn.execute("VACUUM ANALYZE")
    print(
        f"base log: {total:,} events over {accounts:,} accounts, generated in {generated:.0f} s,"
        f" replayed into the projections in {time.perf_counter() - started - generated:.0f} s",
        file=sys.stderr,
    )


async def _copy_out(conn: asyncpg.Connection[Any]) -> None:
    async def discard(_: bytes) -> None:
        return None

    await conn.copy_from_query(
        "SELECT * FROM events ORDER BY transaction_id, position", output=discard
    )


async def bench_replay(url: str, *, events: int, accounts: int) -> list[Figure]:
    """Replay figures (each projection, then all together) with the raw read ceiling; export
    and import figures."""
    figures: list[Figure] = []
    # A file, as an operator's export would be: a large log does not fit in memory.
    with tempfile.TemporaryFile() as exported:
        await _bench(url, events, accounts, figures, exported)
    return figures


async def _bench(
    url: str, events: int, accounts: int, figures: list[Figure], exported: IO[bytes]
) -> None:
    async with scratch_database(url) as scratch:
        conn = await db.connect(scratch)
        try:
            started = time.perf_counter()
            total = await _generate(conn, events, accounts)
            print(
                f"generated a log of {total:,} events over {accounts:,} accounts "
                f"in {time.perf_counter() - started:.1f} s"
            )
            for projection in all_projections():
                started = time.perf_counter()
                await replay(conn, [projection])
                figures.append(
                    Figure(f"replay {projection.name}", total, time.perf_counter() - started)
                )
            started = time.perf_counter()
            await replay(conn, all_projections())
            figures.append(
                Figure("replay all projections, 1 connection", total, time.perf_counter() - started)
            )
            started = time.perf_counter()
            await replay(conn, all_projections(), connect=lambda: db.connect(scratch), workers=2)
            figures.append(
                Figure(
                    "replay all projections, 2 connections", total, time.perf_counter() - started
                )
            )
            started = time.perf_counter()
            await _copy_out(conn)
            figures.append(
                Figure(
                    "ceiling: COPY the log TO STDOUT", total, time.perf_counter() - started, True
                )
            )
            started = time.perf_counter()
            await export_events(conn, exported)
            figures.append(Figure("events export (NDJSON)", total, time.perf_counter() - started))
        finally:
            await conn.close()
        async with scratch_database(url) as target:
            pool = await db.create_pool(target, min_size=1, max_size=8)
            try:
                store = EventStore(pool)
                exported.seek(0)
                started = time.perf_counter()
                summary = await import_events(store, exported, rules=ImportRules())
                figures.append(
                    Figure("events import", summary.imported, time.perf_counter() - started)
                )
            finally:
                await pool.close()


def print_per_minute(figures: list[Figure]) -> None:
    """The replay target is stated per minute: say it so, beside the share of the ceiling."""
    ceiling = next((f for f in figures if f.ceiling), None)
    for figure in figures:
        if figure.name.startswith("replay"):
            share = f"{figure.rate / ceiling.rate:6.1%} of the ceiling" if ceiling else ""
            print(f"{figure.name:52} {figure.rate * 60:14,.0f} events/min  {share}")
