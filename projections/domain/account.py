"""The account aggregate: an account as its own stream tells it. Pure."""

from __future__ import annotations

import msgspec

from eventstore import Event, RecordedEvent

from .events import (
    AccessAccepted,
    AccessDeclined,
    AccessGranted,
    AccessLeft,
    AccessOffered,
    AccessRevoked,
    AccountCreated,
    AccountKind,
    ServerRegistered,
    SyncChanged,
    TokenReplaced,
    Visibility,
    VisibilityChanged,
    registry,
)


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
    elif isinstance(event, TokenReplaced):
        account = replace(account, token_hash=event.token_hash)
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
