"""Every projection the service runs (kept at this path while the services move to theirs)."""

from __future__ import annotations

from .catalog import all_projections
from .history import WatchHistoryProjection
from .state import WatchStateProjection

__all__ = ["WatchHistoryProjection", "WatchStateProjection", "all_projections"]
