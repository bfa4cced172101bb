"""The servers' outbound queues (product rule 8): pending items per account, server and title,
coalesced. Folded by the watch state projection as state changes (:mod:`projections.state`),
read and acknowledged by the servers (:func:`pending`, :func:`acknowledge`), whose long-polls
:class:`QueueWakeups` wakes.

The queue is delivery state, not a pure function of the log: what a server acknowledged is not
in the log. A rebuild of the watch state leaves it as it is, and the live fold, catching up from
the rebuild's checkpoint, queues again only what changes; a server may then receive a title's
current state once more, which it applies idempotently.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from eventstore import HintFollower, KeyedWakeups, Wakeups
from eventstore.database import Connection
from eventstore.queries import load_queries

from .protocol import Op

QUERIES = load_queries("projections", "sql/queues.sql")


def backfill(account: str, server: str | None = None) -> Op:
    """While sync is on, queue the account's whole state and a baseline request for one server
    (None: every server with access)."""
    return Op(QUERIES["queue_backfill"], (account, server))


def drop_account(account: str) -> Op:
    """Drop every pending item of the account (sync turned off)."""
    return Op(QUERIES["queue_drop_account"], (account,))


def drop_server(account: str, server: str) -> Op:
    """Drop the account's pending items for a server that lost access to it."""
    return Op(QUERIES["queue_drop_server"], (account, server))


# -- the servers' side ---------------------------------------------------------------------------


async def pending(
    conn: Connection | asyncpg.Pool[Any], server: str, after: int, limit: int
) -> list[asyncpg.Record]:
    """A server's pending items after sequence number ``after``, at most ``limit``, in queue
    order, each with its title's current state (``seq``, ``kind``, ``account_id``, ``guid``,
    ``watched``, ``watched_at``, ``rating``, ``rated_at``; all four None: no state)."""
    rows: list[asyncpg.Record] = await conn.fetch(QUERIES["queue_pending"], server, after, limit)
    return rows


async def acknowledge(conn: Connection | asyncpg.Pool[Any], server: str, through: int) -> None:
    """The server has every item up to sequence number ``through``: they leave its queue."""
    await conn.execute(QUERIES["queue_ack"], server, through)


class QueueWakeups:
    """Per-server wake-ups for long-polls, fed by one query per projection progress hint.

    However many servers wait, this process asks the database only "which servers got items
    since the last time?" once per hint (or poll), and wakes just those."""

    def __init__(self, pool: asyncpg.Pool[Any], progress: Wakeups, *, poll: float = 1.0) -> None:
        self._pool = pool
        self._servers = KeyedWakeups()
        self._last_seq: int | None = None
        self._follower = HintFollower(
            "queue-wakeups", progress, self._refresh, poll=poll, max_backoff=1.0
        )

    @property
    def poll(self) -> float:
        """Seconds between looks when no hint comes (a hint may be lost)."""
        return self._follower.poll

    @poll.setter
    def poll(self, seconds: float) -> None:
        self._follower.poll = seconds

    @property
    def waiting(self) -> int:
        """Long-polls holding right now, over all servers."""
        return self._servers.waiting

    @property
    def closing(self) -> bool:
        return self._servers.closing

    def close(self) -> None:
        """Release every waiting long-poll now (the service is stopping): they answer with
        what they have, and their servers simply poll again."""
        self._servers.close()

    def for_server(self, server_id: str) -> Wakeups:
        return self._servers.for_key(server_id)

    async def run(self) -> None:
        """Forever (see :class:`~eventstore.HintFollower`); waiters poll through an outage."""
        await self._follower.run()

    async def _refresh(self) -> None:
        if self._last_seq is None:
            # Items queued before this process started have no long-poll waiting for them.
            self._last_seq = await self._pool.fetchval(QUERIES["queue_head"])
            return
        rows = await self._pool.fetch(QUERIES["queue_servers_after"], self._last_seq)
        if rows:
            self._last_seq = max(self._last_seq, *(row["seq"] for row in rows))
            self._servers.wake(row["server_id"] for row in rows)
