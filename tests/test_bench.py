"""The benchmark runs end to end (tiny sizes; figures are printed, never asserted on)."""

from __future__ import annotations

import asyncpg
import pytest

from services.bench import run_bench


async def test_bench_eventstore_prints_every_figure_and_leaves_no_database(
    server_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    conn = await asyncpg.connect(server_url)
    try:
        before = {r[0] for r in await conn.fetch("SELECT datname FROM pg_database")}
        assert await run_bench("eventstore", server_url, writers=2, events=40, batch=10) == 0
        after = {r[0] for r in await conn.fetch("SELECT datname FROM pg_database")}
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
    ):
        assert line in out
    assert after == before
