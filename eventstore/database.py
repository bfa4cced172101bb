"""Connections to PostgreSQL: the pool every part shares, and the errors worth a retry."""

from __future__ import annotations

from typing import Any, TypeAlias

import asyncpg
import msgspec
from asyncpg.pool import PoolConnectionProxy

# A connection of our own or one borrowed from a pool: every query helper takes either.
Connection: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any]"

# Errors after which the same statement may succeed on a fresh try: the connection broke, the
# server is starting or stopping, or a transaction lost a deadlock / serialization race.
# Everything else is a bug or bad input and is never retried.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.TooManyConnectionsError,
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
    ConnectionError,
)

# Errors after which a connection is useless: the session that owned it ends, and a new one
# (new connection) may start. asyncpg raises InternalClientError when its protocol state is
# confused, as after the server killed the connection in the middle of an operation.
CONNECTION_BROKEN: tuple[type[BaseException], ...] = (
    *TRANSIENT_ERRORS,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
)

# Server settings for every connection of ours. A transaction left open holds back every
# tailing reader (see eventstore.tailing), so an idle one is cut off after a minute.
SERVER_SETTINGS = {
    "application_name": "watchledger",
    "idle_in_transaction_session_timeout": "60000",
}


def _encode_jsonb(value: bytes | msgspec.Raw) -> bytes:
    return b"\x01" + bytes(value)


def _decode_jsonb(value: bytes) -> msgspec.Raw:
    return msgspec.Raw(value[1:])


async def init_connection(conn: Connection) -> None:
    """Per-connection set-up: jsonb travels as raw JSON bytes, never as Python objects."""
    await conn.set_type_codec(
        "jsonb",
        schema="pg_catalog",
        encoder=_encode_jsonb,
        decoder=_decode_jsonb,
        format="binary",
    )


async def _release(conn: asyncpg.Connection[Any]) -> None:
    """What a connection needs on its way back to the pool. asyncpg's default resets all
    session state with one more round trip on every release; ours never leave any (they do
    not LISTEN — listeners have connections of their own —, SET, or keep advisory locks past
    a call), so only a transaction abandoned mid-way (a cancelled request) is undone."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


async def create_pool(
    dsn: str, *, min_size: int = 2, max_size: int = 20, **kwargs: Any
) -> asyncpg.Pool[Any]:
    """A connection pool with the event store's codecs and settings on every connection."""
    settings = {**SERVER_SETTINGS, **kwargs.pop("server_settings", {})}
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=init_connection,
        reset=_release,
        server_settings=settings,
        **kwargs,
    )
    return pool


async def connect(dsn: str, **kwargs: Any) -> asyncpg.Connection[Any]:
    """One connection outside the pool (for LISTEN, which a pool's reset would undo)."""
    settings = {**SERVER_SETTINGS, **kwargs.pop("server_settings", {})}
    conn: asyncpg.Connection[Any] = await asyncpg.connect(dsn, server_settings=settings, **kwargs)
    await init_connection(conn)
    return conn
