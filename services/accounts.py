"""Account commands and queries: create, settings, actions, state, history.

Commands are decided on the account's own stream (its aggregate) and appended to the log;
queries read the projections.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
import structlog

from eventstore import ConcurrencyConflict, Event, EventStore, LogCursor, NewEvent
from eventstore.database import Connection
from projections import domain
from projections.domain import Account, GuidRejected
from projections.runner import QUERIES as PROJECTION_QUERIES

from . import wire
from .auth import QUERIES, new_token
from .errors import ApiError, invalid

log = structlog.get_logger(__name__)

FUTURE_TOLERANCE = timedelta(minutes=5)
_DECISION_ATTEMPTS = 5


def encode_cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(value)).decode().rstrip("=")


def decode_cursor(cursor: str, type_: type[Any]) -> Any:
    """The value of a cursor this API issued; 422 for anything else (a forged one, too: its
    every part must be something the database can hold)."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = msgspec.json.decode(raw, type=type_)
    except (binascii.Error, ValueError, UnicodeDecodeError, msgspec.DecodeError):
        value = None
    if value is None or not _cursor_part_ok(value):
        raise invalid("cursor", "not a cursor this API issued")
    return value


def _cursor_part_ok(value: Any) -> bool:
    if isinstance(value, tuple | list):
        return all(_cursor_part_ok(part) for part in value)
    if isinstance(value, str):
        return wire.storable(value)
    if isinstance(value, bool):
        return True
    if isinstance(value, int):
        return 0 <= value <= wire.MAX_BIGINT
    if isinstance(value, datetime):
        try:
            value.astimezone(UTC)
        except OverflowError:
            return False
    return True


Settle = Callable[[LogCursor], Awaitable[None]]


async def _no_wait(cursor: LogCursor) -> None:
    return None


