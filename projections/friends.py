"""The friendships projection (product rule 9): which requests stand, so which accounts are
friends. Owns ``friend_requests``; read by the friend commands and by the feeds.

A pair's state is the fold of both sides' events in log order: a request adds the asker's
row, an ending (by either side) removes both rows. Deletions (rules 10 and 11) purge no
friendship events, so a tombstone leaves this projection as it is (:attr:`purges` is empty).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from eventstore import RecordedEvent, StreamName
from eventstore.database import Connection
from eventstore.queries import load_queries

from .domain import FriendRemoved, FriendRequested, Friendship
from .events import account_event
from .protocol import Op, Slice

QUERIES = load_queries("projections", "sql/friends.sql")

_FOLDED = frozenset({FriendRequested.event_type, FriendRemoved.event_type})


class FriendsProjection:
    """The requests that stand between accounts."""

    name = "friends"
    tables = ("friend_requests",)
    purges: frozenset[str] = frozenset()

    def prepare(self, events: Sequence[RecordedEvent]) -> Sequence[Op]:
        return []

    def apply(self, event: RecordedEvent) -> Sequence[Op]:
        if event.type not in _FOLDED:
            return []  # not decoded either: an event it cannot read is another fold's poison
        decoded = account_event(event)
        if decoded is None:
            return []
        if StreamName.parse(event.stream).category != "account":
            # Only an import can put one elsewhere; the rebuild leaves it out (`skipped`).
            raise ValueError(f"a {event.type} event belongs in an account's own stream")
        account, decoded_event = decoded
        if isinstance(decoded_event, FriendRequested):
            return [Op(QUERIES["friend_request"], (account, decoded_event.account, event.position))]
        if isinstance(decoded_event, FriendRemoved):
            return [Op(QUERIES["friend_remove"], (account, decoded_event.account))]
        return []

    def rebuild(self, part: Slice) -> Sequence[Op]:
        return [
            Op(QUERIES["rebuild_friends_removed"], part.args),
            Op(QUERIES["rebuild_friends_requested"], part.args),
        ]

    def skipped(self, part: Slice) -> Op:
        return Op(QUERIES["rebuild_friends_skipped"], part.args)


async def friendship(conn: Connection | asyncpg.Pool[Any], account: str, other: str) -> Friendship:
    """Who of the pair has asked, as the projection has it."""
    row = await conn.fetchrow(QUERIES["friendship"], account, other)
    assert row is not None
    return Friendship(asked=row["asked"], asked_by_them=row["asked_by_them"])


async def friends_of(
    conn: Connection | asyncpg.Pool[Any], account: str
) -> tuple[list[str], list[str], list[str]]:
    """The account's friends, the requests to it it has not answered (incoming), and its own
    unanswered requests (outgoing), each sorted."""
    row = await conn.fetchrow(QUERIES["friends_of"], account)
    assert row is not None
    return list(row["friends"]), list(row["incoming"]), list(row["outgoing"])
