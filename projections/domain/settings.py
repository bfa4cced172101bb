"""Decisions on an account's settings: sync on or off, profile visibility. Pure."""

from __future__ import annotations

from eventstore import Event

from .account import Account
from .errors import ManagedAccount
from .events import SyncChanged, Visibility, VisibilityChanged


def change_settings(
    account: Account, *, sync_enabled: bool | None = None, visibility: Visibility | None = None
) -> list[Event]:
    """The events of a settings change (None: that setting stays; [] when nothing changes);
    raises :class:`ManagedAccount` when a managed account would turn sync on."""
    events: list[Event] = []
    if sync_enabled is not None and sync_enabled != account.sync_enabled:
        if sync_enabled and account.kind == "managed":
            raise ManagedAccount("managed accounts cannot turn sync on")
        events.append(SyncChanged(enabled=sync_enabled))
    if visibility is not None and visibility != account.visibility:
        events.append(VisibilityChanged(visibility=visibility))
    return events
