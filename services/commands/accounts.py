"""Account commands: create an account, change its settings, record its own actions; and the
account aggregate they are decided on (loaded from a snapshot of its stream).

Each command loads the account, lets a pure decision of :mod:`projections.domain` make the
events (or refuse with a :class:`~projections.domain.DomainError`), appends them with
optimistic concurrency on the account's stream, and waits for the projections before it
answers (read-your-writes).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec
import structlog

from eventstore import ConcurrencyConflict, Event, EventStore, LogCursor
from eventstore.database import Connection
from projections import domain
from projections.domain import Account, AccountKind, ReportedAction, Visibility
from services.sql import QUERIES

from .actions import Outcome, record
from .progress import Settle, no_wait
from .tokens import new_token

log = structlog.get_logger(__name__)

_DECISION_ATTEMPTS = 5
_FOLD_PAGE = 1000


class AccountService:
    def __init__(
        self,
        store: EventStore,
        pool: asyncpg.Pool[Any],
        settle: Settle = no_wait,
        settle_actions: Settle | None = None,
    ) -> None:
        self.store = store
        self.pool = pool
        # Waits until the projections have applied an event: a write answers only once what
        # it wrote can be read back (read-your-writes). Watch actions wait for the projections
        # their writer reads back (see services.commands.progress.ACTION_PROJECTIONS).
        self.settle = settle
        self.settle_actions = settle if settle_actions is None else settle_actions

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
        nothing was). A decision's refusal (a domain error) propagates; :class:`AccountBusy`
        when the account kept changing."""
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
        raise domain.AccountBusy("the account changed too often meanwhile; try again")

    async def _reload(self, account_id: str) -> Account:
        account = await self.load(account_id)
        assert account is not None, "an account's stream never loses its creation"
        return account

    # -- commands -----------------------------------------------------------------------------

    async def create(self, account_id: str, kind: AccountKind, name: str) -> tuple[Account, str]:
        """A new account, and its bearer token (which is not kept: only its hash is); raises
        :class:`~projections.domain.AccountExists` when the id is taken."""
        token, digest = new_token("account", account_id)
        event = domain.AccountCreated(
            account_id=account_id, kind=kind, name=name, token_hash=digest
        )
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                [result] = await self.store.append(
                    domain.account_stream(account_id),
                    [domain.registry.new(event)],
                    expected_version=0,
                    conn=conn,
                )
                account = domain.evolve(None, event, result.version)
                assert account is not None
                await _save_snapshot(conn, account)
        except ConcurrencyConflict:
            raise domain.AccountExists(f"account {account_id!r} exists") from None
        self.store.notify_appended()
        log.info("account_created", account=account_id, kind=kind)
        return account, token

    async def replace_token(self, account: Account) -> str:
        """A new bearer token for the account (which is not kept: only its hash is); the old
        one stops working as this returns, in every process (requests read the account's
        stream, which now ends with the new hash)."""
        token, digest = new_token("account", account.id)
        await self.decide(account, lambda _: [domain.TokenReplaced(token_hash=digest)])
        log.info("account_token_replaced", account=account.id)
        return token

    async def change_settings(
        self,
        account: Account,
        *,
        sync_enabled: bool | None = None,
        visibility: Visibility | None = None,
    ) -> Account:
        """Turn sync on or off, set the profile's visibility (None: unchanged); the account
        afterwards. Servers' queues are filled (sync on) or emptied (sync off) before it
        returns."""

        def changes(account: Account) -> list[Event]:
            return domain.change_settings(account, sync_enabled=sync_enabled, visibility=visibility)

        updated, cursor = await self.decide(account, changes)
        if cursor is not None:
            await self.settle(cursor)
        return updated

    async def record_actions(
        self, account: Account, actions: Sequence[ReportedAction], now: datetime | None = None
    ) -> list[Outcome]:
        """Record an account's own actions (always, sync on or off); one outcome per action,
        in order. Accepted actions are appended in one transaction."""
        now = now or datetime.now(UTC)
        decisions = [domain.decide_action(account.id, action, now) for action in actions]
        outcomes, cursor = await record(self.store, account.id, decisions)
        if cursor is not None:
            await self.settle_actions(cursor)
        return outcomes


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
