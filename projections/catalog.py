"""Every projection the service runs."""

from __future__ import annotations

from .activity import ActivityProjection
from .friends import FriendsProjection
from .history import WatchHistoryProjection
from .protocol import Projection
from .state import WatchStateProjection


def all_projections() -> list[Projection]:
    """Every projection, in a stable order (replays and verifies go in this order)."""
    return [
        WatchStateProjection(),
        WatchHistoryProjection(),
        FriendsProjection(),
        ActivityProjection(),
    ]
