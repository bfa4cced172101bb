"""The event store: append, read, tail and (the one sanctioned deletion) purge.

Driver errors are translated into :mod:`eventstore.errors` here and nowhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from itertools import repeat
from typing import Any

import asyncpg
import structlog
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from .database import TRANSIENT_ERRORS, Connection, unavailable
from .errors import AppendOnlyViolation, ConcurrencyConflict
from .queries import QUERIES
from .records import (
    AppendResult,
    LogCursor,
    NewEvent,
    PurgeResult,
    RecordedEvent,
    StreamName,
    event_from_row,
)
from .tailing import LogFollow, SafePage, SafeReader, SnapshotXminReader
from .wakeups import DEFAULT_CHANNEL, LogListener, Notifier, Wakeups

log = structlog.get_logger(__name__)

_RACE_CONSTRAINTS = frozenset(
    {"events_stream_version_key", "events_event_id_key", "event_keys_pkey"}
)
# Appenders to one stream that lose a race retry in a new transaction; so do appends cut off
# by a broken connection (an event id that did commit then comes back as a duplicate).
_APPEND_ATTEMPTS = 30
# ... and for this long at most: a database that keeps failing for a second is down or cut off,
# not racing, and the caller should hear so now (an attempt that hangs ends at the pool's bounds).
_APPEND_RETRY_WITHIN = 1.0


class _AppendRace(Exception):
    """Another transaction took the version (or stored the event id) first."""


_RETRYABLE: tuple[type[BaseException], ...] = (_AppendRace, *TRANSIENT_ERRORS)


@contextlib.contextmanager
def _translate_errors() -> Iterator[None]:
    try:
        yield
    except asyncpg.ProhibitedSQLStatementAttemptedError as exc:
        raise AppendOnlyViolation(exc.message) from exc
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name in _RACE_CONSTRAINTS:
            raise _AppendRace(exc.constraint_name) from exc
        raise


def _keys_of(events: Sequence[NewEvent]) -> tuple[list[Any], list[int]]:
    """The events' idempotency keys, flattened, and the 1-based index of each key's event;
    ValueError when two of them share an id or a key."""
    seen: set[Any] = set()
    keys: list[Any] = []
    key_events: list[int] = []
    for index, event in enumerate(events, 1):
        if not seen.isdisjoint(names := event.keys):  # keys: built once an event
            raise ValueError("an append cannot carry the same event (id or key) twice")
        seen |= names
        own = dict.fromkeys(event.idempotency_keys)
        keys.extend(own)
        key_events.extend(repeat(index, len(own)))
    return keys, key_events


def _no_event_twice(
    names: Sequence[StreamName], batches: Sequence[tuple[str, Sequence[NewEvent]]]
) -> None:
    """ValueError when two streams of one account carry the same event (id or key): one
    statement appends them all, and would fail on the unique index instead of answering the
    second as a duplicate. (Each stream's own events are checked by :func:`_keys_of`.)"""
    seen: dict[str, set[Any]] = {}
    for name, (_, events) in zip(names, batches, strict=True):
        carried: set[Any] = set().union(*(event.keys for event in events))
        account = seen.setdefault(name.id, set())
        if not account.isdisjoint(carried):
            raise ValueError("an append cannot carry the same event (id or key) twice")
        account |= carried


_Waiting = tuple[str, Sequence[NewEvent], "asyncio.Future[list[AppendResult]]"]


def _answer(taken: list[_Waiting], results: list[list[AppendResult]]) -> None:
    for (_, _, done), result in zip(taken, results, strict=True):
        if not done.done():
            done.set_result(result)


class _GroupCommit:
    """Concurrent appends share one statement and one commit. Whoever appends while no flush
    runs starts one; what arrives meanwhile waits for the next, which takes it all (one append
    a stream: a second append to a stream waits one more flush, keeping each stream's order).
    With no concurrency this is a plain append: nothing waits for a timer. When a flush fails
    because the database cannot be reached, every append waiting then fails with it (an outage
    ends them all at once); when it fails otherwise, each of its appends is tried alone, so one
    stream's trouble is not its neighbours'."""

    def __init__(self, store: EventStore) -> None:
        self._store = store
        self._pending: list[_Waiting] = []
        self._taken: list[_Waiting] = []  # the flush in progress
        self._flushing: asyncio.Task[None] | None = None

    async def append(self, stream: str, events: Sequence[NewEvent]) -> list[AppendResult]:
        done: asyncio.Future[list[AppendResult]] = asyncio.get_running_loop().create_future()
        self._pending.append((stream, events, done))
        if self._flushing is None:
            self._flushing = asyncio.create_task(self._flush(), name="eventstore-group-commit")
            self._flushing.add_done_callback(self._flushed)
        return await done

    def _flushed(self, task: asyncio.Task[None]) -> None:
        """A flush task cancelled, even before it started (the store closing): no waiter is
        left hanging, and the next append starts a new flush."""
        if not task.cancelled():
            return
        closed = RuntimeError("the event store closed before the append")
        for _, _, done in [*self._taken, *self._pending]:
            if not done.done():
                done.set_exception(closed)
        self._taken, self._pending = [], []
        if self._flushing is task:
            self._flushing = None

    async def _flush(self) -> None:
        try:
            while self._pending:
                # One append a stream a flush, in arrival order; those whose caller gave up
                # (a cancelled request) are not appended.
                taken, later, streams = [], [], set()
                for item in self._pending:
                    if item[2].done():
                        continue
                    if item[0] in streams:
                        later.append(item)
                    else:
                        streams.add(item[0])
                        taken.append(item)
                self._pending, self._taken = later, taken
                if not taken:
                    continue
                try:
                    if len(taken) == 1:
                        results = [await self._store._append_one(taken[0][0], taken[0][1])]
                    else:
                        results = await self._store.append_many([(s, e) for s, e, _ in taken])
                except Exception as exc:  # noqa: BLE001 - handed to the waiters, below
                    await self._failed(taken, exc)
                else:
                    _answer(taken, results)
                self._taken = []
        finally:
            self._flushing = None

    async def _failed(self, taken: list[_Waiting], exc: Exception) -> None:
        """A group's statement failed. When the database cannot be reached, every append
        waiting fails with it (it would fail them too, and none must wait a whole failure more);
        otherwise one member may be at fault (a stream held by another transaction past the
        retries, say), so each is tried again alone and gets its own outcome."""
        if unavailable(exc):
            failed, self._pending = [*taken, *self._pending], []
            for _, _, done in failed:
                if not done.done():
                    done.set_exception(exc)
            return
        if len(taken) == 1:
            if not taken[0][2].done():
                taken[0][2].set_exception(exc)
            return
        for stream, events, done in taken:
            try:
                result = await self._store._append_one(stream, events)
            except Exception as alone:  # noqa: BLE001 - this append's own outcome
                if not done.done():
                    done.set_exception(alone)
            else:
                if not done.done():
                    done.set_result(result)

    async def close(self) -> None:
        if self._flushing is not None:
            await asyncio.gather(self._flushing, return_exceptions=True)


class EventStore:
    """An append-only log of events in PostgreSQL.

    Use it as an async context manager (it runs the notifier that wakes readers after appends,
    and, given a ``listener``, the LISTEN connection that tails wait on)."""

    def __init__(
        self,
        pool: asyncpg.Pool[Any],
        *,
        listener: LogListener | None = None,
        channel: str = DEFAULT_CHANNEL,
        reader: SafeReader | None = None,
        poll_interval: float = 1.0,
        group_commit: bool = False,
    ) -> None:
        self.pool = pool
        self.listener = listener
        self.wakeups = listener.wakeups_for(channel) if listener is not None else Wakeups()
        self.poll_interval = poll_interval
        self._reader: SafeReader = reader or SnapshotXminReader()
        self._notifier = Notifier(pool, channel=channel)
        self._group = _GroupCommit(self) if group_commit else None

    async def __aenter__(self) -> EventStore:
        self._notifier.start()
        if self.listener is not None:
            await self.listener.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._group is not None:
            await self._group.close()
        await self._notifier.close()
        if self.listener is not None:
            await self.listener.close()

    def background_tasks(self) -> list[asyncio.Task[None]]:
        """The store's long-running tasks, for a supervisor to watch: none ends by itself."""
        tasks = [self._notifier.task, self.listener.task if self.listener else None]
        return [task for task in tasks if task is not None]

    def notify_appended(self) -> None:
        """Wake readers; call after committing a transaction that appended through ``conn=``."""
        self._notifier.poke()

    # -- writing ------------------------------------------------------------------------------

    async def append(
        self,
        stream: str,
        events: Sequence[NewEvent],
        expected_version: int | None = None,
        *,
        conn: Connection | None = None,
    ) -> list[AppendResult]:
        """Append ``events`` to ``stream`` atomically; one result per event, in order.

        An event whose id matches a stored event's id, or one of whose idempotency keys matches
        one of a stored event's keys, is not stored again: its result says ``duplicate`` and
        gives the original's id and position, so retries are always safe. If
        ``expected_version`` is given and any event is new, the stream must be at that version,
        else :class:`ConcurrencyConflict` is raised and nothing is stored.

        With ``conn``, the append joins the caller's transaction; call
        :meth:`notify_appended` after it commits. Without it and without an expected version,
        a store made with ``group_commit`` lets concurrent appends to different streams share
        one statement and one commit (each still answered only once it is durable).
        """
        name = StreamName.parse(stream)
        if not events:
            return []
        if self._group is not None and conn is None and expected_version is None:
            _keys_of(events)  # its own mistakes are its own, not its group's
            return await self._group.append(stream, events)
        return await self._append_stream(name, stream, events, expected_version, conn)

    async def _append_one(self, stream: str, events: Sequence[NewEvent]) -> list[AppendResult]:
        """A plain single-stream append (the group's flush of one, or a member tried alone)."""
        return await self._append_stream(StreamName.parse(stream), stream, events, None, None)

    async def _append_stream(
        self,
        name: StreamName,
        stream: str,
        events: Sequence[NewEvent],
        expected_version: int | None,
        conn: Connection | None,
    ) -> list[AppendResult]:
        keys, key_events = _keys_of(events)
        args = (
            name.id,
            stream,
            expected_version,
            [event.event_id for event in events],
            [event.type for event in events],
            [event.schema_version for event in events],
            [bytes(event.data) for event in events],
            keys,
            key_events,
        )
        rows = await self._run(QUERIES["append"], args, stream, expected_version, conn)
        return self._append_results(stream, expected_version, len(events), rows)

    async def append_many(
        self,
        batches: Sequence[tuple[str, Sequence[NewEvent]]],
        *,
        conn: Connection | None = None,
    ) -> list[list[AppendResult]]:
        """Append to many streams at once: one statement, one transaction (one commit where a
        loop of :meth:`append` would commit once a stream). ``batches``: (stream, events), each
        stream at most once; the results of each batch's events, in order. Ids and keys behave
        as in :meth:`append` (a duplicate comes back with the original's position); there is
        no expected version. A lost race retries the whole call in a new transaction."""
        names = [StreamName.parse(stream) for stream, _ in batches]
        if len({stream for stream, _ in batches}) != len(batches):
            raise ValueError("append_many takes each stream once")
        _no_event_twice(names, batches)
        # One lock order for every caller: two calls touching the same streams cannot deadlock.
        order = sorted(
            (i for i, (_, events) in enumerate(batches) if events), key=lambda i: batches[i][0]
        )
        if not order:
            return [[] for _ in batches]
        accounts, streams, counts, key_counts = [], [], [], []
        ids: list[Any] = []
        types: list[str] = []
        versions: list[int] = []
        data: list[bytes] = []
        keys: list[Any] = []
        key_events: list[int] = []
        for i in order:
            stream, events = batches[i]
            own_keys, own_key_events = _keys_of(events)
            keys += own_keys
            key_events += own_key_events
            ids += [event.event_id for event in events]
            types += [event.type for event in events]
            versions += [event.schema_version for event in events]
            data += [bytes(event.data) for event in events]
            accounts.append(names[i].id)
            streams.append(stream)
            counts.append(len(events))
            key_counts.append(len(own_keys))
        args = (accounts, streams, counts, key_counts, ids, types, versions, data, keys, key_events)
        rows = await self._run(QUERIES["append_many"], args, streams[0], None, conn)
        by_stream: dict[int, list[asyncpg.Record]] = {}
        for row in rows:
            by_stream.setdefault(row["stream_index"], []).append(row)
        results: list[list[AppendResult]] = [[] for _ in batches]
        for s, i in enumerate(order, 1):
            stream, events = batches[i]
            results[i] = self._append_results(stream, None, len(events), by_stream.get(s, []))
        return results

    async def _run(
        self,
        query: str,
        args: tuple[Any, ...],
        stream: str,
        expected_version: int | None,
        conn: Connection | None,
    ) -> list[asyncpg.Record]:
        """Run a writing query: alone, retried in new transactions, then waking readers; or
        in the caller's transaction, where a lost race can only be reported."""
        if conn is None:
            rows = await self._retrying(query, args)
            self._notifier.poke()
            return rows
        try:
            return await self._fetch(conn, query, args)
        except _AppendRace as exc:
            raise ConcurrencyConflict(stream, expected_version, None) from exc

    async def _retrying(self, query: str, args: tuple[Any, ...]) -> list[asyncpg.Record]:
        started = time.monotonic()
        try:
            return await self._fetch_pooled(query, args)
        except _RETRYABLE:
            # Lost a race, or the connection: again below, in new transactions; unless this
            # one attempt used up the time (the database did not answer).
            if time.monotonic() - started >= _APPEND_RETRY_WITHIN:
                raise
        # Only the retry path pays for a retrier (building one costs more than a fast append's
        # own Python work).
        remaining = _APPEND_RETRY_WITHIN - (time.monotonic() - started)
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(_RETRYABLE),
            stop=stop_after_attempt(_APPEND_ATTEMPTS - 1) | stop_after_delay(remaining),
            wait=wait_random_exponential(multiplier=0.001, max=0.05),
            reraise=True,
        ):
            with attempt:
                return await self._fetch_pooled(query, args)
        raise AssertionError("unreachable: tenacity reraises the last error")

    async def _fetch_pooled(self, query: str, args: tuple[Any, ...]) -> list[asyncpg.Record]:
        async with self.pool.acquire() as conn:
            return await self._fetch(conn, query, args)

    @staticmethod
    async def _fetch(conn: Connection, query: str, args: tuple[Any, ...]) -> list[asyncpg.Record]:
        with _translate_errors():
            return await conn.fetch(query, *args)

    @staticmethod
    def _append_results(
        stream: str, expected: int | None, count: int, rows: list[asyncpg.Record]
    ) -> list[AppendResult]:
        if len(rows) == 1 and rows[0]["conflict"]:
            raise ConcurrencyConflict(stream, expected, rows[0]["stream_version"])
        by_index = {row["input_index"]: row for row in rows}
        if len(by_index) != count:
            raise AssertionError(f"eventstore_append answered {len(by_index)} of {count} events")
        return [
            AppendResult(
                event_id=row["event_id"],
                position=row["event_position"],
                version=row["stream_version"],
                duplicate=row["duplicate"],
                transaction_id=row["transaction_id"],
            )
            for row in (by_index[i] for i in range(1, count + 1))
        ]

    async def purge(
        self,
        stream: str,
        positions: Sequence[int],
        tombstone: NewEvent,
        *,
        expected_version: int | None = None,
        conn: Connection | None = None,
    ) -> PurgeResult:
        """Physically remove the events at ``positions`` (of the stream's partition) and append
        ``tombstone`` to ``stream``, in one transaction. The one sanctioned deletion: the
        tombstone tells replays that something was removed; it must not carry what was.

        With ``expected_version``, nothing happens unless the stream is at that version
        (:class:`ConcurrencyConflict` otherwise): the caller chose ``positions`` from what it
        read, and an event appended since would escape the purge yet precede its tombstone."""
        name = StreamName.parse(stream)
        args = (
            name.id,
            stream,
            list(positions),
            tombstone.event_id,
            tombstone.type,
            tombstone.schema_version,
            bytes(tombstone.data),
            expected_version,
        )
        (row,) = await self._run(QUERIES["purge_expected"], args, stream, expected_version, conn)
        if row["conflict"]:
            raise ConcurrencyConflict(stream, expected_version, row["tombstone_version"])
        result = PurgeResult(
            row["deleted"],
            row["tombstone_position"],
            row["tombstone_version"],
            LogCursor(row["tombstone_transaction_id"], row["tombstone_position"]),
        )
        log.info(
            "events_purged",
            stream=stream,
            deleted=result.deleted,
            tombstone_position=result.tombstone_position,
        )
        return result

    # -- reading ------------------------------------------------------------------------------

    async def read_stream(
        self, stream: str, *, after_version: int = 0, limit: int = 1000
    ) -> list[RecordedEvent]:
        """One stream's events in version order."""
        name = StreamName.parse(stream)
        rows = await self.pool.fetch(QUERIES["read_stream"], name.id, stream, after_version, limit)
        return [event_from_row(row) for row in rows]

    async def stream_version(self, stream: str) -> int:
        """The stream's current version (0 for a stream with no events)."""
        name = StreamName.parse(stream)
        version: int = await self.pool.fetchval(QUERIES["stream_version"], name.id, stream)
        return version

    async def read_all(self, *, after: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        """A page of the whole log in position order, after position ``after``.

        For reading what is there. To follow the log as it grows, use :meth:`tail`: a position
        can commit after a higher one, and paging by position would pass it over."""
        rows = await self.pool.fetch(QUERIES["read_all"], after, limit)
        return [event_from_row(row) for row in rows]

    async def read_category(
        self, category: str, *, after: int = 0, limit: int = 1000
    ) -> list[RecordedEvent]:
        """A page of every stream of ``category`` (the name's part before the first '-')."""
        rows = await self.pool.fetch(QUERIES["read_category"], category, after, limit)
        return [event_from_row(row) for row in rows]

    async def iter_all(
        self, *, after: int = 0, page_size: int = 1000
    ) -> AsyncIterator[RecordedEvent]:
        """Every event of the log in position order, read page by page."""
        while True:
            page = await self.read_all(after=after, limit=page_size)
            for event in page:
                yield event
            if len(page) < page_size:
                return
            after = page[-1].position

    async def head(self) -> int:
        """The highest position in the log (0 when it is empty)."""
        position: int = await self.pool.fetchval(QUERIES["head"])
        return position

    async def last_cursor(self) -> LogCursor:
        """The cursor of the last committed event in tailing order (START when empty): a
        reader that has passed it has seen everything committed before this call."""
        row = await self.pool.fetchrow(QUERIES["last_cursor"])
        return LogCursor.START if row is None else LogCursor(row[0], row[1])

    async def read_safe(
        self,
        after: LogCursor = LogCursor.START,
        limit: int = 500,
        *,
        conn: Connection | None = None,
    ) -> SafePage:
        """The next events after ``after`` that can be read without ever skipping one
        (see :mod:`eventstore.tailing`). Consumers that keep their own checkpoint use this."""
        if conn is not None:
            return await self._reader.read(conn, after, limit)
        async with self.pool.acquire() as own:
            return await self._reader.read(own, after, limit)

    def follow(
        self,
        after: LogCursor = LogCursor.START,
        *,
        batch_size: int = 500,
        conn: Connection | None = None,
        poll_interval: float | None = None,
    ) -> LogFollow:
        """Pages of committed events after ``after`` in tailing order, for ever (see
        :class:`~eventstore.tailing.LogFollow`), read on ``conn`` or on pooled connections."""

        async def read(cursor: LogCursor, limit: int) -> SafePage:
            return await self.read_safe(cursor, limit, conn=conn)

        return LogFollow(
            read,
            self.wakeups,
            after,
            batch_size=batch_size,
            poll_interval=self.poll_interval if poll_interval is None else poll_interval,
        )

    async def tail(
        self, after: LogCursor = LogCursor.START, *, batch_size: int = 500
    ) -> AsyncIterator[RecordedEvent]:
        """Every committed event after ``after``, each exactly once, in tailing order; never
        ends. Waits for wake-ups between reads, and polls every ``poll_interval`` seconds in
        case a hint was lost."""
        async for events in self.follow(after, batch_size=batch_size):
            for event in events:
                yield event
