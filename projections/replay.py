"""Rebuilding projections from the log: replay with an atomic swap, point-in-time copies, and
verification — all set-based (:mod:`projections.protocol`), while the service keeps serving
and writing.

**Replay** rebuilds into side tables (a schema of their own, the tables made like the live ones,
with the same index and constraint names), slice by slice in tailing order up to the last safe
cursor — every event before it is committed, none can appear later. Each slice is one short
transaction: a long one would hold back every reader of the log (gap-free tailing trusts only
rows below the oldest running transaction) and so every write waiting to read its own change.
When the side tables have caught up, one transaction swaps them in (live tables out, side tables
in, the checkpoint set to the rebuilt cursor, the projection's dead letters replaced by the
events the rebuild left out) and drops the old ones. The live runner, finding its checkpoint
moved, catches up from there; a runner that got past the rebuilt cursor meanwhile is never set
back (the swap locks the checkpoints and folds the side tables up to it first). The bulk of a
rebuild can run on several connections at once, the projections shared out among them: each
projection's rebuild is one backend's work, so on several cores the whole takes about as long
as the largest share.

A **point-in-time copy** (``until_position`` / ``until_time``) is built the same way into a schema
named by the operator and never touches the live tables.

**Verify** rebuilds into side tables, brings them to each projection's live checkpoint, and
compares the two in one read-only snapshot (no transaction id, so no reader is held back).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, TypeAlias

import asyncpg
import msgspec
import structlog
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_random

from eventstore import LogCursor
from eventstore.queries import load_queries

from .protocol import CUSTOM_PLANS, Projection, Slice
from .runner import PROGRESS_CHANNEL
from .runner import QUERIES as RUNNER_QUERIES

log = structlog.get_logger(__name__)

QUERIES = load_queries("projections", "sql/replay.sql")

SIDE_SCHEMA = "watchledger_rebuild"
_RETIRED_SCHEMA = "watchledger_retired"
_LOCK = "watchledger:replay"
# Marks a schema a point-in-time copy made: only such a schema is ever replaced.
_COPY_MARK = "watchledger point-in-time copy"
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_INDEX = re.compile(r"^(CREATE (?:UNIQUE )?INDEX) (\S+) ON (?:ONLY )?(\S+) (USING .*)$")
# Events per slice: each slice is one transaction, short enough that the readers it holds back
# (see the module docstring) wait a fraction of a second.
SLICE_EVENTS = 20_000
DEAD_LETTER_ERROR = "left out by a replay: its data does not fit the projection"

Progress = Callable[[int, int], None]
"""Told (events done, events in all) as a rebuild goes."""
Connect: TypeAlias = "Callable[[], Awaitable[asyncpg.Connection[Any]]]"
"""Opens one more connection to the database (for a parallel rebuild)."""


class ReplayError(Exception):
    """The replay could not be done."""


class ProjectionReport(msgspec.Struct, frozen=True):
    name: str
    events: int
    seconds: float
    dead_letters: int


class ReplayReport(msgspec.Struct, frozen=True):
    """What a replay did: the cursor it rebuilt to, each projection's figures, and the time the
    whole took (building and swapping)."""

    through: LogCursor
    events: int
    seconds: float
    projections: list[ProjectionReport]
    schema: str


class TableDifference(msgspec.Struct, frozen=True):
    projection: str
    table: str
    only_live: int
    only_rebuilt: int
    accounts: list[str]


class VerifyReport(msgspec.Struct, frozen=True):
    """Where the live projections differ from a rebuild of the log (empty: nowhere)."""

    differences: list[TableDifference]
    tables: int
    seconds: float

    @property
    def ok(self) -> bool:
        return not self.differences


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class Rebuilder:
    """Builds side tables of some projections on one connection (see the module docstring)."""

    def __init__(
        self,
        conn: asyncpg.Connection[Any],
        projections: Sequence[Projection],
        schema: str,
        *,
        slice_events: int = SLICE_EVENTS,
        progress: Progress | None = None,
    ) -> None:
        self.conn = conn
        self.projections = list(projections)
        self.schema = schema
        self.live_schema = ""
        self.cursor = LogCursor.START
        self.events = 0
        self.slice_events = slice_events
        self.progress = progress

    async def create(self, *, mark: str | None = None) -> None:
        """(Re)create the side schema with empty tables made like the live ones."""
        self.live_schema = await self.conn.fetchval(QUERIES["current_schema"])
        if self.schema == self.live_schema:
            raise ReplayError(f"schema {self.schema!r} holds the live tables")
        side = _quote(self.schema)
        async with self.conn.transaction():
            await self.conn.execute(f"DROP SCHEMA IF EXISTS {side} CASCADE")
            await self.conn.execute(f"CREATE SCHEMA {side}")
            if mark is not None:
                await self.conn.execute(f"COMMENT ON SCHEMA {side} IS {_literal(mark)}")
            for projection in self.projections:
                for table in projection.tables:
                    await self._create_like(table)

    async def _create_like(self, table: str) -> None:
        live = f"{_quote(self.live_schema)}.{_quote(table)}"
        side = f"{_quote(self.schema)}.{_quote(table)}"
        await self.conn.execute(
            f"CREATE TABLE {side} (LIKE {live} INCLUDING DEFAULTS INCLUDING CONSTRAINTS "
            "INCLUDING GENERATED INCLUDING IDENTITY)"
        )
        # Indexes and the constraints they back under the live names, so the swapped-in
        # tables are exactly what the migrations made (a later migration names them).
        for row in await self.conn.fetch(QUERIES["table_indexes"], self.live_schema, table):
            match = _INDEX.match(row["definition"])
            if match is None:
                raise ReplayError(f"cannot copy index {row['name']!r} of {table!r}")
            await self.conn.execute(
                f"{match.group(1)} {_quote(row['name'])} ON {side} {match.group(4)}"
            )
            if row["constraint_type"] in ("p", "u"):
                kind = "PRIMARY KEY" if row["constraint_type"] == "p" else "UNIQUE"
                await self.conn.execute(
                    f"ALTER TABLE {side} ADD CONSTRAINT {_quote(row['constraint_name'])} "
                    f"{kind} USING INDEX {_quote(row['name'])}"
                )

    async def safe_cursor(self) -> LogCursor:
        row = await self.conn.fetchrow(QUERIES["safe_cursor"])
        return LogCursor.START if row is None else LogCursor(row[0], row[1])

    async def count(self, after: LogCursor, through: LogCursor) -> int:
        count: int = await self.conn.fetchval(
            QUERIES["events_between"],
            after.transaction_id,
            after.position,
            through.transaction_id,
            through.position,
        )
        return count

    async def build(
        self,
        through: LogCursor,
        *,
        until_position: int | None = None,
        until_time: datetime | None = None,
    ) -> None:
        """Fold the log from where the side tables stand up to ``through``, slice by slice."""
        total = self.events + await self.count(self.cursor, through)
        while self.cursor < through:
            row = await self.conn.fetchrow(
                QUERIES["slice_end"],
                self.cursor.transaction_id,
                self.cursor.position,
                through.transaction_id,
                through.position,
                self.slice_events,
            )
            end = through if row is None else LogCursor(row[0], row[1])
            part = Slice(
                after=self.cursor,
                through=end,
                until_position=until_position,
                until_time=until_time,
            )
            await self._fold(part)
            done = self.slice_events if row is not None else await self.count(self.cursor, end)
            self.events += done
            self.cursor = end
            if self.progress is not None:
                self.progress(min(self.events, total), total)

    async def _fold(self, part: Slice) -> None:
        async with self.conn.transaction():
            await self.conn.execute(
                f"SET LOCAL search_path TO {_quote(self.schema)}, {_quote(self.live_schema)}"
            )
            await self.conn.execute(CUSTOM_PLANS.query)
            for projection in self.projections:
                for op in projection.rebuild(part):
                    await self.conn.execute(op.query, *op.args)

    async def skipped(
        self, projection: Projection, after: LogCursor = LogCursor.START
    ) -> list[asyncpg.Record]:
        """The events after ``after`` up to the side tables' cursor that the rebuild left
        out."""
        op = projection.skipped(Slice(after=after, through=self.cursor))
        async with self.conn.transaction():
            await self.conn.execute(CUSTOM_PLANS.query)
            return await self.conn.fetch(op.query, *op.args)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


async def _exclusive(conn: asyncpg.Connection[Any], name: str) -> None:
    if not await conn.fetchval(QUERIES["replay_lock"], name):
        raise ReplayError("another replay or verify is running")


async def replay(
    conn: asyncpg.Connection[Any],
    projections: Sequence[Projection],
    *,
    progress: Progress | None = None,
    slice_events: int = SLICE_EVENTS,
    connect: Connect | None = None,
    workers: int = 1,
) -> ReplayReport:
    """Rebuild ``projections`` from the log and swap them in (see the module docstring).
    Given ``connect``, the bulk of the rebuild runs on up to ``workers`` connections at once,
    the projections shared out among them."""
    started = time.perf_counter()
    await _exclusive(conn, _LOCK)
    try:
        rebuilder = Rebuilder(
            conn, projections, SIDE_SCHEMA, slice_events=slice_events, progress=progress
        )
        await rebuilder.create()
        through = await rebuilder.safe_cursor()
        if connect is None or workers < 2 or len(rebuilder.projections) < 2:
            await rebuilder.build(through)
        else:
            await _build_in_parallel(rebuilder, through, connect, workers)
        # Catch up with what was written meanwhile, so the live runner has little to redo.
        for _ in range(3):
            newer = await rebuilder.safe_cursor()
            if await rebuilder.count(rebuilder.cursor, newer) < slice_events:
                break
            await rebuilder.build(newer)
        build_seconds = time.perf_counter() - started
        reports = await swap_in(conn, rebuilder, build_seconds)
        seconds = time.perf_counter() - started
        log.info(
            "projections_replayed",
            projections=[p.name for p in projections],
            events=rebuilder.events,
            position=rebuilder.cursor.position,
            seconds=round(seconds, 3),
        )
        return ReplayReport(rebuilder.cursor, rebuilder.events, seconds, reports, SIDE_SCHEMA)
    finally:
        await conn.fetchval(QUERIES["replay_unlock"], _LOCK)


async def _build_in_parallel(
    rebuilder: Rebuilder, through: LogCursor, connect: Connect, workers: int
) -> None:
    """Build ``rebuilder``'s side tables up to ``through`` with its projections shared out
    among ``workers`` connections, each folding the log for its share (the projections' tables
    are their own, so the shares never touch each other's rows). A projection's rebuild is one
    backend's work: on several cores, the whole takes about as long as the largest share, not
    the sum."""
    shares = [rebuilder.projections[i::workers] for i in range(workers)]
    shares = [share for share in shares if share]
    done = [0] * len(shares)
    told = rebuilder.progress

    def tell(i: int) -> Progress:
        def each(events: int, total: int) -> None:
            done[i] = events
            if told is not None:
                told(min(done), total)  # every share folds every event

        return each

    builders: list[Rebuilder] = []
    try:
        for i, share in enumerate(shares):
            builder = Rebuilder(
                await connect(),
                share,
                rebuilder.schema,
                slice_events=rebuilder.slice_events,
                progress=tell(i),
            )
            builder.live_schema, builder.cursor = rebuilder.live_schema, rebuilder.cursor
            builders.append(builder)
        await asyncio.gather(*(builder.build(through) for builder in builders))
    finally:
        for builder in builders:
            await builder.conn.close()
    rebuilder.events += builders[0].events
    rebuilder.cursor = through


async def swap_in(
    conn: asyncpg.Connection[Any], rebuilder: Rebuilder, build_seconds: float = 0.0
) -> list[ProjectionReport]:
    """Swap the rebuilt side tables in for the live ones, in one transaction.

    A live runner may have moved its checkpoint past the side tables' cursor since they were
    built, with a batch that touched none of its tables (so the table locks did not wait for
    it). Setting that checkpoint back would leave the runner ahead of its tables until its next
    batch, and an idle one there for good. So the swap locks the checkpoint rows too (a runner's
    next batch then waits, and finds its checkpoint moved) and first folds the side tables up to
    the furthest of them: every event before a checkpoint is committed, and the gap is small
    (the replay caught up just before)."""
    built = rebuilder.cursor
    skipped = {p.name: await rebuilder.skipped(p) for p in rebuilder.projections}
    live = _quote(rebuilder.live_schema)
    side = _quote(rebuilder.schema)
    retired = _quote(_RETIRED_SCHEMA)
    tables = [t for p in rebuilder.projections for t in p.tables]
    names = [p.name for p in rebuilder.projections]
    # Readers queue behind the swap's lock: wait for it briefly, and try again rather than
    # keep them waiting behind a long batch. A deadlock with the runner's batch is retried too.
    async for attempt in AsyncRetrying(
        retry=retry_if_exception_type(
            (asyncpg.LockNotAvailableError, asyncpg.DeadlockDetectedError)
        ),
        stop=stop_after_attempt(20),
        wait=wait_random(0.05, 0.5),
        reraise=True,
    ):
        with attempt:
            events = rebuilder.events
            try:
                async with conn.transaction():
                    await conn.execute("SET LOCAL lock_timeout = '2s'")
                    listed = ", ".join(f"{live}.{_quote(t)}" for t in tables)
                    await conn.execute(f"LOCK TABLE {listed} IN ACCESS EXCLUSIVE MODE")
                    gap = await _catch_up_with_runners(conn, rebuilder, names)
                    cursor = rebuilder.cursor
                    await conn.execute(f"DROP SCHEMA IF EXISTS {retired} CASCADE")
                    await conn.execute(f"CREATE SCHEMA {retired}")
                    for table in tables:
                        await conn.execute(
                            f"ALTER TABLE {live}.{_quote(table)} SET SCHEMA {retired}"
                        )
                        await conn.execute(f"ALTER TABLE {side}.{_quote(table)} SET SCHEMA {live}")
                    for projection in rebuilder.projections:
                        await conn.execute(
                            RUNNER_QUERIES["checkpoint_put"],
                            projection.name,
                            cursor.transaction_id,
                            cursor.position,
                        )
                        left_out = skipped[projection.name] + gap[projection.name]
                        await _replace_dead_letters(conn, projection.name, cursor, left_out)
                    await conn.execute(f"DROP SCHEMA {retired} CASCADE")
                    await conn.execute(f"DROP SCHEMA {side} CASCADE")
                    for projection in rebuilder.projections:
                        await conn.execute(
                            RUNNER_QUERIES["progress_notify"], PROGRESS_CHANNEL, projection.name
                        )
            except BaseException:
                # The side tables rolled back to where they were built: so does the rebuilder.
                rebuilder.cursor, rebuilder.events = built, events
                raise
    return [
        ProjectionReport(
            p.name, rebuilder.events, build_seconds, len(skipped[p.name]) + len(gap[p.name])
        )
        for p in rebuilder.projections
    ]


async def _catch_up_with_runners(
    conn: asyncpg.Connection[Any], rebuilder: Rebuilder, names: list[str]
) -> dict[str, list[asyncpg.Record]]:
    """Lock the projections' checkpoints (in the swap's transaction) and fold the side tables
    up to the furthest of them; the events the gap's rebuild left out, by projection."""
    rows = await conn.fetch(QUERIES["checkpoints_lock"], names)
    ahead = max([LogCursor(r["transaction_id"], r["position"]) for r in rows], default=None)
    gap: dict[str, list[asyncpg.Record]] = {name: [] for name in names}
    if ahead is None or ahead <= rebuilder.cursor:
        return gap
    start = rebuilder.cursor
    search_path = await conn.fetchval("SELECT current_setting('search_path')")
    await rebuilder.build(ahead)
    # The slices set the side schema first for the rest of this transaction: set it back.
    await conn.execute("SELECT set_config('search_path', $1, true)", search_path)
    for projection in rebuilder.projections:
        gap[projection.name] = await rebuilder.skipped(projection, after=start)
    log.info("replay_caught_up_with_runners", position=ahead.position)
    return gap


