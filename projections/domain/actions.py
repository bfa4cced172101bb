"""Watch action decisions: what an action reported by an account itself, or by a media server
for an account, becomes in the log — an event, or why not. Pure.

A decision returns the event to append (a :class:`~eventstore.NewEvent` with its keys for
idempotency) or a :class:`Rejected` value: a rejection is a per-item outcome of a batch, not
an error.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Literal

import msgspec

from eventstore import NewEvent

from .account import Account
from .events import UNRATED_ACTIONS, Rated, WatchAction, natural_keys, registry, to_utc
from .titles import GuidRejected, classify_ids

# How far ahead of the clock an action's `at` may be (clocks of clients and servers drift).
FUTURE_TOLERANCE = timedelta(minutes=5)

# What may be reported: the actions, and (from a server) in-progress playback, never synced.
ReportedType = Literal["watched", "unwatched", "rated", "unrated", "progress"]

# Why an action is not recorded; when several apply, the first in this order.
RejectionCode = Literal[
    "unknown_account",
    "managed_account",
    "no_access",
    "sync_disabled",
    "music_not_synced",
    "unsupported_guid",
    "conflicting_ids",
    "edition_not_synced",
    "in_progress_not_synced",
    "invalid_rating",
    "at_in_future",
]


class Rejected(msgspec.Struct, frozen=True):
    """Why an action is not recorded."""

    code: RejectionCode


class ReportedAction(msgspec.Struct, frozen=True, kw_only=True):
    """A watch action as reported, before it is decided on."""

    type: ReportedType
    guid: str
    ids: tuple[str, ...] = ()  # more ids of the same title (product rule 1b)
    at: datetime | None = None  # None: now
    rating: int | None = None
    # The reporter's own id for the action (a retry with it is the same action).
    client_id: uuid.UUID | None = None
    edition: str | None = None  # a movie's edition, which is not synced
    baseline: bool = False  # a server's summary of what was watched before it synced


def decide_action(account_id: str, action: ReportedAction, now: datetime) -> NewEvent | Rejected:
    """The event a watch action of the account becomes, or why it is not synced: the title's
    checks in the contract's order (music, unsupported id, conflicting ids, edition,
    in-progress, rating, time)."""
    try:
        _, guid, ids = classify_ids(action.guid, action.ids)
    except GuidRejected as rejected:
        return Rejected(rejected.code)
    if action.edition:
        return Rejected("edition_not_synced")
    if action.type == "progress":
        return Rejected("in_progress_not_synced")
    rating = action.rating
    rating_ok = rating is None or 1 <= rating <= 10
    if (action.type == "rated") != (rating is not None) or not rating_ok:
        return Rejected("invalid_rating")
    at = to_utc(action.at) if action.at is not None else now
    if at > now + FUTURE_TOLERANCE:
        return Rejected("at_in_future")
    event: WatchAction
    if rating is not None:  # and so the action is "rated"
        event = Rated(guid=guid, ids=ids, at=at, rating=rating, baseline=action.baseline)
    else:
        event = UNRATED_ACTIONS[action.type](guid=guid, ids=ids, at=at, baseline=action.baseline)
    # Its names: the client's id (a retry of the same request, even with another `at`), and
    # a natural key under each id of the title (the same action reported again: a retry
    # without an id, or a server echoing a change it was sent under its own ids for the title —
    # including one first made with a client id).
    natural = natural_keys(account_id, (guid, *ids), action.type, at, rating)
    new = registry.new(event, event_id=action.client_id or natural[0])
    return msgspec.structs.replace(new, idempotency_keys=natural)


def decide_server_action(
    account: Account | None, server_id: str, action: ReportedAction, now: datetime
) -> NewEvent | Rejected:
    """A server's report of an account's action: the account's checks first (it exists, is
    not managed, gave the server access, has sync on), then the title's
    (:func:`decide_action`)."""
    if account is None:
        return Rejected("unknown_account")
    if account.kind == "managed":
        return Rejected("managed_account")
    if not account.has_access(server_id):
        return Rejected("no_access")
    if not account.sync_enabled:
        return Rejected("sync_disabled")
    return decide_action(account.id, action, now)
