"""Applying projections: checkpoints, exactly-once batches, one runner per projection.

A projection (:mod:`projections.protocol`) is a pure function from one event to the SQL
operations that fold it into the projection's tables; a deletion's tombstone instead rebuilds
that account's rows from what the log still holds. The runner owns all I/O: it reads the log
after the projection's checkpoint with gap-free tailing, applies a batch of events and moves the
checkpoint *in the same transaction* (a crash anywhere leaves rows and checkpoint agreeing,
so nothing is applied twice or lost), then tells waiters (NOTIFY on the progress channel).

The checkpoint only moves from where this runner left it (compare-and-set): a replay that swaps
rebuilt tables in sets the checkpoint it rebuilt to, and the runner, finding it moved, drops its
batch and catches up from there.

Several processes may run the same projections: a session advisory lock, held on the runner's
own connection, lets one of them apply at a time; the others stand by and take over when its
connection goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NamedTuple

import asyncpg
import structlog
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from eventstore import EventStore, HintFollower, LogCursor, RecordedEvent, StreamName, Wakeups
from eventstore.database import CONNECTION_BROKEN, Connection
from eventstore.queries import load_queries

from .domain import TOMBSTONES
from .protocol import Op, Projection, rebuild_account

log = structlog.get_logger(__name__)

QUERIES = load_queries("projections")
_CONNECTION_ERRORS = CONNECTION_BROKEN
# A runner outlives these: it reconnects and resumes from its checkpoint (the database may be
# restarting, or still being migrated).
_INTERRUPTIONS: tuple[type[BaseException], ...] = (*CONNECTION_BROKEN, asyncpg.PostgresError)
# What makes an event poison: the fold itself fails on it (it cannot be decoded, a bug meets
# it), or the database refuses its values (SQLSTATE classes 22 and 23). Other database errors
# (a table missing mid-migration, resources) are not the event's fault: its batch is retried.
_POISON: tuple[type[BaseException], ...] = (
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
)
# A batch that lost a deadlock or serialization race is simply tried again at once.
_RACES: tuple[type[BaseException], ...] = (
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
)
PROGRESS_CHANNEL = "watchledger_progress"

__all__ = [
    "PROGRESS_CHANNEL",
    "QUERIES",
    "CheckpointMoved",
    "Op",
    "Projection",
    "ProjectionProgress",
    "ProjectionRunner",
    "ProjectionStats",
    "checkpoint",
    "lag",
]


class CheckpointMoved(Exception):
    """Someone else moved the projection's checkpoint (a replay swapped its tables in): the
    batch is rolled back, and the runner resumes from the checkpoint as it now is."""


# Not an event's fault: passed on as they are, never dead-lettered.
_PASS_ON: tuple[type[BaseException], ...] = (*CONNECTION_BROKEN, CheckpointMoved)


class ProjectionStats:
    """What a runner has done, for metrics and logs."""

    def __init__(self) -> None:
        self.applied = 0
        self.batches = 0
        self.errors = 0
        self.dead_letters = 0
        self.active = False
        self.last_batch_seconds = 0.0
        self.cursor = LogCursor.START


async def checkpoint(conn: Connection, name: str) -> LogCursor:
    """Where a projection stands (the start of the log if it never ran)."""
    row = await conn.fetchrow(QUERIES["checkpoint_get"], name)
    return LogCursor.START if row is None else LogCursor(row[0], row[1])


async def lag(conn: Connection, cursor: LogCursor) -> int:
    """How many events of the log come after ``cursor`` (not yet applied)."""
    count: int = await conn.fetchval(
        QUERIES["events_after"], cursor.transaction_id, cursor.position
    )
    return count


class _Run(NamedTuple):
    """Consecutive ops of one query, as one statement: its set-based form (``many``) told the
    run's arguments as arrays, one a parameter; or else the query, once an op (executemany)."""

    query: str
    args: list[Any]
    set_based: bool


def _grouped(ops: Sequence[Op]) -> list[_Run]:
    """Consecutive ops of one query become one run (order kept); a run of more than one op of
    a query with a set-based form is that form's one statement."""
    runs: list[tuple[Op, list[tuple[Any, ...]]]] = []
    for op in ops:
        if runs and runs[-1][0].query == op.query:
            runs[-1][1].append(op.args)
        else:
            runs.append((op, [op.args]))
    return [
        _Run(first.many, [list(column) for column in zip(*args, strict=True)], True)
        if first.many is not None and len(args) > 1
        else _Run(first.query, args, False)
        for first, args in runs
    ]


