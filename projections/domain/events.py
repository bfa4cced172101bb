"""The events of the log, and the streams they belong to. Pure: no I/O.

Streams, per account (the id part is the account id):

* ``account-<id>``: the account itself — created, sync turned on/off, visibility changed, a
  server it registered (it owns it), a server shared with it or no longer, a friendship it
  asked for or ended.
* ``watch-<id>``: its watched / unwatched / rated / unrated actions, and the tombstones and
  kept state of its deletions.

No event says where an action came from (product rule 2): an action made in an app, through
the API or on a media server is stored identically. (A *baseline* record says only that it is
one: a server's summary of what the account watched before it synced.)
"""

from __future__ import annotations

import calendar
import hashlib
import re
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import ClassVar, Literal

from eventstore import Event, EventRegistry

registry = EventRegistry()

AccountKind = Literal["full", "managed"]
Visibility = Literal["private", "friends", "public"]
ActionType = Literal["watched", "unwatched", "rated", "unrated"]

ACCOUNT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
SERVER_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def account_stream(account_id: str) -> str:
    return f"account-{account_id}"


def watch_stream(account_id: str) -> str:
    return f"watch-{account_id}"


# -- events -----------------------------------------------------------------------------------


@registry.register
class AccountCreated(Event, frozen=True):
    event_type: ClassVar[str] = "account_created"
    account_id: str
    kind: AccountKind
    name: str
    # SHA-256 of the account's bearer token; the token itself is never stored.
    token_hash: str


@registry.register
class SyncChanged(Event, frozen=True):
    event_type: ClassVar[str] = "sync_changed"
    enabled: bool


@registry.register
class VisibilityChanged(Event, frozen=True):
    event_type: ClassVar[str] = "visibility_changed"
    visibility: Visibility


@registry.register
class ServerRegistered(Event, frozen=True):
    """In the owner's stream: the account registered (owns) a media server."""

    event_type: ClassVar[str] = "server_registered"
    server_id: str
    name: str
    version: str
    # SHA-256 of the server's bearer token.
    token_hash: str


@registry.register
class TokenReplaced(Event, frozen=True):
    """The account's bearer token was replaced (by the account, or the operator): from this
    event on only the new one works."""

    event_type: ClassVar[str] = "token_replaced"
    # SHA-256 of the new token.
    token_hash: str


@registry.register
class ServerTokenReplaced(Event, frozen=True):
    """In the owner's stream: a server's bearer token was replaced (the registry's row
    changes in the same transaction); from this event on only the new one works."""

    event_type: ClassVar[str] = "server_token_replaced"
    server_id: str
    # SHA-256 of the new token.
    token_hash: str


@registry.register
class AccessOffered(Event, frozen=True):
    """In the grantee's stream: the owner offered (shared) a server; it takes effect only when
    the account accepts it (product rule 3)."""

    event_type: ClassVar[str] = "access_offered"
    server_id: str


@registry.register
class AccessGranted(Event, frozen=True):
    """In the grantee's stream, written before shares needed consent: read as an offer that
    the account has not accepted (no such share ever had the account's consent)."""

    event_type: ClassVar[str] = "access_granted"
    server_id: str


@registry.register
class AccessAccepted(Event, frozen=True):
    """In the grantee's stream: the account accepted the owner's offer; the server now has
    access to it."""

    event_type: ClassVar[str] = "access_accepted"
    server_id: str


@registry.register
class AccessDeclined(Event, frozen=True):
    """In the grantee's stream: the account declined the owner's offer."""

    event_type: ClassVar[str] = "access_declined"
    server_id: str


@registry.register
class AccessLeft(Event, frozen=True):
    """In the grantee's stream: the account left a server shared with it."""

    event_type: ClassVar[str] = "access_left"
    server_id: str


@registry.register
class AccessRevoked(Event, frozen=True):
    """In the grantee's stream: the owner withdrew the offer, or revoked the access."""

    event_type: ClassVar[str] = "access_revoked"
    server_id: str


@registry.register
class FriendRequested(Event, frozen=True):
    """In the asker's stream: it asked ``account`` to be friends (or accepted that account's
    request: both sides having asked makes a friendship, product rule 9)."""

    event_type: ClassVar[str] = "friend_requested"
    account: str


@registry.register
class FriendRemoved(Event, frozen=True):
    """In the remover's stream: it ended its friendship with ``account``, withdrew its request
    to it, or declined that account's request. Either way, neither has asked any more."""

    event_type: ClassVar[str] = "friend_removed"
    account: str


# Watch actions. ``ids`` (the action's other ids of the title, product rule 1b) is omitted when
# empty and ``baseline`` when false, so an ordinary action is stored as {"guid", "at"[,
# "rating"]} only.
@registry.register
class Watched(Event, frozen=True, omit_defaults=True):
    event_type: ClassVar[str] = "watched"
    guid: str
    at: datetime
    baseline: bool = False
    ids: tuple[str, ...] = ()


@registry.register
class Unwatched(Event, frozen=True, omit_defaults=True):
    event_type: ClassVar[str] = "unwatched"
    guid: str
    at: datetime
    baseline: bool = False
    ids: tuple[str, ...] = ()


@registry.register
class Rated(Event, frozen=True, omit_defaults=True):
    event_type: ClassVar[str] = "rated"
    guid: str
    at: datetime
    rating: int
    baseline: bool = False
    ids: tuple[str, ...] = ()


