"""Decisions on servers shared with an account (product rule 3). Pure."""

from __future__ import annotations

from eventstore import Event

from .account import Account
from .errors import CannotLeaveOwnServer, DomainError, OwnerKeepsAccess
from .events import AccessAccepted, AccessDeclined, AccessLeft, AccessOffered, AccessRevoked


def offer_access(account: Account, server_id: str) -> list[Event]:
    """The owner shares a server: an offer, unless one is waiting or it was accepted (or the
    account is the owner, which always has access)."""
    if server_id in account.servers or server_id in account.offered_servers:
        return []
    return [AccessOffered(server_id=server_id)]


def withdraw_access(account: Account, server_id: str) -> list[Event]:
    """The owner withdraws its offer or revokes the access (nothing if there is neither);
    raises :class:`OwnerKeepsAccess` for the account that owns the server."""
    if server_id in account.owned_servers:
        raise OwnerKeepsAccess("the owner's access cannot be revoked")
    if server_id in account.offered_servers or server_id in account.shared_servers:
        return [AccessRevoked(server_id=server_id)]
    return []


class NoOffer(DomainError):
    """There is no offer of that server to accept."""

    code = "not_found"


def accept_access(account: Account, server_id: str) -> list[Event]:
    """The account accepts an offer (nothing if it has access already); raises
    :class:`NoOffer` when there is none."""
    if account.has_access(server_id):
        return []
    if server_id not in account.offered_servers:
        raise NoOffer(f"no offer of server {server_id!r} to accept")
    return [AccessAccepted(server_id=server_id)]


def leave_access(account: Account, server_id: str) -> list[Event]:
    """The account declines an offer or leaves a shared server (nothing if neither); raises
    :class:`CannotLeaveOwnServer` for a server it owns."""
    if server_id in account.owned_servers:
        raise CannotLeaveOwnServer("an account cannot leave its own server")
    if server_id in account.offered_servers:
        return [AccessDeclined(server_id=server_id)]
    if server_id in account.shared_servers:
        return [AccessLeft(server_id=server_id)]
    return []