class ProjectionRunner:
    """Keeps one projection up to date with the log, for as long as :meth:`run` runs."""

    def __init__(
        self,
        projection: Projection,
        store: EventStore,
        connect: Callable[[], Awaitable[asyncpg.Connection[Any]]],
        *,
        batch_size: int = 500,
        poll_interval: float = 1.0,
        error_delay: float = 2.0,
    ) -> None:
        self.projection = projection
        self.name = projection.name
        self.stats = ProjectionStats()
        self._store = store
        self._connect = connect
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._error_delay = error_delay

    async def run(self) -> None:
        """Apply the projection forever: stand by while another process holds its lock, catch
        up and follow the log while this one does. Returns only by cancellation.

        A lost connection or a database error (say, the schema is still being migrated) ends
        the session; a new one starts after an exponential backoff and resumes from the
        checkpoint, which is where the rolled-back work left it."""
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(_INTERRUPTIONS),
            # Capped low: writes wait for the projections (read-your-writes), so a runner that
            # sleeps long after an outage keeps every write waiting that long too.
            wait=wait_exponential(multiplier=self._error_delay / 8, max=self._error_delay),
            before_sleep=self._log_interruption,
        ):
            with attempt:
                await self._session()

    def _log_interruption(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        log.warning(
            "projection_interrupted",
            projection=self.name,
            error=str(error),
            attempt=state.attempt_number,
        )

    async def _session(self) -> None:
        conn = await self._connect()
        try:
            await self._run_on(conn)
        except asyncio.CancelledError:
            # Possibly mid-query (waiting for the lock): no goodbye on this connection.
            conn.terminate()
            raise
        finally:
            self.stats.active = False
            if not conn.is_closed():
                with contextlib.suppress(*_CONNECTION_ERRORS, OSError):
                    await conn.close(timeout=5)

    async def _run_on(self, conn: asyncpg.Connection[Any]) -> None:
        # Stand by, waiting inside PostgreSQL, until no other process runs this projection.
        await conn.execute(QUERIES["runner_lock"], f"projection:{self.name}")
        self.stats.active = True
        await conn.execute(QUERIES["checkpoint_init"], self.name)
        cursor = await checkpoint(conn, self.name)
        self.stats.cursor = cursor
        log.info("projection_started", projection=self.name, position=cursor.position)
        follow = self._store.follow(
            cursor, batch_size=self._batch_size, conn=conn, poll_interval=self._poll_interval
        )
        async for events in follow:
            try:
                cursor = await self._apply_batch(conn, cursor, events)
            except CheckpointMoved:
                cursor = await checkpoint(conn, self.name)
                self.stats.cursor = cursor
                log.info("projection_rewound", projection=self.name, position=cursor.position)
            if cursor != follow.cursor:
                follow.seek(cursor)

    async def _apply_batch(
        self, conn: asyncpg.Connection[Any], cursor: LogCursor, events: list[RecordedEvent]
    ) -> LogCursor:
        started = time.perf_counter()
        new_cursor = events[-1].cursor
        try:
            await self._commit_retrying(conn, self._fold(events), cursor, new_cursor)
        except _PASS_ON:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure: roll back, report, then see
            # The batch rolled back and the checkpoint did not move, so nothing is lost.
            self.stats.errors += 1
            log.error(
                "projection_batch_failed",
                projection=self.name,
                first_position=events[0].position,
                last_position=events[-1].position,
                error=type(exc).__name__,
            )
            if not _poisoned(exc):
                # Not the events' fault (say, a table missing mid-migration): retry after a
                # pause; the projection's lag shows it is stuck.
                await asyncio.sleep(self._error_delay)
                return cursor
            # Some event of the batch is poison: apply them one by one, dead-lettering those
            # that fail, so the projection (and every write waiting for it) moves on.
            for event in events:
                await self._apply_one(conn, cursor, event)
                cursor = event.cursor
        # Counted as soon as committed (no await in between), so the stats never lag the rows.
        self.stats.applied += len(events)
        self.stats.batches += 1
        self.stats.cursor = new_cursor
        self.stats.last_batch_seconds = time.perf_counter() - started
        await conn.execute(QUERIES["progress_notify"], PROGRESS_CHANNEL, self.name)
        log.debug(
            "projection_applied",
            projection=self.name,
            events=len(events),
            position=new_cursor.position,
        )
        return new_cursor

    def _fold(self, events: Sequence[RecordedEvent]) -> list[Op]:
        ops: list[Op] = list(self.projection.prepare(events))
        for event in events:
            if event.type in TOMBSTONES:
                # Something of the account was purged before this tombstone: rebuild its rows
                # from the log as it now is, up to the tombstone (if it folds what was purged).
                if event.type in self.projection.purges:
                    account = StreamName.parse(event.stream).id
                    ops += rebuild_account(self.projection, account, event.cursor)
            else:
                ops += self.projection.apply(event)
        return ops

    async def _commit_retrying(
        self, conn: asyncpg.Connection[Any], ops: list[Op], since: LogCursor, cursor: LogCursor
    ) -> None:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(_RACES),
            stop=stop_after_attempt(5),
            wait=wait_exponential(multiplier=0.01, max=0.5),
            reraise=True,
        ):
            with attempt:
                await self._commit_batch(conn, ops, since, cursor)

    async def _apply_one(
        self, conn: asyncpg.Connection[Any], since: LogCursor, event: RecordedEvent
    ) -> None:
        """Apply one event with its checkpoint; if it is poison, keep it as a dead letter
        instead (with the checkpoint moved past it, in the same transaction)."""
        try:
            await self._commit_retrying(conn, self._fold([event]), since, event.cursor)
            return
        except _PASS_ON:
            raise
        except Exception as exc:
            if not _poisoned(exc):
                raise
            error = exc
        # The event's values are not in the log line (only where and what kind); the error's
        # text goes to the operator's table, where the event is anyway.
        log.error(
            "projection_dead_lettered",
            projection=self.name,
            position=event.position,
            type=event.type,
            error=type(error).__name__,
        )
        account = StreamName.parse(event.stream).id
        async with conn.transaction():
            await conn.execute(
                QUERIES["dead_letter_add"],
                account,
                self.name,
                event.position,
                event.transaction_id,
                event.event_id,
                event.stream,
                event.type,
                f"{type(error).__name__}: {error}",
            )
            await self._advance(conn, since, event.cursor)
        self.stats.dead_letters += 1

    async def _commit_batch(
        self, conn: asyncpg.Connection[Any], ops: list[Op], since: LogCursor, cursor: LogCursor
    ) -> None:
        async with conn.transaction():
            for run in _grouped(ops):
                if run.set_based:
                    await conn.execute(run.query, *run.args)
                else:
                    await conn.executemany(run.query, run.args)
            await self._advance(conn, since, cursor)

    async def _advance(
        self, conn: asyncpg.Connection[Any], since: LogCursor, cursor: LogCursor
    ) -> None:
        """Move the checkpoint from ``since`` to ``cursor`` (in the caller's transaction);
        :class:`CheckpointMoved` if it is no longer at ``since``."""
        status = await conn.execute(
            QUERIES["checkpoint_advance"],
            self.name,
            cursor.transaction_id,
            cursor.position,
            since.transaction_id,
            since.position,
        )
        if status != "UPDATE 1":
            raise CheckpointMoved(self.name)


