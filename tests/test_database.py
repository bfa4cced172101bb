"""The connection pool's release: cheap, but never hands on an open transaction."""

from __future__ import annotations

from typing import Any

import asyncpg

from eventstore import database as db


async def test_a_transaction_left_open_is_rolled_back_on_release(
    database_url: str, fail_on_unhandled_loop_errors: list[str]
) -> None:
    fail_on_unhandled_loop_errors.append("Resetting connection with an active transaction")
    pool = await db.create_pool(database_url, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            await conn.execute("CREATE TABLE scratch (n int)")
            tx = conn.transaction()
            await tx.start()
            await conn.execute("INSERT INTO scratch VALUES (1)")
            # released without commit or rollback, as by a cancelled request
        async with pool.acquire() as conn:
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SELECT count(*) FROM scratch") == 0
    finally:
        await pool.close()


async def test_every_pooled_connection_reads_jsonb_as_raw_json(pool: asyncpg.Pool[Any]) -> None:
    raw = await pool.fetchval("SELECT '{\"a\": [1, 2]}'::jsonb")
    assert bytes(raw) == b'{"a": [1, 2]}'
    assert await pool.fetchval("SHOW idle_in_transaction_session_timeout") == "1min"
