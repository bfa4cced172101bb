"""Media server commands: registration and access, server-reported actions, the delivery of
changes (a server's long-poll on its queue); and the server registry, whose one owner this
module is.

Privacy (product rule 2): a server's identity authorises its request and is then forgotten.
Its events are stored exactly as the account's own actions are; nothing in the log or a
projection says which server (if any) an action came from.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec
import structlog

from eventstore import Event, EventStore, NewEvent
from eventstore.database import CONNECTION_BROKEN, Connection
from projections import domain, queues
from projections.domain import Account, ReportedAction
from projections.queues import QueueWakeups
from projections.runner import QUERIES as PROJECTION_QUERIES
from services.sql import QUERIES

from .accounts import AccountService
from .actions import Outcome, record_many
from .tokens import new_token

log = structlog.get_logger(__name__)

_INTERRUPTIONS: tuple[type[BaseException], ...] = (*CONNECTION_BROKEN, asyncpg.PostgresError)


class ServerRecord(msgspec.Struct, frozen=True):
    """A server of the registry."""

    id: str
    owner: str
    name: str
    version: str
    token_hash: str


class ServerSummary(msgspec.Struct, frozen=True):
    """A server as an account with access to it (or an offer of it) sees it."""

    id: str
    name: str
    owner: str
    version: str


class ServerReport(msgspec.Struct, frozen=True):
    """A server's report of one account's action."""

    account: str
    action: ReportedAction


class StateChange(msgspec.Struct, frozen=True):
    """A title's current state for the account when delivered (all None: no state)."""

    account: str
    guid: str  # the title's guid (rule 1b)
    ids: list[str]  # every id of the title, its guid first
    watched: bool | None
    watched_at: datetime | None
    rating: int | None
    rated_at: datetime | None


class BaselineRequest(msgspec.Struct, frozen=True):
    """The server is asked for a baseline of what the account watched."""

    account: str


Change = StateChange | BaselineRequest


