"""Export and import of raw events: the log as NDJSON, one stored event a line.

Knows nothing of what the events mean. An import goes through :meth:`EventStore.append`, as
every write does (append-only, ids unique), so it is idempotent: an event whose id or one of
whose idempotency keys is stored already is a duplicate, and importing a file twice changes
nothing. What a release must check, or key, or write beside an imported event, is its
caller's (:class:`ImportRules`).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import IO, Annotated, NamedTuple, Protocol

import asyncpg
import msgspec

from .database import Connection
from .errors import ConcurrencyConflict, ImportFailed
from .queries import QUERIES
from .records import AppendResult, NewEvent, RecordedEvent, StreamName
from .store import EventStore

EXPORT_PAGE = 5_000
IMPORT_BATCH = 1_000
# Lines held at most while each stream's are gathered into batches (a log written by
# concurrent appenders interleaves streams line by line). Large enough that a log of thousands
# of accounts still gives batches of many events a stream (with 20,000, a log of 5,000 accounts
# gave batches of two, and imported at a tenth of the rate); a few hundred MB at most.
IMPORT_WINDOW = 200_000
# Appends in flight at once, each of another stream (one stream's batches go one after another).
IMPORT_CONCURRENCY = 2
# Appends that must share a transaction with the caller's writes are not retried by the
# store when a live writer takes the stream's next version first: we retry them.
_ATTEMPTS = 30

_Positive = Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]


class ExportedEvent(msgspec.Struct, frozen=True):
    """One line of an export: a stored event, every field but its writing transaction.

    ``data`` is the event's JSON object as stored; ``idempotency_keys`` its keys (empty when it
    has none). An import keeps the id, type, schema version, data and keys; the target numbers
    positions and versions, and records its own time."""

    position: _Positive
    stream: str
    version: _Positive
    event_id: uuid.UUID
    type: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    schema_version: Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)]
    data: msgspec.Raw
    recorded_at: datetime
    idempotency_keys: tuple[uuid.UUID, ...] = ()

    def new_event(self, more_keys: Iterable[uuid.UUID] = ()) -> NewEvent:
        """The event to append for this line, with ``more_keys`` besides its own."""
        return NewEvent(
            type=self.type,
            data=self.data,
            schema_version=self.schema_version,
            event_id=self.event_id,
            idempotency_keys=tuple(dict.fromkeys((*self.idempotency_keys, *more_keys))),
        )

    def recorded(self) -> RecordedEvent:
        """This line as the stored event it was (for decoding it with an ``EventRegistry``)."""
        return RecordedEvent(
            self.position,
            self.stream,
            self.version,
            self.event_id,
            self.type,
            self.schema_version,
            self.data,
            self.recorded_at,
            0,
        )


class _ReadLine(ExportedEvent, frozen=True):
    """A line as an import reads it: of this release's exports, or of an earlier release's,
    which gave an event one key at most."""

    idempotency_key: uuid.UUID | None = None

    def keys_of_old(self) -> tuple[uuid.UUID, ...]:
        return () if self.idempotency_key is None else (self.idempotency_key,)


class ImportRules(Protocol):
    """What the importing release checks, and writes beside the log: it knows what events
    mean, the event store does not."""

    def check(self, event: ExportedEvent) -> None:
        """Raise ValueError, saying why, for an event this release may not import."""

    def keys(self, event: ExportedEvent) -> Iterable[uuid.UUID]:
        """Idempotency keys the release gives ``event`` (a checked one) besides the line's: an
        export of an earlier release may lack keys this release would have given."""

    def concerns(self, event: ExportedEvent) -> bool:
        """Whether :meth:`apply` must run for ``event``, in its append's transaction."""

    async def apply(self, conn: Connection, event: ExportedEvent) -> None:
        """Write what goes with ``event`` (new, or stored already: so idempotent). Raise
        ValueError, saying why, to refuse it (its append is then rolled back)."""


class ImportSummary(msgspec.Struct, frozen=True):
    """What an import did: lines read, events appended, events stored already."""

    lines: int
    imported: int
    duplicates: int
    seconds: float


