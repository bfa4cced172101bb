"""Connections to PostgreSQL: the pool every part shares, and the errors worth a retry."""

from __future__ import annotations

import re
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg
import msgspec
from asyncpg.pool import PoolAcquireContext, PoolConnectionProxy

# A connection of our own or one borrowed from a pool: every query helper takes either.
Connection: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any]"

# Errors that say the database cannot be reached, rather than that a statement is wrong: the
# server is down, starting, stopping or full, the network is cut, or the connection broke.
# OSError is a refused or reset connection, a missing Unix socket, and TimeoutError (connect,
# pool acquire, command timeout). A request meeting one of these answers 503, not 500; use
# unavailable() to tell, which also knows which OSErrors and InterfaceErrors count.
UNAVAILABLE: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,  # also the client's "closed in the middle of operation"
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
    OSError,
)

# Errors after which the same statement may succeed on a fresh try: the database could not be
# reached, or a transaction lost a deadlock / serialization race. Everything else is a bug or
# bad input and is never retried.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    *UNAVAILABLE,
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
)

# Errors after which a connection is useless: the session that owned it ends, and a new one
# (new connection) may start. asyncpg raises InternalClientError when its protocol state is
# confused, as after the server killed the connection in the middle of an operation.
CONNECTION_BROKEN: tuple[type[BaseException], ...] = (
    *TRANSIENT_ERRORS,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)

_CLOSED = re.compile(r"\b(connection|pool) is clos(ed|ing)\b")


def unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` means the database cannot be reached (see :data:`UNAVAILABLE`), not that
    a statement is wrong or the code has a bug. An OSError counts only when it came up through
    the driver (the web server raises its own for a client gone); an InterfaceError only when
    it is about a closed connection or pool."""
    if isinstance(exc, asyncpg.InterfaceError):
        return _CLOSED.search(str(exc)) is not None
    if isinstance(exc, OSError):
        return any(
            str(frame.f_globals.get("__name__", "")).startswith("asyncpg.")
            for frame, _ in traceback.walk_tb(exc.__traceback__)
        )
    return isinstance(exc, UNAVAILABLE)


# Seconds to establish a connection (asyncpg's own default is a minute), unless told otherwise.
CONNECT_TIMEOUT = 10.0
# Seconds a connection may take to go back to the pool, where asyncpg waits for a timed-out
# query's cancellation (and our reset) to finish: past it, the connection is dropped instead.
RELEASE_TIMEOUT = 1.0

# Server settings for every connection of ours. A transaction left open holds back every
# tailing reader (see eventstore.tailing), so an idle one is cut off after a minute.
SERVER_SETTINGS = {
    "application_name": "watchledger",
    "idle_in_transaction_session_timeout": "60000",
}
# And for pooled connections, which serve requests: no JIT. Their queries are short and
# index-driven, and JIT compiles whatever a plan's *estimate* says is costly: a feed page whose
# estimate is wildly pessimistic paid 180 ms of compilation to run in 3 ms (EXPLAIN ANALYZE,
# JIT Timing). Set-based replays keep the server's own choice.
POOL_SETTINGS = {**SERVER_SETTINGS, "jit": "off"}


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


if TYPE_CHECKING:
    _Pool = asyncpg.Pool[Any]
else:
    _Pool = asyncpg.Pool


class BoundedPool(_Pool):
    """asyncpg's pool, where no caller waits without bound: an acquire (a free connection, or
    a new one) waits ``acquire_timeout`` seconds at most unless given its own ``timeout``, and
    a release :data:`RELEASE_TIMEOUT`. ``on_answer`` is told every time a connection comes
    back from use alive: the database answered someone."""

    __slots__ = ("_acquire_timeout", "_on_answer")

    _acquire_timeout: float | None
    _on_answer: Callable[[], None] | None

    def acquire(self, *, timeout: float | None = None) -> PoolAcquireContext[Any]:
        return super().acquire(timeout=self._acquire_timeout if timeout is None else timeout)

    async def release(
        self,
        connection: PoolConnectionProxy[Any],
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - asyncpg's signature
    ) -> None:
        try:
            alive = not connection.is_closed()
        except asyncpg.InterfaceError:  # released already, which asyncpg ignores
            alive = False
        if timeout is None and self._acquire_timeout is not None:
            timeout = RELEASE_TIMEOUT
        await super().release(connection, timeout=timeout)
        if alive and self._on_answer is not None:
            self._on_answer()


async def create_pool(
    dsn: str,
    *,
    min_size: int = 2,
    max_size: int = 20,
    acquire_timeout: float | None = None,
    on_answer: Callable[[], None] | None = None,
    **kwargs: Any,
) -> asyncpg.Pool[Any]:
    """A connection pool with the event store's codecs and settings on every connection.

    ``acquire_timeout`` bounds every acquire (and so every ``pool.fetch``...) that does not
    name its own; ``kwargs`` go to :func:`asyncpg.connect` (``timeout``, the connect timeout,
    defaults to :data:`CONNECT_TIMEOUT`; ``command_timeout`` bounds each statement)."""
    settings = {**POOL_SETTINGS, **kwargs.pop("server_settings", {})}
    kwargs.setdefault("timeout", CONNECT_TIMEOUT)
    pool = BoundedPool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        max_queries=50_000,  # asyncpg's defaults, as asyncpg.create_pool passes them
        max_inactive_connection_lifetime=300.0,
        init=init_connection,
        reset=_release,
        loop=None,
        connection_class=asyncpg.Connection,
        record_class=asyncpg.Record,
        server_settings=settings,
        **kwargs,
    )
    pool._acquire_timeout = acquire_timeout
    pool._on_answer = on_answer
    await pool
    return pool


async def connect(dsn: str, **kwargs: Any) -> asyncpg.Connection[Any]:
    """One connection outside the pool (for LISTEN, which a pool's reset would undo)."""
    settings = {**SERVER_SETTINGS, **kwargs.pop("server_settings", {})}
    kwargs.setdefault("timeout", CONNECT_TIMEOUT)
    conn: asyncpg.Connection[Any] = await asyncpg.connect(dsn, server_settings=settings, **kwargs)
    await init_connection(conn)
    return conn