class AccountService:
    def __init__(
        self, store: EventStore, pool: asyncpg.Pool[Any], settle: Settle = _no_wait
    ) -> None:
        self.store = store
        self.pool = pool
        # Waits until the projections have applied an event: a write answers only once what
        # it wrote can be read back (read-your-writes).
        self.settle = settle

    # -- the account aggregate ----------------------------------------------------------------
    #
    # An account's decided state is its stream's fold, kept as a snapshot row written in the
    # same transaction as the events that change it: loading an account (every authenticated
    # request, every decision) reads one row, however long its stream has grown.

    async def load(self, account_id: str) -> Account | None:
        """The account as its stream tells it (None: no such account)."""
        if not domain.ACCOUNT_ID.match(account_id):
            return None
        row = await self.pool.fetchrow(QUERIES["account_snapshot_get"], account_id)
        assert row is not None
        return (await self._accounts([row])).get(account_id)

    async def load_many(self, account_ids: Collection[str]) -> dict[str, Account]:
        """The accounts that exist among ``account_ids``, by id, in one query."""
        ids = sorted({a for a in account_ids if domain.ACCOUNT_ID.match(a)})
        if not ids:
            return {}
        return await self._accounts(await self.pool.fetch(QUERIES["account_snapshots_get"], ids))

    async def _accounts(self, rows: Sequence[asyncpg.Record]) -> dict[str, Account]:
        """The accounts of snapshot rows, refreshing those behind their streams."""
        accounts: dict[str, Account] = {}
        for row in rows:
            if row["stream_version"] is None:
                continue  # no such account
            snapshot = _snapshot(row)
            if snapshot is None or snapshot.version < row["stream_version"]:
                snapshot = await self._refresh(row["account_id"], snapshot)
            if snapshot is not None:
                accounts[snapshot.id] = snapshot
        return accounts

    async def _refresh(self, account_id: str, snapshot: Account | None) -> Account | None:
        """Fold the events a snapshot lacks (all of them without one), and store the result.
        Rare: snapshots are written with their events; this covers a snapshot of an older fold
        version, and events appended by other means."""
        stream = domain.account_stream(account_id)
        after = 0 if snapshot is None else snapshot.version
        account = snapshot
        while True:
            events = await self.store.read_stream(stream, after_version=after, limit=_FOLD_PAGE)
            account = domain.fold_account(events, account)
            if len(events) < _FOLD_PAGE:
                break
            after = events[-1].version
        if account is not None:
            await _save_snapshot(self.pool, account)
        return account

    async def create(self, body: wire.CreateAccount) -> wire.CreatedAccount:
        token, digest = new_token("account", body.id)
        event = domain.AccountCreated(
            account_id=body.id, kind=body.kind, name=body.name, token_hash=digest
        )
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                [result] = await self.store.append(
                    domain.account_stream(body.id),
                    [domain.registry.new(event)],
                    expected_version=0,
                    conn=conn,
                )
                account = domain.evolve(None, event, result.version)
                assert account is not None
                await _save_snapshot(conn, account)
        except ConcurrencyConflict:
            raise ApiError(409, "account_exists", f"account {body.id!r} exists") from None
        self.store.notify_appended()
        log.info("account_created", account=body.id, kind=body.kind)
        return wire.CreatedAccount(id=body.id, kind=body.kind, name=body.name, token=token)

    async def me(self, account: Account) -> wire.Me:
        row = await self.pool.fetchrow(PROJECTION_QUERIES["profile_counts"], account.id)
        assert row is not None
        return wire.Me(
            id=account.id,
            kind=account.kind,
            name=account.name,
            sync_enabled=account.sync_enabled,
            visibility=account.visibility,
            counts=wire.Counts(movies=row["movies"], episodes=row["episodes"]),
        )

    async def decide(
        self,
        account: Account,
        decision: Callable[[Account], list[Event]],
        *,
        within: Callable[[Connection], Awaitable[None]] | None = None,
    ) -> tuple[Account, LogCursor | None]:
        """Append what ``decision`` makes of the account (its events; [] for nothing), with
        optimistic concurrency on the account's stream: when another change lands first,
        reload and decide again. ``within`` runs first in the same transaction (it may raise
        to abort). The account afterwards, and the cursor of the last event appended (None:
        nothing was)."""
        for _ in range(_DECISION_ATTEMPTS):
            events = decision(account)
            if not events:
                return account, None
            try:
                async with self.pool.acquire() as conn, conn.transaction():
                    if within is not None:
                        await within(conn)
                    appended = await self.store.append(
                        domain.account_stream(account.id),
                        [domain.registry.new(e) for e in events],
                        expected_version=account.version,
                        conn=conn,
                    )
                    decided: Account | None = account
                    for event, result in zip(events, appended, strict=True):
                        decided = domain.evolve(decided, event, result.version)
                    assert decided is not None
                    await _save_snapshot(conn, decided)
            except ConcurrencyConflict:
                account = await self._reload(account.id)
                continue
            self.store.notify_appended()
            log.info("account_changed", account=account.id, events=[e.event_type for e in events])
            return decided, appended[-1].cursor
        raise ApiError(409, "conflict", "the account changed too often meanwhile; try again")

    async def _reload(self, account_id: str) -> Account:
        account = await self.load(account_id)
        assert account is not None, "an account's stream never loses its creation"
        return account

    async def update_settings(
        self, account: Account, patch: wire.PatchMe
    ) -> tuple[Account, LogCursor | None]:
        """Apply a settings change (see :meth:`decide` for what comes back)."""

        def changes(account: Account) -> list[Event]:
            events: list[Event] = []
            if (
                patch.sync_enabled is not msgspec.UNSET
                and patch.sync_enabled != account.sync_enabled
            ):
                if patch.sync_enabled and account.kind == "managed":
                    raise ApiError(403, "managed_account", "managed accounts cannot turn sync on")
                events.append(domain.SyncChanged(enabled=patch.sync_enabled))
            if patch.visibility is not msgspec.UNSET and patch.visibility != account.visibility:
                events.append(domain.VisibilityChanged(visibility=patch.visibility))
            return events

        return await self.decide(account, changes)

    # -- actions ------------------------------------------------------------------------------

    async def record_actions(
        self, account: Account, actions: Sequence[wire.Action], now: datetime | None = None
    ) -> list[wire.Result]:
        """Record an account's own actions (always, sync on or off); one result per action,
        in order. Accepted actions are appended in one transaction."""
        now = now or datetime.now(UTC)
        decisions = [decide_action(account.id, action, now) for action in actions]
        results, cursor = await record(self.store, account.id, decisions)
        if cursor is not None:
            await self.settle(cursor)
        return results

    # -- reads --------------------------------------------------------------------------------

    async def state_page(self, account_id: str, query: wire.StateQuery) -> wire.StatePage:
        after = decode_cursor(query.cursor, str) if query.cursor else ""
        rows = await self.pool.fetch(
            PROJECTION_QUERIES["state_page"],
            account_id,
            after,
            query.watched,
            query.kind,
            query.updated_after,
            query.limit + 1,
        )
        items = [_state(row) for row in rows[: query.limit]]
        more = len(rows) > query.limit
        return wire.StatePage(items, encode_cursor(items[-1].guid) if more else None)

    async def state_one(self, account_id: str, guid: str) -> wire.State | None:
        row = await self.pool.fetchrow(PROJECTION_QUERIES["state_one"], account_id, guid)
        return None if row is None else _state(row)

    async def history_page(self, account_id: str, query: wire.HistoryQuery) -> wire.HistoryPage:
        before_at, before_position = (
            decode_cursor(query.cursor, tuple[datetime, int]) if query.cursor else (_END_OF_TIME, 0)
        )
        rows = await self.pool.fetch(
            PROJECTION_QUERIES["history_page"],
            account_id,
            query.guid,
            before_at,
            before_position,
            query.limit + 1,
        )
        page = rows[: query.limit]
        items = [wire.HistoryItem(r["event_id"], r["guid"], r["type"], r["at"]) for r in page]
        more = len(rows) > query.limit
        cursor = encode_cursor((page[-1]["at"], page[-1]["position"])) if more else None
        return wire.HistoryPage(items, cursor)


