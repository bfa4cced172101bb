"""Migrations: applied once, recorded, equal to schema.sql, and fit for distribution."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest

from eventstore import MigrationError, NewEvent, migrations
from eventstore import database as db
from eventstore.migrations import Migration
from services import MIGRATION_PACKAGES

# Tables that are global bookkeeping, not account data (they stay local / reference tables
# on a distributed PostgreSQL).
GLOBAL_TABLES = {"schema_migrations", "projection_checkpoints", "service_secrets", "servers"}
ALL_MIGRATIONS = [
    "eventstore/0001_event_log",
    "eventstore/0002_idempotency_keys",
    "eventstore/0003_purge_expected_version",
    "eventstore/0004_event_keys",
    "eventstore/0005_append_many",
    "eventstore/0006_append_many_set_based",
    "projections/0001_watch_state_and_history",
    "projections/0002_server_queues",
    "projections/0003_shares_need_consent",
    "projections/0004_dead_letters",
    "projections/0005_state_recorded_at",
    "projections/0006_friends_and_activity",
    "projections/0007_title_ids",
    "projections/0008_action_keys",
    "projections/0009_title_link_by_key",
    "projections/0010_titles_given_by_the_fold",
    "services/0001_service_secrets",
    "services/0002_servers",
    "services/0003_account_snapshots",
]

CATALOG = {
    "columns": """
        SELECT table_name, column_name, data_type, is_nullable, column_default,
               is_generated, generation_expression
        FROM information_schema.columns WHERE table_schema = 'public'
        ORDER BY table_name, column_name""",
    "constraints": """
        SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)
        FROM pg_constraint WHERE connamespace = 'public'::regnamespace
        ORDER BY 1, 2""",
    "indexes": """
        SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'
        ORDER BY 1, 2""",
    "triggers": """
        SELECT tgrelid::regclass::text, tgname, pg_get_triggerdef(oid) FROM pg_trigger
        WHERE NOT tgisinternal ORDER BY 1, 2""",
    "functions": """
        SELECT proname, pg_get_functiondef(oid) FROM pg_proc
        WHERE pronamespace = 'public'::regnamespace ORDER BY 1""",
    "sequences": """
        SELECT sequencename, data_type::text, increment_by FROM pg_sequences
        WHERE schemaname = 'public' ORDER BY 1""",
}


async def describe(url: str) -> dict[str, list[tuple[Any, ...]]]:
    conn = await asyncpg.connect(url)
    try:
        return {name: [tuple(r) for r in await conn.fetch(sql)] for name, sql in CATALOG.items()}
    finally:
        await conn.close()


async def test_migrations_produce_exactly_schema_sql(make_database: Callable[..., Any]) -> None:
    migrated = await make_database(migrated=False)
    from_schema = await make_database(migrated=False)
    conn = await db.connect(migrated)
    try:
        applied = await migrations.migrate(conn, MIGRATION_PACKAGES)
    finally:
        await conn.close()
    assert [m.label for m in applied] == ALL_MIGRATIONS
    conn = await db.connect(from_schema)
    try:
        await migrations.load_schema(conn, MIGRATION_PACKAGES)
        assert await migrations.pending(conn, MIGRATION_PACKAGES) == []
    finally:
        await conn.close()

    assert await describe(migrated) == await describe(from_schema)


async def test_migrate_applies_each_migration_once_even_when_run_concurrently(
    make_database: Callable[..., Any],
) -> None:
    url = await make_database(migrated=False)

    async def run() -> list[Migration]:
        conn = await db.connect(url)
        try:
            return await migrations.migrate(conn, MIGRATION_PACKAGES)
        finally:
            await conn.close()

    results = await asyncio.gather(*(run() for _ in range(4)))

    assert sorted(len(r) for r in results) == [0, 0, 0, len(ALL_MIGRATIONS)]
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT package, version, name FROM schema_migrations")
    finally:
        await conn.close()
    assert sorted(f"{r[0]}/{r[1]:04d}_{r[2]}" for r in rows) == ALL_MIGRATIONS
    assert await run() == []


async def test_a_failing_migration_is_reported_and_not_recorded(
    make_database: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = await make_database(migrated=False)
    broken = Migration("eventstore", 1, "broken", "CREATE TABLE nope (")
    monkeypatch.setattr(
        migrations, "discover", lambda package: [broken] if package == "eventstore" else []
    )
    conn = await db.connect(url)
    try:
        with pytest.raises(MigrationError, match="eventstore/0001_broken"):
            await migrations.migrate(conn, MIGRATION_PACKAGES)
        assert await migrations.applied(conn) == set()
    finally:
        await conn.close()


def test_migration_files_are_numbered_without_gaps() -> None:
    for package in MIGRATION_PACKAGES:
        versions = [m.version for m in migrations.discover(package)]
        assert versions == list(range(1, len(versions) + 1))


async def test_every_table_can_be_distributed_by_account(make_database: Callable[..., Any]) -> None:
    """Citus needs every unique key to include the distribution column. PostgreSQL's hash
    partitioning has the same rule, so every table of schema.sql (but the global ones) is
    created here partitioned by account_id: any key without it fails."""
    url = await make_database(migrated=False)
    sql = "\n".join(migrations.schema_sql(p) for p in MIGRATION_PACKAGES)
    tables = re.findall(r"^CREATE TABLE (\w+) \(", sql, flags=re.MULTILINE)
    assert tables, "schema.sql defines no tables?"
    partitioned = re.sub(
        r"^(CREATE TABLE (\w+) \(.*?^\));",
        lambda m: (
            m.group(1)
            + ("" if m.group(2) in GLOBAL_TABLES else " PARTITION BY HASH (account_id)")
            + ";"
        ),
        sql,
        flags=re.MULTILINE | re.DOTALL,
    )
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(partitioned)
        for table in tables:
            if table in GLOBAL_TABLES:
                continue
            kind = await conn.fetchval(
                "SELECT relkind::text FROM pg_class WHERE relname = $1", table
            )
            assert kind == "p", f"{table} was not created partitioned"
            for i in range(2):
                await conn.execute(
                    f"CREATE TABLE {table}_p{i} PARTITION OF {table} "
                    f"FOR VALUES WITH (MODULUS 2, REMAINDER {i})"
                )
    finally:
        await conn.close()


async def test_shares_recorded_before_consent_lose_their_access_on_upgrade(
    make_database: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database of the release before consent (product rule 3): Bob's share of Ann's server
    gave access at once. After the upgrade it is an offer: the queues forget Bob's access and
    what was queued for him; Ann keeps her own server and her queue."""
    from eventstore import EventStore
    from projections import domain

    url = await make_database(migrated=False)
    discover = migrations.discover
    monkeypatch.setattr(  # the release before: nothing past projections/0002, services/0002
        migrations,
        "discover",
        lambda package: [m for m in discover(package) if package == "eventstore" or m.version < 3],
    )
    pool = await db.create_pool(url, min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn:
            await migrations.migrate(conn, MIGRATION_PACKAGES)
        store = EventStore(pool)
        new = domain.registry.new
        for account in ("ann", "bob"):
            created = domain.AccountCreated(account_id=account, kind="full", name="", token_hash="")
            await store.append(f"account-{account}", [new(created)])
        registered = domain.ServerRegistered(server_id="srv-a", name="", version="", token_hash="")
        await store.append("account-ann", [new(registered)])
        await store.append("account-bob", [new(domain.AccessGranted(server_id="srv-a"))])
        await pool.execute(
            "INSERT INTO sync_access VALUES ('ann', 'srv-a'), ('bob', 'srv-a');"
            "INSERT INTO sync_queue VALUES ('ann', 'srv-a', 'state', 'g', 1),"
            " ('bob', 'srv-a', 'state', 'g', 2), ('bob', 'srv-a', 'baseline_request', '', 3)"
        )

        monkeypatch.setattr(migrations, "discover", discover)
        async with pool.acquire() as conn:
            applied = await migrations.migrate(conn, MIGRATION_PACKAGES)
        assert [m.label for m in applied] == [
            "projections/0003_shares_need_consent",
            "projections/0004_dead_letters",
            "projections/0005_state_recorded_at",
            "projections/0006_friends_and_activity",
            "projections/0007_title_ids",
            "projections/0008_action_keys",
            "projections/0009_title_link_by_key",
            "projections/0010_titles_given_by_the_fold",
            "services/0003_account_snapshots",
        ]
        access = await pool.fetch("SELECT account_id, server_id FROM sync_access")
        queue = await pool.fetch("SELECT account_id, seq FROM sync_queue")
        assert [tuple(r) for r in access] == [("ann", "srv-a")]
        assert [tuple(r) for r in queue] == [("ann", 1)]
    finally:
        await pool.close()


async def test_actions_recorded_before_keys_per_id_get_theirs_on_upgrade(
    make_database: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database of the release with one key an event (eventstore/0003, projections/0007):
    the upgrade keeps each event's key and keys every recorded action under each of its ids
    (product rule 5), so its echo under another id is a duplicate; the previous release's
    append, still called during a rolling upgrade, keys events as the new one does."""
    from datetime import UTC, datetime

    from eventstore import EventStore
    from projections import domain

    url = await make_database(migrated=False)
    discover = migrations.discover
    last = {"eventstore": 3, "projections": 7, "services": 3}
    monkeypatch.setattr(
        migrations,
        "discover",
        lambda package: [m for m in discover(package) if m.version <= last[package]],
    )
    at = datetime(2026, 3, 1, 19, 0, 0, 734512, tzinfo=UTC)
    old_key = uuid.uuid4()
    guid, imdb = "plex://movie/5d776825880197001ec967c6", "imdb://movie/tt0111161"
    data = {"guid": guid, "ids": [imdb], "at": "2026-03-01T19:00:00.734512Z"}
    append_v1 = "SELECT * FROM eventstore_append($1, $2, NULL, $3, $4, $5, $6, $7)"
    pool = await db.create_pool(url, min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn:
            await migrations.migrate(conn, MIGRATION_PACKAGES)
        args = (
            "ann",
            "watch-ann",
            [old_key],
            ["watched"],
            [1],
            [json.dumps(data).encode()],
            [old_key],
        )
        [before] = await pool.fetch(append_v1, *args)
        rated = {**data, "rating": 8, "ids": []}
        await pool.fetch(
            append_v1,
            "ann",
            "watch-ann",
            [uuid.uuid4()],
            ["rated"],
            [1],
            [json.dumps(rated).encode()],
            [None],
        )

        monkeypatch.setattr(migrations, "discover", discover)
        async with pool.acquire() as conn:
            applied = await migrations.migrate(conn, MIGRATION_PACKAGES)
        assert [m.label for m in applied] == [
            "eventstore/0004_event_keys",
            "eventstore/0005_append_many",
            "eventstore/0006_append_many_set_based",
            "projections/0008_action_keys",
            "projections/0009_title_link_by_key",
            "projections/0010_titles_given_by_the_fold",
        ]
        assert not await pool.fetchval(
            "SELECT count(*) FROM information_schema.columns WHERE column_name = 'idempotency_key'"
        )
        keys = await pool.fetch("SELECT key, position FROM event_keys ORDER BY position, key")
        natural = set(domain.natural_keys("ann", (guid, imdb), "watched", at, None))
        assert {row["key"] for row in keys if row["position"] == before["event_position"]} == {
            old_key,
            *natural,
        }
        assert {row["key"] for row in keys if row["position"] != before["event_position"]} == {
            domain.natural_key("ann", guid, "rated", at, 8)
        }

        # An echo under the external id only, to the second: the same action.
        echo = domain.decide_action(
            "ann",
            domain.ReportedAction(type="watched", guid=imdb, at=at.replace(microsecond=0)),
            datetime.now(UTC),
        )
        assert isinstance(echo, NewEvent)
        [result] = await EventStore(pool).append("watch-ann", [echo])
        assert result.duplicate
        assert result.position == before["event_position"]

        # The previous release's append, during a rolling upgrade: keyed, and deduplicated.
        fresh = uuid.uuid4()
        [later] = await pool.fetch(append_v1, *args[:2], [uuid.uuid4()], *args[3:6], [fresh])
        assert later["duplicate"] is False
        [again] = await pool.fetch(append_v1, *args[:2], [uuid.uuid4()], *args[3:6], [fresh])
        assert again["duplicate"] is True
        assert again["event_position"] == later["event_position"]
    finally:
        await pool.close()