@registry.register
class Unrated(Event, frozen=True, omit_defaults=True):
    event_type: ClassVar[str] = "unrated"
    guid: str
    at: datetime
    baseline: bool = False
    ids: tuple[str, ...] = ()


WatchAction = Watched | Unwatched | Rated | Unrated
# The actions that carry no rating, by type.
UNRATED_ACTIONS: dict[str, type[Watched | Unwatched | Unrated]] = {
    "watched": Watched,
    "unwatched": Unwatched,
    "unrated": Unrated,
}

# Natural keys (product rule 5): an action is a duplicate of a recorded one with the same
# account, type, `at` to the whole second (some servers keep no finer time: Emby keeps whole
# seconds) and rating, that shares any id with it. So an action has one natural key per id of
# its title, and the event store finds a duplicate by any of them with an index lookup. A key is
# a version-8 UUID: the action's second, then 74 bits of a SHA-256 of those fields; the
# projections' SQL function watch_action_key() gives the same (a test keeps the two equal), for
# events recorded before keys were per id.


def natural_key(
    account_id: str, title_id: str, action: str, at: datetime, rating: int | None
) -> uuid.UUID:
    """The natural key of an action under one id of its title."""
    return natural_keys(account_id, (title_id,), action, at, rating)[0]


def natural_keys(
    account_id: str, ids: Iterable[str], action: str, at: datetime, rating: int | None
) -> tuple[uuid.UUID, ...]:
    """The action's natural keys, one an id, in the ids' order."""
    second = calendar.timegm(to_utc(at).utctimetuple())  # floor, before 1970 too
    head = f"{account_id}\x1f".encode()
    tail = f"\x1f{action}\x1f{second}\x1f{'' if rating is None else rating}".encode()
    # The second in the first 48 bits, with the version; then 74 bits of each id's digest.
    high = ((second + _SECOND_OFFSET) << 80) | _UUID_VERSION_8
    sha256, from_bytes = hashlib.sha256, int.from_bytes
    return tuple(
        _uuid(high | (from_bytes(sha256(head + i.encode() + tail).digest()[6:16]) & _LOW_FIELDS))
        for i in ids
    )


def _uuid(value: int) -> uuid.UUID:
    """The UUID of a 128-bit ``value`` whose version and variant bits are set: what
    ``uuid.UUID(int=value)`` gives, without its checks of the value (a fifth of a key's cost;
    an action has a key an id)."""
    made = _new(_UUID)
    _set(made, "int", value)
    _set(made, "is_safe", _UNKNOWN_SAFETY)
    return made


_new, _set, _UUID, _UNKNOWN_SAFETY = (
    object.__new__,
    object.__setattr__,
    uuid.UUID,
    uuid.SafeUUID.unknown,
)


# Seconds from 1970 offset by 2**47, so every time a datetime holds fits 48 bits unsigned.
_SECOND_OFFSET = 2**47
# A key is a version-8 (custom) UUID of the RFC 4122 variant: the second in its first 48 bits
# (keys of recent actions sit together in the index, as a UUIDv7's do), then the digest's bits.
_UUID_FIELDS = ~((0xF << 76) | (0x3 << 62)) & (2**128 - 1)  # all but the version and variant
_LOW_FIELDS = _UUID_FIELDS & (2**80 - 1)  # the digest's part
_UUID_VERSION_8 = (0x8 << 76) | (0x2 << 62)


def to_utc(at: datetime) -> datetime:
    """UTC, microsecond precision at most (naive datetimes are taken as UTC)."""
    if at.tzinfo is None:
        return at.replace(tzinfo=UTC)
    return at.astimezone(UTC)


# -- deletions (product rules 10 and 11) -------------------------------------------------------
#
# A deletion physically removes the events the rule names (the store's sanctioned purge) and
# leaves one of these tombstones in the watch stream, in the same transaction. A tombstone is
# content-free: it says that, and when, a deletion happened, never what was removed. Every
# projection that keeps account data rebuilds that account when it meets one, so a projection
# added later follows deletions by implementing the protocol, nothing more.


@registry.register
class HistoryDeleted(Event, frozen=True):
    """Tombstone: every watched and unwatched record before it was removed (rule 10)."""

    event_type: ClassVar[str] = "history_deleted"


@registry.register
class StateDeleted(Event, frozen=True):
    """Tombstone: the account's watch state before it is gone, and every rating event before
    it was removed (rule 11). Watch records before it stay history but decide no state."""

    event_type: ClassVar[str] = "state_deleted"


@registry.register
class WatchStateKept(Event, frozen=True, omit_defaults=True):
    """A title's watch state, carried across a history deletion: rule 10 removes every watched
    and unwatched record but keeps the state they decided. Appended just before the tombstone,
    one per id the records named their titles by, with the deciding record's ``at`` (still
    last-writer-wins against later actions) and the time it was recorded (the state's
    ``updated_at``), and every other id those records listed (``ids``), so the links they made
    (rule 1b) outlive them. Not history: it adds no history record, counts nothing, and reaches
    no feed and no server."""

    event_type: ClassVar[str] = "watch_state_kept"
    guid: str
    watched: bool
    at: datetime
    recorded_at: datetime
    ids: tuple[str, ...] = ()


TOMBSTONES: frozenset[str] = frozenset({HistoryDeleted.event_type, StateDeleted.event_type})