async def _replace_dead_letters(
    conn: asyncpg.Connection[Any],
    name: str,
    cursor: LogCursor,
    skipped: list[asyncpg.Record],
) -> None:
    cleared = await conn.fetch(
        QUERIES["dead_letters_clear"], name, cursor.transaction_id, cursor.position
    )
    errors = {(r["account_id"], r["position"]): r["error"] for r in cleared}
    await conn.executemany(
        QUERIES["dead_letter_put"],
        [
            (
                r["account_id"],
                name,
                r["position"],
                r["transaction_id"],
                r["event_id"],
                r["stream"],
                r["type"],
                errors.get((r["account_id"], r["position"]), DEAD_LETTER_ERROR),
            )
            for r in skipped
        ],
    )


async def copy_at(
    conn: asyncpg.Connection[Any],
    projections: Sequence[Projection],
    schema: str,
    *,
    until_position: int | None = None,
    until_time: datetime | None = None,
    progress: Progress | None = None,
    slice_events: int = SLICE_EVENTS,
) -> ReplayReport:
    """Build the projections as they stood at a position or a time into ``schema``, for
    inspection; the live tables are not touched. A schema of that name is replaced only if
    it is such a copy."""
    if not _NAME.match(schema) or schema in (SIDE_SCHEMA, _RETIRED_SCHEMA):
        raise ReplayError(f"{schema!r} is not a plain schema name (lower case, digits, _)")
    started = time.perf_counter()
    comment = await conn.fetchrow(QUERIES["schema_comment"], schema)
    if comment is not None and comment[0] != _COPY_MARK:
        raise ReplayError(f"schema {schema!r} exists and is not a point-in-time copy")
    rebuilder = Rebuilder(conn, projections, schema, slice_events=slice_events, progress=progress)
    await rebuilder.create(mark=_COPY_MARK)
    through = await rebuilder.safe_cursor()
    await rebuilder.build(through, until_position=until_position, until_time=until_time)
    seconds = time.perf_counter() - started
    reports = [ProjectionReport(p.name, rebuilder.events, seconds, 0) for p in projections]
    log.info(
        "projections_copied",
        schema=schema,
        until_position=until_position,
        until_time=until_time.isoformat() if until_time else None,
        seconds=round(seconds, 3),
    )
    return ReplayReport(rebuilder.cursor, rebuilder.events, seconds, reports, schema)