def _poisoned(exc: BaseException) -> bool:
    """Whether ``exc`` is an event's fault (see :data:`_POISON`): raised by the fold itself
    (any error but the database's), or the database refusing the values it was given."""
    if isinstance(exc, asyncpg.PostgresError):
        return isinstance(exc, _POISON)
    return not isinstance(exc, _CONNECTION_ERRORS)


class ProjectionProgress:
    """Where every projection stands, as this process last read it, refreshed once per
    progress hint — so any number of writers waiting for read-your-writes cost one query per
    applied batch, not one each."""

    def __init__(
        self,
        pool: asyncpg.Pool[Any],
        progress: Wakeups,
        names: Sequence[str],
        *,
        poll_interval: float = 1.0,
    ) -> None:
        self._pool = pool
        self._names = tuple(names)
        self._positions: dict[str, LogCursor] = {}
        self._refreshed = Wakeups()
        self.lost: BaseException | None = None
        self._lost_at = 0.0
        # A cheap query: after a database error, again soon (a waiter should learn the
        # database is back soon after it is). Meanwhile :attr:`lost` holds the error.
        self._follower = HintFollower(
            "projection-progress",
            progress,
            self._refresh,
            poll=poll_interval,
            max_backoff=0.5,
            on_lost=self._lose,
        )

    async def run(self) -> None:
        """Forever (see :class:`~eventstore.HintFollower`)."""
        await self._follower.run()

    def _lose(self, error: BaseException | None) -> None:
        self.lost = error
        self._lost_at = time.monotonic()
        self._refreshed.wake()

    async def _refresh(self) -> None:
        rows = await self._pool.fetch(QUERIES["checkpoints_all"])
        self._positions = {row["name"]: LogCursor(row[1], row[2]) for row in rows}
        self.lost = None
        self._refreshed.wake()

    def applied(self, cursor: LogCursor, names: Sequence[str] | None = None) -> bool:
        """Whether the projections ``names`` (None: every one) have applied ``cursor``."""
        names = self._names if names is None else names
        return all(self._positions.get(n, LogCursor.START) >= cursor for n in names)

    async def wait_until_applied(
        self,
        cursor: LogCursor,
        within: float,
        *,
        unless_lost: bool = False,
        names: Sequence[str] | None = None,
    ) -> bool:
        """Wait until every projection has applied the event at ``cursor``; False if ``within``
        seconds passed first. With ``unless_lost``, False as soon as the database cannot be read
        (:attr:`lost`) since the wait began: the projections cannot apply anything either until
        it is back. (Lost before: the event was just written, so it is back, and this reader is
        about to see it.)"""
        started = time.monotonic()
        deadline = started + within
        while True:
            generation = self._refreshed.generation
            if self.applied(cursor, names):
                return True
            remaining = deadline - time.monotonic()
            lost = unless_lost and self.lost is not None and self._lost_at >= started
            if remaining <= 0 or lost:
                return False
            await self._refreshed.wait(generation, remaining)
