"""Versioned schema migrations: ``<package>/sql/migrations/NNNN_name.sql`` files, applied in
order, each in its own transaction, and recorded in ``schema_migrations``.

Each package that owns tables (the event store, the projections) keeps its own sequence; the
application names the packages, in dependency order. A package's ``sql/schema.sql`` is the
full schema its migrations produce (a test keeps the two equal).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from importlib import resources

import asyncpg
import msgspec
import structlog

from .database import Connection
from .errors import MigrationError
from .queries import QUERIES

log = structlog.get_logger(__name__)

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Any constant shared by every watchledger process: only one of them migrates at a time.
_LOCK_KEY = 0x77617463686C6467


class Migration(msgspec.Struct, frozen=True):
    package: str
    version: int
    name: str
    sql: str

    @property
    def label(self) -> str:
        return f"{self.package}/{self.version:04d}_{self.name}"


def discover(package: str) -> list[Migration]:
    """The migrations a package ships, in version order (none if it has no folder)."""
    folder = resources.files(package).joinpath("sql/migrations")
    if not folder.is_dir():
        return []
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _FILE.match(entry.name)
        if match is None:
            continue
        found.append(
            Migration(package, int(match.group(1)), match.group(2), entry.read_text("utf-8"))
        )
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise MigrationError(f"{package}: migrations must be numbered 1, 2, 3...: {versions}")
    return found


def schema_sql(package: str) -> str:
    """The package's full current schema (``sql/schema.sql``), or '' if it has none."""
    path = resources.files(package).joinpath("sql/schema.sql")
    return path.read_text("utf-8") if path.is_file() else ""


async def applied(conn: Connection) -> set[tuple[str, int]]:
    """(package, version) of every migration recorded as applied; empty if none ever was."""
    exists = await conn.fetchval(QUERIES["migrations_exists"])
    if not exists:
        return set()
    rows = await conn.fetch(QUERIES["migrations_applied"])
    return {(row["package"], row["version"]) for row in rows}


async def pending(conn: Connection, packages: Sequence[str]) -> list[Migration]:
    """The migrations of ``packages`` not yet applied, in the order they would be."""
    done = await applied(conn)
    return [m for p in packages for m in discover(p) if (m.package, m.version) not in done]


async def migrate(conn: Connection, packages: Sequence[str]) -> list[Migration]:
    """Apply every pending migration of ``packages``; returns those applied. Safe to run from
    several processes at once: they take turns on an advisory lock."""
    await conn.execute(QUERIES["migrations_lock"], _LOCK_KEY)
    try:
        await conn.execute(QUERIES["migrations_table"])
        todo = await pending(conn, packages)
        for migration in todo:
            try:
                async with conn.transaction():
                    await conn.execute(migration.sql)
                    await conn.execute(
                        QUERIES["migration_record"],
                        migration.package,
                        migration.version,
                        migration.name,
                    )
            except asyncpg.PostgresError as exc:
                raise MigrationError(f"{migration.label} failed: {exc}") from exc
            log.info("migration_applied", migration=migration.label)
        return todo
    finally:
        await conn.execute(QUERIES["migrations_unlock"], _LOCK_KEY)


async def load_schema(conn: Connection, packages: Sequence[str]) -> None:
    """Create a fresh database's schema from the packages' ``schema.sql`` files and record
    every migration as applied (how a test or a new install can skip the history)."""
    async with conn.transaction():
        await conn.execute(QUERIES["migrations_table"])
        for package in packages:
            if sql := schema_sql(package).strip():
                await conn.execute(sql)
            for m in discover(package):
                await conn.execute(
                    QUERIES["migration_record"],
                    m.package,
                    m.version,
                    m.name,
                )