async def verify(
    conn: asyncpg.Connection[Any],
    projections: Sequence[Projection],
    *,
    progress: Progress | None = None,
    slice_events: int = SLICE_EVENTS,
    attempts: int = 20,
) -> VerifyReport:
    """Rebuild ``projections`` in side tables and compare them with the live ones, each at its
    live checkpoint (the service may run meanwhile, or not)."""
    started = time.perf_counter()
    await _exclusive(conn, _LOCK)
    try:
        common = Rebuilder(
            conn, projections, SIDE_SCHEMA, slice_events=slice_events, progress=progress
        )
        await common.create()
        # As far as every projection has come: each is then brought to its own checkpoint.
        await common.build(min([await _checkpoint(conn, p.name) for p in projections]))
        differences: list[TableDifference] = []
        for projection in projections:
            one = Rebuilder(conn, [projection], SIDE_SCHEMA, slice_events=slice_events)
            one.live_schema, one.cursor, one.events = common.live_schema, common.cursor, 0
            differences += await _compare(conn, one, projection, attempts)
        await conn.execute(f"DROP SCHEMA {_quote(SIDE_SCHEMA)} CASCADE")
        tables = sum(len(p.tables) for p in projections)
        return VerifyReport(differences, tables, time.perf_counter() - started)
    finally:
        await conn.fetchval(QUERIES["replay_unlock"], _LOCK)


