"""Decisions on servers shared with an account (product rule 3). Pure."""

from __future__ import annotations

from eventstore import Event

from .account import Account
from .events import AccessAccepted, AccessDeclined, AccessLeft, AccessOffered, AccessRevoked


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
