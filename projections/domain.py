"""The domain: which titles sync, the events of the log, and the account aggregate.

Everything here is pure: no I/O. Streams, per account (the id part is the account id):

* ``account-<id>``: the account itself — created, sync turned on/off, visibility changed, a
  server it registered (it owns it), a server shared with it or no longer.
* ``watch-<id>``: its watched / unwatched / rated / unrated actions.

No event says where an action came from (product rule 2): an action made in an app, through
the API or on a media server is stored identically. (A *baseline* record says only that it is
one: a server's summary of what the account watched before it synced.)
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import ClassVar, Literal, cast

import msgspec

from eventstore import Event, EventRegistry, RecordedEvent

registry = EventRegistry()

AccountKind = Literal["full", "managed"]
Visibility = Literal["private", "friends", "public"]
TitleKind = Literal["movie", "show", "season", "episode"]
ActionType = Literal["watched", "unwatched", "rated", "unrated"]

ACCOUNT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
SERVER_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_SYNCED_GUID = re.compile(r"^plex://(movie|show|season|episode)/([0-9a-fA-F]{24})$")
_MUSIC_GUID = re.compile(r"^plex://(artist|album|track)/")


def account_stream(account_id: str) -> str:
    return f"account-{account_id}"


def watch_stream(account_id: str) -> str:
    return f"watch-{account_id}"


# -- titles -----------------------------------------------------------------------------------


class GuidRejected(Exception):
    """Why a GUID is not synced: its rejection code."""

    def __init__(self, code: Literal["music_not_synced", "unsupported_guid"]) -> None:
        super().__init__(code)
        self.code = code


def classify_guid(guid: str) -> tuple[TitleKind, str]:
    """(kind, normalised GUID) of a synced title; raises :class:`GuidRejected` otherwise.

    Only Plex Movie / Plex TV Series GUIDs sync (``plex://movie|show|season|episode/<24 hex>``);
    music never does; any other scheme (legacy agents, ``local://``) is unsupported."""
    if _MUSIC_GUID.match(guid):
        raise GuidRejected("music_not_synced")
    match = _SYNCED_GUID.match(guid)
    if match is None:
        raise GuidRejected("unsupported_guid")
    kind = cast(TitleKind, match.group(1))
    return kind, f"plex://{kind}/{match.group(2).lower()}"


def guid_kind(guid: str) -> TitleKind:
    """The kind of an already validated, normalised GUID."""
    return cast(TitleKind, guid.split("/", 3)[2])


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


# Watch actions. ``baseline`` is omitted when false, so ordinary actions are stored as
# {"guid", "at"[, "rating"]} only.
@registry.register
class Watched(Event, frozen=True, omit_defaults=True):
    event_type: ClassVar[str] = "watched"
    guid: str
    at: datetime
    baseline: bool = False


@registry.register
class Unwatched(Event, frozen=True, omit_defaults=True):
    event_type: ClassVar[str] = "unwatched"
    guid: str
    at: datetime
    baseline: bool = False


@registry.register
class Rated(Event, frozen=True, omit_defaults=True):
    event_type: ClassVar[str] = "rated"
    guid: str
    at: datetime
    rating: int
    baseline: bool = False


@registry.register
class Unrated(Event, frozen=True, omit_defaults=True):
    event_type: ClassVar[str] = "unrated"
    guid: str
    at: datetime
    baseline: bool = False


WatchAction = Watched | Unwatched | Rated | Unrated
# The actions that carry no rating, by type.
UNRATED_ACTIONS: dict[str, type[Watched | Unwatched | Unrated]] = {
    "watched": Watched,
    "unwatched": Unwatched,
    "unrated": Unrated,
}

# Natural-key event ids: an action without a client id is a duplicate of another with the
# same (account, GUID, type, at, rating); the same inputs always give the same event id.
_NATURAL_KEY_NAMESPACE = uuid.UUID("5d3f7c1e-9a0b-4c2d-8e6f-1a2b3c4d5e6f")


def natural_event_id(
    account_id: str, guid: str, action: str, at: datetime, rating: int | None
) -> uuid.UUID:
    key = f"{account_id}\x1f{guid}\x1f{action}\x1f{to_utc(at).isoformat()}\x1f{rating}"
    return uuid.uuid5(_NATURAL_KEY_NAMESPACE, key)


def to_utc(at: datetime) -> datetime:
    """UTC, microsecond precision at most (naive datetimes are taken as UTC)."""
    if at.tzinfo is None:
        return at.replace(tzinfo=UTC)
    return at.astimezone(UTC)


# -- the account aggregate --------------------------------------------------------------------


class Account(msgspec.Struct, frozen=True):
    """An account as its own stream tells it: what commands are decided on."""

    id: str
    kind: AccountKind
    name: str
    token_hash: str
    sync_enabled: bool = False
    visibility: Visibility = "friends"
    owned_servers: frozenset[str] = frozenset()
    # Servers shared with the account that it accepted, and offers waiting for its answer.
    shared_servers: frozenset[str] = frozenset()
    offered_servers: frozenset[str] = frozenset()
    version: int = 0

    def has_access(self, server_id: str) -> bool:
        """Owned by this account, or shared with it and accepted (product rule 3)."""
        return server_id in self.owned_servers or server_id in self.shared_servers

    @property
    def servers(self) -> frozenset[str]:
        """The servers with access to the account."""
        return self.owned_servers | self.shared_servers


# Bumped whenever :func:`evolve` changes what an event does to an account: stored snapshots of
# another fold version are rebuilt from the stream.
ACCOUNT_FOLD_VERSION = 1


def evolve(account: Account | None, event: Event, version: int) -> Account | None:
    """The account after ``event``, the stream's event number ``version``."""
    replace = msgspec.structs.replace
    if isinstance(event, AccountCreated):
        account = Account(event.account_id, event.kind, event.name, event.token_hash)
    elif account is None:
        return None
    elif isinstance(event, SyncChanged):
        account = replace(account, sync_enabled=event.enabled)
    elif isinstance(event, VisibilityChanged):
        account = replace(account, visibility=event.visibility)
    elif isinstance(event, ServerRegistered):
        account = replace(account, owned_servers=account.owned_servers | {event.server_id})
    elif isinstance(event, AccessOffered | AccessGranted):
        if event.server_id not in account.shared_servers:
            account = replace(account, offered_servers=account.offered_servers | {event.server_id})
    elif isinstance(event, AccessAccepted):
        account = replace(
            account,
            offered_servers=account.offered_servers - {event.server_id},
            shared_servers=account.shared_servers | {event.server_id},
        )
    elif isinstance(event, AccessDeclined | AccessLeft | AccessRevoked):
        account = replace(
            account,
            offered_servers=account.offered_servers - {event.server_id},
            shared_servers=account.shared_servers - {event.server_id},
        )
    return replace(account, version=version)


def fold_account(events: list[RecordedEvent], account: Account | None = None) -> Account | None:
    """The account its stream's events describe (None for an empty stream), optionally
    continuing from ``account`` (a snapshot) with the events after it."""
    for recorded in events:
        account = evolve(account, registry.decode(recorded), recorded.version)
    return account


# -- decisions on servers shared with an account (product rule 3) ----------------------------


def offer_access(account: Account, server_id: str) -> list[Event]:
    """The owner shares a server: an offer, unless one is waiting or it was accepted."""
    if server_id in account.servers or server_id in account.offered_servers:
        return []
    return [AccessOffered(server_id=server_id)]


def withdraw_access(account: Account, server_id: str) -> list[Event]:
    """The owner withdraws its offer or revokes the access (nothing if there is neither)."""
    if server_id in account.offered_servers or server_id in account.shared_servers:
        return [AccessRevoked(server_id=server_id)]
    return []


class NoOffer(Exception):
    """There is no offer of that server to accept."""


def accept_access(account: Account, server_id: str) -> list[Event]:
    """The account accepts an offer (nothing if it has access already); raises
    :class:`NoOffer` when there is none."""
    if account.has_access(server_id):
        return []
    if server_id not in account.offered_servers:
        raise NoOffer(server_id)
    return [AccessAccepted(server_id=server_id)]


def leave_access(account: Account, server_id: str) -> list[Event]:
    """The account declines an offer or leaves a shared server (nothing if neither)."""
    if server_id in account.offered_servers:
        return [AccessDeclined(server_id=server_id)]
    if server_id in account.shared_servers:
        return [AccessLeft(server_id=server_id)]
    return []