async def _compare(
    conn: asyncpg.Connection[Any], rebuilder: Rebuilder, projection: Projection, attempts: int
) -> list[TableDifference]:
    """Compare once the side tables stand exactly where the live checkpoint does: they follow
    the live runner's checkpoint (it only moves forward), then one read-only snapshot reads the
    checkpoint and compares (the runner moves rows and checkpoint together)."""
    for _ in range(attempts):
        live = await _checkpoint(conn, projection.name)
        if live > rebuilder.cursor:
            await rebuilder.build(live)
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            if await _checkpoint(conn, projection.name) != rebuilder.cursor:
                continue
            return [
                difference
                for table in projection.tables
                if (difference := await _difference(conn, rebuilder, projection, table))
            ]
    raise ReplayError(
        f"projection {projection.name!r} kept moving: could not compare it at one position"
    )


async def _checkpoint(conn: asyncpg.Connection[Any], name: str) -> LogCursor:
    row = await conn.fetchrow(RUNNER_QUERIES["checkpoint_get"], name)
    return LogCursor.START if row is None else LogCursor(row[0], row[1])


async def _difference(
    conn: asyncpg.Connection[Any], rebuilder: Rebuilder, projection: Projection, table: str
) -> TableDifference | None:
    live = f"{_quote(rebuilder.live_schema)}.{_quote(table)}"
    side = f"{_quote(rebuilder.schema)}.{_quote(table)}"
    row = await conn.fetchrow(
        f"""
        WITH only_live AS (SELECT * FROM {live} EXCEPT ALL SELECT * FROM {side}),
             only_side AS (SELECT * FROM {side} EXCEPT ALL SELECT * FROM {live})
        SELECT (SELECT count(*) FROM only_live) AS only_live,
               (SELECT count(*) FROM only_side) AS only_side,
               ARRAY(SELECT DISTINCT account_id FROM (
                   SELECT account_id FROM only_live UNION SELECT account_id FROM only_side
               ) a ORDER BY account_id LIMIT 10) AS accounts
        """
    )
    assert row is not None
    if row["only_live"] == 0 and row["only_side"] == 0:
        return None
    return TableDifference(
        projection.name, table, row["only_live"], row["only_side"], list(row["accounts"])
    )
