"""Deleting an account's watch history (product rule 10) and its watch state and ratings
(rule 11): read the account's watch stream, decide (:mod:`projections.domain.deletions`), then
in one transaction append what is kept and purge with the tombstone — the store's sanctioned
purge, expecting the stream's version, so an action recorded meanwhile can neither escape the
purge nor precede the tombstone (the whole is decided again) — and answer once the projections
have applied it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import structlog

from eventstore import ConcurrencyConflict, EventStore, RecordedEvent
from eventstore.database import Connection
from projections import domain
from projections.domain.deletions import Deletion, delete_history, delete_state
from services.sql import QUERIES

from .accounts import AccountService
from .progress import Settle

log = structlog.get_logger(__name__)

_ATTEMPTS = 5
_PAGE = 5000


class Deletions:
    def __init__(self, store: EventStore, accounts: AccountService, settle: Settle) -> None:
        self.store = store
        self.accounts = accounts
        self.settle = settle

    async def delete_history(self, account: domain.Account) -> int:
        """Remove every watched and unwatched record of the account; how many."""
        return await self._delete(account, lambda _, events: delete_history(events))

    async def delete_state(self, account: domain.Account) -> int:
        """Remove the account's watch state and every rating (sync must be off: raises
        :class:`~projections.domain.deletions.SyncEnabled`); how many titles had a state."""
        return await self._delete(account, delete_state, locked=True)

    async def _delete(
        self,
        account: domain.Account,
        decide: Callable[[domain.Account, Sequence[RecordedEvent]], Deletion],
        *,
        locked: bool = False,
    ) -> int:
        stream = domain.watch_stream(account.id)
        for _ in range(_ATTEMPTS):
            events = await self._read(stream)
            deletion = decide(account, events)
            version = events[-1].version if events else 0
            try:
                async with self.store.pool.acquire() as conn, conn.transaction():
                    if locked and not await self._still(conn, account):
                        raise ConcurrencyConflict(domain.account_stream(account.id), None, None)
                    kept = [domain.registry.new(e) for e in deletion.kept]
                    if kept:
                        await self.store.append(stream, kept, expected_version=version, conn=conn)
                    result = await self.store.purge(
                        stream,
                        deletion.purge,
                        domain.registry.new(deletion.tombstone),
                        expected_version=version + len(kept),
                        conn=conn,
                    )
            except ConcurrencyConflict:
                reloaded = await self.accounts.load(account.id)
                assert reloaded is not None, "an account's stream never loses its creation"
                account = reloaded
                continue
            self.store.notify_appended()
            log.info(
                "account_deleted",
                account=account.id,
                what=deletion.tombstone.event_type,
                removed=result.deleted,
                deleted=deletion.deleted,
            )
            await self.settle(result.tombstone_cursor)
            return deletion.deleted
        raise domain.AccountBusy("the account changed too often meanwhile; try again")

    async def _read(self, stream: str) -> list[RecordedEvent]:
        events: list[RecordedEvent] = []
        while True:
            after = events[-1].version if events else 0
            page = await self.store.read_stream(stream, after_version=after, limit=_PAGE)
            events += page
            if len(page) < _PAGE:
                return events

    async def _still(self, conn: Connection, account: domain.Account) -> bool:
        """Whether the account is still as decided on, holding it so until this transaction
        ends: every change of an account writes its snapshot row, so a share lock on the row
        keeps sync from being turned on under a state deletion."""
        version = await conn.fetchval(QUERIES["account_snapshot_hold"], account.id)
        return bool(version == account.version)