_FOLD_PAGE = 1000
_snapshot_encoder = msgspec.json.Encoder()
_snapshot_decoder = msgspec.json.Decoder(Account)


def _snapshot(row: asyncpg.Record) -> Account | None:
    """The stored snapshot of a row, if there is one of this fold version."""
    if row["state"] is None or row["fold"] != domain.ACCOUNT_FOLD_VERSION:
        return None
    return _snapshot_decoder.decode(row["state"])


async def _save_snapshot(conn: Connection | asyncpg.Pool[Any], account: Account) -> None:
    await conn.execute(
        QUERIES["account_snapshot_put"],
        account.id,
        account.version,
        domain.ACCOUNT_FOLD_VERSION,
        msgspec.Raw(_snapshot_encoder.encode(account)),
    )


# A history cursor before every record: later than any `at` the API accepts.
_END_OF_TIME = datetime(9999, 1, 1, tzinfo=UTC)


def _state(row: asyncpg.Record) -> wire.State:
    return wire.State(
        guid=row["guid"],
        watched=row["watched"],
        watched_at=row["watched_at"],
        rating=row["rating"],
        rated_at=row["rated_at"],
        updated_at=row["updated_at"],
    )


async def record(
    store: EventStore, account_id: str, decisions: Sequence[NewEvent | wire.Rejected]
) -> tuple[list[wire.Result], LogCursor | None]:
    """Append the accepted events of one account in one transaction; a result per decision,
    in order (the same event twice in one batch: the second is a duplicate), and the newest
    tailing cursor among them (None: nothing was accepted)."""
    results: list[wire.Result | None] = []
    to_append: list[NewEvent] = []
    slots: list[int] = []  # results index of each event to append
    seen: set[Any] = set()
    for decided in decisions:
        if isinstance(decided, wire.Rejected):
            results.append(decided)
        elif seen & decided.keys:
            results.append(wire.Duplicate())
        else:
            seen |= decided.keys
            slots.append(len(results))
            results.append(None)
            to_append.append(decided)
    cursor: LogCursor | None = None
    if to_append:
        appended = await store.append(domain.watch_stream(account_id), to_append)
        for slot, result in zip(slots, appended, strict=True):
            results[slot] = wire.Duplicate() if result.duplicate else wire.Recorded(result.position)
        cursor = max(result.cursor for result in appended)
    final = [r for r in results if r is not None]
    assert len(final) == len(decisions)
    return final, cursor


def decide_action(account_id: str, action: wire.Action, now: datetime) -> NewEvent | wire.Rejected:
    """The event an account's own action becomes, or why it is rejected."""
    return decide(account_id, action.type, action.guid, action.at, action.rating, now, action.id)


def decide(
    account_id: str,
    action: str,
    guid: str,
    at: datetime | None,
    rating: int | None,
    now: datetime,
    client_id: Any = None,
    *,
    edition: str | None = None,
    baseline: bool = False,
) -> NewEvent | wire.Rejected:
    """The event a watch action becomes, or why it is not synced: the title's checks in the
    contract's order (music, unsupported GUID, edition, in-progress, rating, time)."""
    try:
        _, guid = domain.classify_guid(guid)
    except GuidRejected as rejected:
        return wire.Rejected(rejected.code)
    if edition:
        return wire.Rejected("edition_not_synced")
    if action == "progress":
        return wire.Rejected("in_progress_not_synced")
    rating_ok = rating is None or 1 <= rating <= 10
    if (action == "rated") != (rating is not None) or not rating_ok:
        return wire.Rejected("invalid_rating")
    at = domain.to_utc(at) if at is not None else now
    if at > now + FUTURE_TOLERANCE:
        return wire.Rejected("at_in_future")
    event: domain.WatchAction
    if rating is not None:  # and so action == "rated"
        event = domain.Rated(guid=guid, at=at, rating=rating, baseline=baseline)
    else:
        event = domain.UNRATED_ACTIONS[action](guid=guid, at=at, baseline=baseline)
    # Two keys: the client's id (a retry of the same request, even with another `at`), and
    # the natural key (the same action reported again: a retry without an id, or a server
    # echoing a change it was sent — including one first made with a client id).
    natural = domain.natural_event_id(account_id, guid, action, at, rating)
    new = domain.registry.new(event, event_id=client_id or natural)
    return msgspec.structs.replace(new, idempotency_key=natural)
