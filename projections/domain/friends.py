"""Decisions on friendships (product rule 9). Pure.

A friendship is two requests: each side asks (``friend_requested`` in its own stream), and
both having asked makes them friends. Either side ending it (``friend_removed``) clears both
requests, so ending a friendship, withdrawing a request and declining one are one event. The
pair's state is the fold of both sides' events in log order (:mod:`projections.friends`);
commands decide on it as that projection last saw it. A decision made on a stale view costs at
most a redundant event, which the fold absorbs: it never changes the outcome.
"""

from __future__ import annotations

import msgspec

from eventstore import Event

from .account import Account
from .errors import CannotFriendSelf
from .events import FriendRemoved, FriendRequested


class Friendship(msgspec.Struct, frozen=True):
    """Two accounts as one of them sees the pair: who has asked."""

    asked: bool = False
    asked_by_them: bool = False

    @property
    def friends(self) -> bool:
        return self.asked and self.asked_by_them


def request_friendship(account: Account, other: str, pair: Friendship) -> list[Event]:
    """Ask ``other`` to be friends, or accept its request ([] when already asked)."""
    if other == account.id:
        raise CannotFriendSelf("an account cannot be its own friend")
    return [] if pair.asked else [FriendRequested(account=other)]


def end_friendship(account: Account, other: str, pair: Friendship) -> list[Event]:
    """End the friendship with ``other``, withdraw the request to it or decline its request
    ([] when neither has asked)."""
    if other == account.id:
        raise CannotFriendSelf("an account cannot be its own friend")
    return [FriendRemoved(account=other)] if pair.asked or pair.asked_by_them else []
