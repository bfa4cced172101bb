"""Gap-free reading of a log that many transactions append to at once.

The trap: a position comes from a sequence when a row is inserted, not when its transaction
commits. A reader that asks for ``position > checkpoint`` can see position 11 (committed) while
position 10 is still in flight, move its checkpoint to 11, and never see 10.

The method here (PostgreSQL's own snapshot bookkeeping, writers stay fully parallel): every row
records the id of the transaction that wrote it (``pg_current_xact_id()``, a 64-bit xid8 that
never wraps). ``pg_snapshot_xmin(pg_current_snapshot())`` is the oldest transaction still
running; every transaction with a smaller id has ended, so the set of rows below that horizon
can never grow again except by rows of *larger* transaction ids. Reading in (transaction id,
position) order, only below the horizon, and checkpointing that pair therefore never passes over
a row. Rows of one transaction are read together and in position order; within one stream the
order is the version order (a stream's next version is only written after the previous one has
committed, by a transaction that got its id later).

The price: one open transaction anywhere on the server holds every reader back until it ends.
Keep transactions short (connections set ``idle_in_transaction_session_timeout``), and watch
``held_back``: the reader reports when committed rows wait behind an older transaction.

The strategy sits behind :class:`SafeReader` so that another can replace it (on a distributed
PostgreSQL, where transaction ids are per node, per-stream version checkpoints would).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol

import msgspec

from .database import Connection
from .queries import QUERIES
from .records import LogCursor, RecordedEvent, event_from_row
from .wakeups import Wakeups

# While committed rows are held back behind an older open transaction, look again after this
# long, doubling up to the cap: the older transaction's end may come with no notification (it
# need not have appended anything).
_HELD_FIRST = 0.002
_HELD_MAX = 0.05


class SafePage(msgspec.Struct, frozen=True):
    """Events that can be read without ever missing one, and whether more are held back."""

    events: list[RecordedEvent]
    held_back: bool

    @property
    def last_cursor(self) -> LogCursor | None:
        return self.events[-1].cursor if self.events else None


class SafeReader(Protocol):
    """Reads the next page of the log after a cursor such that no event is ever skipped."""

    async def read(self, conn: Connection, after: LogCursor, limit: int) -> SafePage:
        """Events after ``after`` in tailing order, at most ``limit`` of them."""
        ...


class SnapshotXminReader:
    """The transaction-id horizon method described in this module's docstring."""

    async def read(self, conn: Connection, after: LogCursor, limit: int) -> SafePage:
        rows = await conn.fetch(QUERIES["read_safe"], after.transaction_id, after.position, limit)
        held_back = bool(rows) and rows[-1]["held_back"]
        if held_back:
            rows = rows[:-1]
        return SafePage([event_from_row(row) for row in rows], held_back)


ReadPage = Callable[[LogCursor, int], Awaitable[SafePage]]


class LogFollow:
    r"""The one loop that follows the log: pages of events after a cursor, for ever.

    Between pages it waits for a wake-up (a hint that something was appended), and polls every
    ``poll_interval`` seconds in case a hint was lost; a full page is followed at once, and
    rows held back behind an older transaction are looked for again soon. Iterating yields
    each page once the cursor has moved past it; a consumer that could not take a page (or
    found its own checkpoint moved) :meth:`seek`\ s, and the next page is read from there at
    once."""

    def __init__(
        self,
        read: ReadPage,
        wakeups: Wakeups,
        after: LogCursor,
        *,
        batch_size: int,
        poll_interval: float,
    ) -> None:
        self._read = read
        self._wakeups = wakeups
        self._cursor = after
        self._batch_size = batch_size
        self.poll_interval = poll_interval
        self._sought = False

    @property
    def cursor(self) -> LogCursor:
        """Where the next page starts."""
        return self._cursor

    def seek(self, cursor: LogCursor) -> None:
        """Read the next page after ``cursor`` (and without waiting)."""
        self._cursor = cursor
        self._sought = True

    def __aiter__(self) -> AsyncIterator[list[RecordedEvent]]:
        return self._pages()

    async def _pages(self) -> AsyncIterator[list[RecordedEvent]]:
        held_delay = _HELD_FIRST
        while True:
            generation = self._wakeups.generation
            page = await self._read(self._cursor, self._batch_size)
            if page.events:
                self._cursor = page.events[-1].cursor
                self._sought = False
                yield page.events
                if self._sought:
                    continue
            if len(page.events) == self._batch_size:
                continue
            if page.held_back:
                await self._wakeups.wait(generation, held_delay)
                held_delay = min(held_delay * 2, _HELD_MAX)
                continue
            held_delay = _HELD_FIRST
            await self._wakeups.wait(generation, self.poll_interval)