async def export_events(
    conn: Connection, out: IO[bytes], *, after: int = 0, page_size: int = EXPORT_PAGE
) -> int:
    """Write every event after position ``after`` to ``out``, one JSON line each, in position
    order, a page at a time (memory stays constant whatever the log's size); how many.

    The pages are read in one read-only snapshot, so the export of a log being written to is
    consistent: the snapshot's events, with no page seeing another's. An event whose
    transaction was still open then is not in it; if its position is below the last one
    exported, a later export ``--after`` that position passes over it too (positions are taken
    at insert, not at commit). To follow a live log, export again from an earlier position:
    importing the overlap changes nothing."""
    encoder = msgspec.json.Encoder()
    count = 0
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        # The connection idles in this transaction while a slow reader of ``out`` catches up.
        await conn.execute(QUERIES["export_no_idle_timeout"])
        while True:
            rows = await conn.fetch(QUERIES["export_page"], after, page_size)
            if rows:
                out.write(encoder.encode_lines([ExportedEvent(*row) for row in rows]))
                count += len(rows)
                after = rows[-1][0]
            if len(rows) < page_size:
                break
    out.flush()
    return count


class _Line(NamedTuple):
    number: int
    event: ExportedEvent
    new: NewEvent


def _validate(event: ExportedEvent) -> None:
    StreamName.parse(event.stream)
    if "\x00" in event.stream or "\x00" in event.type:
        raise ValueError("a NUL character in the stream or type")
    if bytes(event.data)[:1] != b"{":
        raise ValueError("data is not a JSON object")


async def import_events(
    store: EventStore,
    lines: Iterable[bytes],
    *,
    rules: ImportRules | None = None,
    batch_size: int = IMPORT_BATCH,
    window: int = IMPORT_WINDOW,
    concurrency: int = IMPORT_CONCURRENCY,
) -> ImportSummary:
    """Append the events of exported ``lines`` (read as they come) through ``store``.

    Each stream's events keep their order, and are appended together (up to ``batch_size``
    a call, gathered from up to ``window`` lines, so memory stays bounded), with no expected
    version (the source may have gaps where events were purged; the target numbers versions
    itself); up to ``concurrency`` streams' batches at once. Blank lines are skipped.

    A line that is not an exported event, or that the database or ``rules`` refuse, raises
    :class:`ImportFailed` naming it, after every line before it was imported (some after it
    may have been too: importing is idempotent, so running it again after a fix is safe)."""
    started = time.monotonic()
    decoder = msgspec.json.Decoder(_ReadLine)
    appender = _Appender(store, rules, concurrency)
    batches: dict[str, list[_Line]] = {}  # each stream's lines not yet appended
    keys: dict[str, set[uuid.UUID]] = {}
    held = 0
    number = 0

    async def flush(stream: str | None = None) -> None:
        nonlocal held
        for name in list(batches) if stream is None else [stream]:
            batch = batches.pop(name)
            del keys[name]
            held -= len(batch)
            await appender.submit(batch)

    try:
        for number, line in enumerate(lines, 1):
            if appender.failed:
                break
            if not line.strip():
                continue
            try:
                event = decoder.decode(line)
                _validate(event)
                if rules is not None:
                    rules.check(event)
            except (msgspec.DecodeError, ValueError) as exc:
                await flush()
                await appender.drain()
                raise ImportFailed(number, str(exc)) from exc
            more = event.keys_of_old()
            new = event.new_event(more if rules is None else (*more, *rules.keys(event)))
            stream = event.stream
            if stream in batches and (
                len(batches[stream]) >= batch_size or keys[stream] & new.keys
            ):
                await flush(stream)
            batches.setdefault(stream, []).append(_Line(number, event, new))
            keys.setdefault(stream, set()).update(new.keys)
            held += 1
            if held >= window:
                await flush()
        else:
            await flush()
    finally:
        await appender.drain()
    return ImportSummary(number, appender.imported, appender.duplicates, time.monotonic() - started)


