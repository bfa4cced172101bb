"""Test harness: real PostgreSQL only.

The server is an embedded PostgreSQL 18 started for the session, or the one that
``WATCHLEDGER_TEST_DATABASE_URL`` names. Migrations run once into a template database; each
test gets its own database cloned from it (``CREATE DATABASE ... TEMPLATE``), so tests never
see each other's events.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from eventstore import EventStore, LogListener, migrations
from eventstore import database as db
from services import MIGRATION_PACKAGES
from services.ops.bench import with_database
from services.runtime.embedded import EmbeddedPostgres

TEST_DATABASE_ENV = "WATCHLEDGER_TEST_DATABASE_URL"


async def _admin(url: str, *statements: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """URL of a database on the test server from which others can be created."""
    url = os.environ.get(TEST_DATABASE_ENV)
    if url:
        yield url
        return
    folder = Path(tempfile.mkdtemp(prefix="watchledger-test-"))
    embedded = EmbeddedPostgres(folder, throwaway=True)
    try:
        embedded.start()
        yield embedded.admin_url
    finally:
        embedded.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def template_name(server_url: str) -> Iterator[str]:
    """A database with every migration applied, cloned by each test."""
    name = f"wl_template_{secrets.token_hex(4)}"

    async def create() -> None:
        await _admin(server_url, f'CREATE DATABASE "{name}"')
        conn = await db.connect(with_database(server_url, name))
        try:
            await migrations.migrate(conn, MIGRATION_PACKAGES)
        finally:
            await conn.close()

    asyncio.run(create())
    yield name
    asyncio.run(_admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
async def make_database(server_url: str, template_name: str) -> AsyncIterator[Callable[..., Any]]:
    """Factory: ``await make_database(migrated=True)`` returns the URL of a new database."""
    created: list[str] = []

    async def make(*, migrated: bool = True) -> str:
        name = f"wl_test_{secrets.token_hex(6)}"
        template = f' TEMPLATE "{template_name}"' if migrated else ""
        await _admin(server_url, f'CREATE DATABASE "{name}"{template}')
        created.append(name)
        return with_database(server_url, name)

    yield make
    for name in created:
        await _admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def database_url(make_database: Callable[..., Any]) -> str:
    url: str = await make_database()
    return url


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool[Any]]:
    pool = await db.create_pool(database_url, min_size=2, max_size=24)
    yield pool
    await pool.close()


@pytest.fixture
async def store(pool: asyncpg.Pool[Any], database_url: str) -> AsyncIterator[EventStore]:
    """An event store with a live LISTEN connection; polls only every 30 s, so a test that
    sees an event quickly saw it because of a wake-up, not a poll."""
    listener = LogListener(lambda: db.connect(database_url))
    async with EventStore(pool, listener=listener, poll_interval=30.0) as store:
        yield store


@pytest.fixture(autouse=True)
async def fail_on_unhandled_loop_errors() -> AsyncIterator[list[str]]:
    """Any exception the event loop reports (a task that died unobserved, a failing callback)
    fails the test that caused it. A test that provokes one on purpose appends the message
    it expects to the list this fixture yields."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    expected: list[str] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    yield expected
    loop.set_exception_handler(None)
    unexpected = [e for e in errors if not any(x in e.get("message", "") for x in expected)]
    assert not unexpected, f"unhandled event-loop errors: {unexpected}"


@pytest.fixture
async def make_client(
    make_database: Callable[..., Any],
) -> AsyncIterator[Callable[..., Any]]:
    """Factory of clients of a real running server (closed before the databases go)."""
    from aiohttp.test_utils import TestClient

    from services.http.app import create_app
    from services.runtime.config import Settings
    from tests.api import OPERATOR_TOKEN
    from tests.guarded import GuardedTestServer

    clients: list[TestClient[Any, Any]] = []

    async def make(
        url: str | None = None, *, migrate: bool = True, **overrides: Any
    ) -> TestClient[Any, Any]:
        """A client of a new server; ``overrides``: settings other than the defaults."""
        url = url or await make_database()
        settings = Settings(operator_token=OPERATOR_TOKEN, **overrides)
        client: TestClient[Any, Any] = TestClient(
            GuardedTestServer(create_app(settings, url, migrate=migrate), settings)
        )
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


@pytest.fixture
async def client(make_client: Callable[..., Any]) -> Any:
    """A client of a real running server on a fresh database."""
    return await make_client()


@pytest.fixture
def cli_isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """For tests that run ``services.ops.cli.main`` in this process: start without any
    WATCHLEDGER_* setting from the environment, and put back the logging it configures."""
    import logging

    from services.runtime.config import SETTINGS
    from services.runtime.logs import CHATTY_LOGGERS

    for setting in SETTINGS.values():
        monkeypatch.delenv(setting.env, raising=False)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    chatty = {name: logging.getLogger(name).level for name in CHATTY_LOGGERS}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, chatty_level in chatty.items():
        logging.getLogger(name).setLevel(chatty_level)