class ServerService:
    def __init__(
        self,
        store: EventStore,
        pool: asyncpg.Pool[Any],
        accounts: AccountService,
        wakeups: QueueWakeups,
    ) -> None:
        self.store = store
        self.pool = pool
        self._accounts = accounts
        self._load_account = accounts.load
        self._settle = accounts.settle
        self.wakeups = wakeups

    async def token_hash(self, server_id: str) -> str | None:
        server = await self.get(server_id)
        return None if server is None else server.token_hash

    async def get(self, server_id: str) -> ServerRecord | None:
        if not domain.SERVER_ID.match(server_id):
            return None  # not a server id (a token's claim, a path): no query
        row = await self.pool.fetchrow(QUERIES["server_get"], server_id)
        return None if row is None else _server(row)

    async def require(self, server_id: str) -> ServerRecord:
        """The server; raises :class:`~projections.domain.UnknownServer` when there is none."""
        server = await self.get(server_id)
        if server is None:
            raise domain.UnknownServer(f"no server {server_id!r}")
        return server

    # -- registration and access --------------------------------------------------------------

    async def register(
        self, owner_id: str, server_id: str, name: str, version: str
    ) -> tuple[ServerRecord, str]:
        """Register a server owned by ``owner_id``; the registry's record and the server's
        bearer token (which is not kept: only its hash is)."""
        token, digest = new_token("server", server_id)
        events = domain.register_server(server_id, name, version, digest)
        owner = await self._load_account(owner_id)
        if owner is None:
            raise domain.UnknownOwner(f"no account {owner_id!r}")

        async def add_to_registry(conn: Connection) -> None:
            # The registry row and the owner's event commit together: ids stay unique, the
            # token works at once, and the log still says everything.
            added = await conn.fetchval(
                QUERIES["server_add"], server_id, owner.id, name, version, digest
            )
            if added is None:
                raise domain.ServerExists(f"server {server_id!r} is registered")

        _, cursor = await self._accounts.decide(owner, lambda _: events, within=add_to_registry)
        assert cursor is not None
        await self._settle(cursor)
        log.info("server_registered", server=server_id, owner=owner.id)
        return ServerRecord(server_id, owner.id, name, version, digest), token

    async def replace_token(self, server: ServerRecord) -> str:
        """A new bearer token for the server (not kept: only its hash is); the old one stops
        working as this returns: the registry's row changes in the transaction that appends
        the owner's event."""
        token, digest = new_token("server", server.id)
        owner = await self._load_account(server.owner)
        if owner is None:
            raise domain.UnknownOwner(f"no account {server.owner!r}")

        async def set_hash(conn: Connection) -> None:
            status = await conn.execute(QUERIES["server_token_set"], server.id, owner.id, digest)
            if status != "UPDATE 1":
                raise domain.UnknownServer(f"no server {server.id!r} of {owner.id!r}")

        await self._accounts.decide(
            owner,
            lambda account: domain.replace_server_token(account.owned_servers, server.id, digest),
            within=set_hash,
        )
        log.info("server_token_replaced", server=server.id, owner=owner.id)
        return token

    async def accounts_of(self, server: ServerRecord) -> list[str]:
        """The accounts with access to the server (its owner included), sorted."""
        rows = await self.pool.fetch(PROJECTION_QUERIES["server_accounts"], server.id)
        return sorted({server.owner, *(row["account_id"] for row in rows)})

    async def set_access(self, server: ServerRecord, account_id: str, offered: bool) -> None:
        """The owner offers the server to an account, or withdraws the offer / revokes the
        access (idempotent). An offer takes effect when the account accepts it."""
        account = await self._load_account(account_id)
        if account is None:
            raise domain.UnknownAccount(f"no account {account_id!r}")
        decision = domain.offer_access if offered else domain.withdraw_access
        await self._change_access(account, server.id, decision)

    async def accept(self, account: Account, server_id: str) -> None:
        """The account accepts the owner's offer of a server (idempotent)."""
        server = await self.require(server_id)
        await self._change_access(account, server.id, domain.accept_access)

    async def leave(self, account: Account, server_id: str) -> None:
        """The account declines the offer of a server, or leaves it (idempotent)."""
        server = await self.require(server_id)
        await self._change_access(account, server.id, domain.leave_access)

    async def _change_access(
        self, account: Account, server_id: str, decision: Callable[[Account, str], list[Event]]
    ) -> None:
        _, cursor = await self._accounts.decide(account, lambda a: decision(a, server_id))
        if cursor is not None:
            log.info("server_access_changed", server=server_id, account=account.id)
            # An acceptance's backfill (or the drop of a revocation) is queued before we answer.
            await self._settle(cursor)

    async def servers_of(self, account: Account) -> tuple[list[ServerSummary], list[ServerSummary]]:
        """The servers with access to the account (owned, or shared and accepted), and those
        offered to it, each sorted by id."""
        ids = sorted(account.servers | account.offered_servers)
        rows = {r["server_id"]: r for r in await self.pool.fetch(QUERIES["servers_get"], ids)}

        def summaries(ids: frozenset[str]) -> list[ServerSummary]:
            return [
                ServerSummary(r["server_id"], r["name"], r["owner"], r["version"])
                for r in (rows[i] for i in sorted(ids) if i in rows)
            ]

        return summaries(account.servers), summaries(account.offered_servers)

    # -- server-reported actions --------------------------------------------------------------

    async def ingest(
        self, server_id: str, reports: Sequence[ServerReport], now: datetime | None = None
    ) -> list[Outcome]:
        """A server's batch: an outcome per report, in order. The accepted events of all its
        accounts are appended in one transaction (one commit, however many accounts)."""
        now = now or datetime.now(UTC)
        accounts = await self._accounts.load_many({report.account for report in reports})
        by_account: dict[str, list[int]] = {}
        decided: dict[str, list[NewEvent | domain.Rejected]] = {}
        for i, report in enumerate(reports):
            by_account.setdefault(report.account, []).append(i)
            decided.setdefault(report.account, []).append(
                domain.decide_server_action(
                    accounts.get(report.account), server_id, report.action, now
                )
            )
        recorded, newest = await record_many(self.store, decided)
        outcomes: dict[int, Outcome] = {}
        for account_id, indexes in by_account.items():
            outcomes.update(zip(indexes, recorded[account_id], strict=True))
        if newest is not None:
            await self._accounts.settle_actions(newest)
        return [outcomes[i] for i in range(len(reports))]

    # -- delivery -----------------------------------------------------------------------------

    async def changes(
        self, server_id: str, *, after: int | None, limit: int, wait: float
    ) -> tuple[list[Change], int]:
        """Pending changes after sequence number ``after`` (which acknowledges everything up
        to it; None: nothing yet), at most ``limit``; with ``wait`` (seconds), hold until one
        arrives or the time is up. The changes, and the sequence number to pass next."""
        if after is None:
            after = 0
        else:
            await queues.acknowledge(self.pool, server_id, after)
        deadline = time.monotonic() + wait
        wakeups = self.wakeups.for_server(server_id)
        while True:
            generation = wakeups.generation
            rows = await queues.pending(self.pool, server_id, after, limit)
            remaining = deadline - time.monotonic()
            if rows or remaining <= 0 or self.wakeups.closing:
                break
            await wakeups.wait(generation, remaining)
        changes = [_change(row) for row in rows]
        return changes, rows[-1]["seq"] if rows else after


async def restore_registration(
    conn: Connection, owner: str, registered: domain.ServerRegistered
) -> None:
    """The registry row of a server registered in an imported event, in the import's
    transaction, exactly as registration writes it (so its token works); ValueError when the
    id is registered to another account here."""
    server = registered.server_id
    added = await conn.fetchval(
        QUERIES["server_add"],
        server,
        owner,
        registered.name,
        registered.version,
        registered.token_hash,
    )
    if added is None:
        row = await conn.fetchrow(QUERIES["server_get"], server)
        if row is None or row["owner"] != owner:
            raise ValueError(f"server {server!r} is registered to another account here")


async def restore_token(conn: Connection, owner: str, replaced: domain.ServerTokenReplaced) -> None:
    """A server's new token from an imported event, in the import's transaction, as
    :meth:`ServerService.replace_token` writes it; ValueError when the server is not
    registered to ``owner`` here (its registration comes first in the owner's stream)."""
    status = await conn.execute(
        QUERIES["server_token_set"], replaced.server_id, owner, replaced.token_hash
    )
    if status != "UPDATE 1":
        raise ValueError(f"server {replaced.server_id!r} is not registered to {owner!r} here")


def _server(row: asyncpg.Record) -> ServerRecord:
    return ServerRecord(
        id=row["server_id"],
        owner=row["owner"],
        name=row["name"],
        version=row["version"],
        token_hash=row["token_hash"],
    )


def _change(row: asyncpg.Record) -> Change:
    if row["kind"] == "baseline_request":
        return BaselineRequest(row["account_id"])
    return StateChange(
        account=row["account_id"],
        guid=row["guid"],
        ids=row["ids"],
        watched=row["watched"],
        watched_at=row["watched_at"],
        rating=row["rating"],
        rated_at=row["rated_at"],
    )
