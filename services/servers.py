"""Media servers: registration and access, server-originated events, outbound delivery.

Privacy (product rule 2): a server's identity authorises its request and is then forgotten.
Its events are stored exactly as the account's own actions are; nothing in the log or a
projection says which server (if any) an action came from.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
import structlog
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential

from eventstore import Event, EventStore, LogCursor, NewEvent, Wakeups
from eventstore.database import CONNECTION_BROKEN, Connection
from projections import domain
from projections.domain import Account

from . import wire
from .accounts import AccountService, decide, decode_cursor, encode_cursor, record
from .auth import QUERIES, new_token
from .errors import ApiError, invalid

log = structlog.get_logger(__name__)

MIN_VERSION = (1, 27, 2)
_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)(?:[.\-+].*)?$")

_INTERRUPTIONS: tuple[type[BaseException], ...] = (*CONNECTION_BROKEN, asyncpg.PostgresError)


def parse_version(version: str) -> tuple[int, int, int] | None:
    """(major, minor, patch) of a media server version like ``1.32.5.7349-abc``."""
    match = _VERSION.match(version.strip())
    return None if match is None else (int(match[1]), int(match[2]), int(match[3]))


class ServerRecord:
    __slots__ = ("id", "name", "owner", "token_hash", "version")

    def __init__(self, row: asyncpg.Record) -> None:
        self.id: str = row["server_id"]
        self.owner: str = row["owner"]
        self.name: str = row["name"]
        self.version: str = row["version"]
        self.token_hash: str = row["token_hash"]


class QueueWakeups:
    """Per-server wake-ups for long-polls, fed by one query per projection progress hint.

    However many servers wait, this process asks the database only "which servers got items
    since the last time?" once per hint, and wakes just those."""

    def __init__(self, pool: asyncpg.Pool[Any], progress: Wakeups, *, poll: float = 1.0) -> None:
        self._pool = pool
        self._progress = progress
        self._poll = poll
        self._servers: dict[str, Wakeups] = {}
        self._last_seq = 0
        self.closing = False

    @property
    def waiting(self) -> int:
        """Long-polls holding right now, over all servers."""
        return sum(w.waiting for w in self._servers.values())

    def close(self) -> None:
        """Release every waiting long-poll now (the service is stopping): they answer with
        what they have, and their servers simply poll again."""
        self.closing = True
        for wakeups in self._servers.values():
            wakeups.wake()

    def for_server(self, server_id: str) -> Wakeups:
        wakeups = self._servers.get(server_id)
        if wakeups is None:
            wakeups = self._servers[server_id] = Wakeups()
        return wakeups

    async def run(self) -> None:
        """Forever; after a database error, again after a backoff (waiters poll meanwhile)."""
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(_INTERRUPTIONS),
            wait=wait_exponential(multiplier=0.1, max=5),
            before_sleep=lambda state: log.warning(
                "queue_wakeups_interrupted",
                error=str(state.outcome.exception() if state.outcome else None),
            ),
        ):
            with attempt:
                await self._follow()

    async def _follow(self) -> None:
        self._last_seq = max(self._last_seq, await self._pool.fetchval(QUERIES["queue_head"]))
        while True:
            generation = self._progress.generation
            rows = await self._pool.fetch(QUERIES["queue_servers_after"], self._last_seq)
            for row in rows:
                self._last_seq = max(self._last_seq, row["seq"])
                waiting = self._servers.get(row["server_id"])
                if waiting is not None:
                    waiting.wake()
            await self._progress.wait(generation, self._poll)


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
        return None if row is None else ServerRecord(row)

    async def require(self, server_id: str) -> ServerRecord:
        server = await self.get(server_id)
        if server is None:
            raise ApiError(404, "not_found", f"no server {server_id!r}")
        return server

    # -- registration and access --------------------------------------------------------------

    async def register(self, owner_id: str, body: wire.CreateServer) -> wire.CreatedServer:
        version = parse_version(body.version)
        if version is None:
            raise invalid("$.version", "not a media server version such as 1.32.5.7349")
        if version < MIN_VERSION:
            raise ApiError(
                422,
                "server_too_old",
                f"version {body.version} is older than 1.27.2, the first that syncs watch state",
            )
        owner = await self._load_account(owner_id)
        if owner is None:
            raise invalid("$.owner", f"no account {owner_id!r}")
        token, digest = new_token("server", body.id)
        event = domain.ServerRegistered(
            server_id=body.id, name=body.name, version=body.version, token_hash=digest
        )

        async def add_to_registry(conn: Connection) -> None:
            # The registry row and the owner's event commit together: ids stay unique, the
            # token works at once, and the log still says everything.
            added = await conn.fetchval(
                QUERIES["server_add"], body.id, owner.id, body.name, body.version, digest
            )
            if added is None:
                raise ApiError(409, "server_exists", f"server {body.id!r} is registered")

        _, cursor = await self._accounts.decide(owner, lambda _: [event], within=add_to_registry)
        assert cursor is not None
        await self._settle(cursor)
        log.info("server_registered", server=body.id, owner=owner.id)
        return wire.CreatedServer(body.id, owner.id, body.name, body.version, token)

    async def info(self, server: ServerRecord) -> wire.ServerInfo:
        rows = await self.pool.fetch(QUERIES["server_accounts"], server.id)
        accounts = sorted({server.owner, *(row["account_id"] for row in rows)})
        return wire.ServerInfo(server.id, server.owner, server.name, server.version, accounts)

    async def set_access(self, server: ServerRecord, account_id: str, offered: bool) -> None:
        """The owner offers the server to an account, or withdraws the offer / revokes the
        access (idempotent). An offer takes effect when the account accepts it."""
        account = await self._load_account(account_id)
        if account is None:
            raise ApiError(404, "not_found", f"no account {account_id!r}")
        if account.id == server.owner:
            if offered:
                return  # the owner always has access
            raise invalid("account", "the owner's access cannot be revoked")
        decision = domain.offer_access if offered else domain.withdraw_access
        await self._change_access(account, server.id, decision)

    async def accept(self, account: Account, server_id: str) -> None:
        """The account accepts the owner's offer of a server (idempotent)."""
        server = await self.require(server_id)

        def accept(account: Account, server_id: str) -> list[Event]:
            try:
                return domain.accept_access(account, server_id)
            except domain.NoOffer:
                raise ApiError(
                    404, "not_found", f"no offer of server {server.id!r} to accept"
                ) from None

        await self._change_access(account, server.id, accept)

    async def leave(self, account: Account, server_id: str) -> None:
        """The account declines the offer of a server, or leaves it (idempotent)."""
        server = await self.require(server_id)
        if server.owner == account.id:
            raise invalid("sid", "an account cannot leave its own server")
        await self._change_access(account, server.id, domain.leave_access)

    async def _change_access(
        self, account: Account, server_id: str, decision: Callable[[Account, str], list[Event]]
    ) -> None:
        _, cursor = await self._accounts.decide(account, lambda a: decision(a, server_id))
        if cursor is not None:
            log.info("server_access_changed", server=server_id, account=account.id)
            # An acceptance's backfill (or the drop of a revocation) is queued before we answer.
            await self._settle(cursor)

    async def servers_of(self, account: Account) -> wire.ServerList:
        ids = sorted(account.servers | account.offered_servers)
        rows = {r["server_id"]: r for r in await self.pool.fetch(QUERIES["servers_get"], ids)}

        def summaries(ids: frozenset[str]) -> list[wire.ServerSummary]:
            return [
                wire.ServerSummary(r["server_id"], r["name"], r["owner"], r["version"])
                for r in (rows[i] for i in sorted(ids) if i in rows)
            ]

        return wire.ServerList(summaries(account.servers), summaries(account.offered_servers))

    # -- server-originated events -------------------------------------------------------------

    async def ingest(
        self, server_id: str, events: Sequence[wire.ServerEvent], now: datetime | None = None
    ) -> list[wire.Result]:
        """A server's batch: a result per event, in order. Each account's accepted events are
        appended in one transaction (one account per transaction)."""
        now = now or datetime.now(UTC)
        accounts = await self._accounts.load_many({item.account for item in events})
        decisions = [
            (item.account, _decide(accounts.get(item.account), server_id, item, now))
            for item in events
        ]

        by_account: dict[str, list[int]] = {}
        for i, (account_id, _) in enumerate(decisions):
            by_account.setdefault(account_id, []).append(i)
        results: dict[int, wire.Result] = {}
        newest: LogCursor | None = None
        for account_id, indexes in by_account.items():
            recorded, cursor = await record(
                self.store, account_id, [decisions[i][1] for i in indexes]
            )
            results.update(zip(indexes, recorded, strict=True))
            if cursor is not None:
                newest = cursor if newest is None else max(newest, cursor)
        if newest is not None:
            await self._settle(newest)
        return [results[i] for i in range(len(decisions))]

    # -- delivery -----------------------------------------------------------------------------

    async def changes(self, server_id: str, query: wire.ChangesQuery) -> wire.Changes:
        """Pending changes after the cursor (which acknowledges everything up to it); with
        ``wait``, hold until one arrives or the time is up."""
        after = 0
        if query.cursor is not None:
            after = decode_cursor(query.cursor, int)
            await self.pool.execute(QUERIES["queue_ack"], server_id, after)
        deadline = time.monotonic() + query.wait
        wakeups = self.wakeups.for_server(server_id)
        while True:
            generation = wakeups.generation
            rows = await self.pool.fetch(QUERIES["queue_pending"], server_id, after, query.limit)
            remaining = deadline - time.monotonic()
            if rows or remaining <= 0 or self.wakeups.closing:
                break
            await wakeups.wait(generation, remaining)
        changes = [_change(row) for row in rows]
        cursor = rows[-1]["seq"] if rows else after
        return wire.Changes(changes, encode_cursor(cursor))


def _decide(
    account: Account | None, server_id: str, item: wire.ServerEvent, now: datetime
) -> NewEvent | wire.Rejected:
    """A server event's fate: the account's checks first, then the title's."""
    if account is None:
        return wire.Rejected("unknown_account")
    if account.kind == "managed":
        return wire.Rejected("managed_account")
    if not account.has_access(server_id):
        return wire.Rejected("no_access")
    if not account.sync_enabled:
        return wire.Rejected("sync_disabled")
    return decide(
        account.id,
        item.type,
        item.guid,
        item.at,
        item.rating,
        now,
        edition=item.edition,
        baseline=item.baseline,
    )


def _change(row: asyncpg.Record) -> wire.Change:
    if row["kind"] == "baseline_request":
        return wire.BaselineRequest(row["account_id"])
    return wire.StateChange(
        account=row["account_id"],
        guid=row["guid"],
        watched=row["watched"],
        watched_at=row["watched_at"],
        rating=row["rating"],
        rated_at=row["rated_at"],
    )