class _Appender:
    """Appends batches, up to ``concurrency`` at once, each stream's one after another; after
    a failure it appends nothing more, and :meth:`drain` raises the failure of the first line."""

    def __init__(self, store: EventStore, rules: ImportRules | None, concurrency: int) -> None:
        self._store = store
        self._rules = rules
        self._slots = asyncio.Semaphore(concurrency)
        self._last: dict[str, asyncio.Task[None]] = {}  # each stream's latest batch in flight
        self._tasks: set[asyncio.Task[None]] = set()
        self._failures: list[tuple[int, BaseException]] = []
        self.imported = 0
        self.duplicates = 0

    @property
    def failed(self) -> bool:
        return bool(self._failures)

    async def submit(self, batch: list[_Line]) -> None:
        await self._slots.acquire()
        stream = batch[0].event.stream
        task = asyncio.create_task(self._run(batch, self._last.get(stream)), name="import")
        self._last[stream] = task
        self._tasks.add(task)
        task.add_done_callback(lambda done: self._done(stream, batch[0].number, done))

    def _done(self, stream: str, line: int, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if self._last.get(stream) is task:
            del self._last[stream]
        if not task.cancelled() and (exc := task.exception()) is not None:
            self._failures.append((exc.line if isinstance(exc, ImportFailed) else line, exc))

    async def _run(self, batch: list[_Line], before: asyncio.Task[None] | None) -> None:
        try:
            if before is not None:
                await asyncio.wait([before])
                if before.cancelled() or before.exception() is not None:
                    return  # the stream's next events wait for the failed one's fix
            if self._failures:
                return
            results = await _append(self._store, batch, self._rules)
            new = sum(not result.duplicate for result in results)
            self.imported += new
            self.duplicates += len(results) - new
        finally:
            self._slots.release()

    async def drain(self) -> None:
        """Wait for every batch in flight; raise the first line's failure, if any."""
        if self._tasks:
            await asyncio.wait(self._tasks)
        if self._failures:
            failures, self._failures = self._failures, []
            raise min(failures, key=lambda failure: failure[0])[1]


async def _append(
    store: EventStore, batch: Sequence[_Line], rules: ImportRules | None
) -> list[AppendResult]:
    """Append one stream's lines; on a line the database or the rules refuse, append the
    lines before it and raise :class:`ImportFailed` naming it."""
    stream = batch[0].event.stream
    events = [line.new for line in batch]
    concerned = [] if rules is None else [line for line in batch if rules.concerns(line.event)]
    try:
        if not concerned:
            return await store.append(stream, events)  # retried on a lost race; wakes readers
        assert rules is not None
        return await _append_with(store, stream, events, concerned, rules)
    except asyncpg.DataError as exc:  # what PostgreSQL cannot hold (a NUL in jsonb, say)
        failed, reason = (0, str(exc)) if len(batch) == 1 else (-1, "")
    except ImportFailed as exc:
        failed = next(i for i, line in enumerate(batch) if line.number == exc.line)
        reason = exc.reason
    if failed < 0:  # which line: nothing of the batch is stored, so one at a time
        for i in range(len(batch)):
            await _append(store, batch[i : i + 1], rules)
        raise AssertionError("unreachable: a single line's DataError names it")
    if failed > 0:
        await _append(store, batch[:failed], rules)
    raise ImportFailed(batch[failed].number, reason)


async def _append_with(
    store: EventStore,
    stream: str,
    events: list[NewEvent],
    concerned: list[_Line],
    rules: ImportRules,
) -> list[AppendResult]:
    for _ in range(_ATTEMPTS):
        try:
            async with store.pool.acquire() as conn, conn.transaction():
                results = await store.append(stream, events, conn=conn)
                for line in concerned:
                    try:
                        await rules.apply(conn, line.event)
                    except ValueError as exc:
                        raise ImportFailed(line.number, str(exc)) from exc
        except ConcurrencyConflict:
            continue  # a live writer took the stream's next version first
        store.notify_appended()
        return results
    raise ImportFailed(concerned[0].number, "the stream kept changing meanwhile; try again")
