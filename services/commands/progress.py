"""Read-your-writes: a command answers once the projections have applied what it wrote."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog

from eventstore import LogCursor
from projections.catalog import all_projections
from projections.runner import ProjectionProgress

log = structlog.get_logger(__name__)

# Every projection a write waits for.
PROJECTION_NAMES = tuple(p.name for p in all_projections())
# How long a write waits for the projections to apply it before answering anyway.
SETTLE_WITHIN = 5.0

Settle = Callable[[LogCursor], Awaitable[None]]
"""Waits until the projections have applied the event at a cursor."""


async def no_wait(cursor: LogCursor) -> None:
    """A :data:`Settle` that does not wait (nothing reads the projections back)."""
    return None


def settle_with(tracker: ProjectionProgress, within: float = SETTLE_WITHIN) -> Settle:
    """The :data:`Settle` of a process whose ``tracker`` follows the projections."""

    async def settle(cursor: LogCursor) -> None:
        # A write answers once every projection (state and queues, history) has applied it;
        # past the bound it answers anyway, and says so. While the database is gone it answers
        # at once (it is in the log), and quietly: the outage is logged once, not once per
        # write.
        applied = await tracker.wait_until_applied(cursor, within, unless_lost=True)
        if not applied and tracker.lost is None:
            log.warning("projections_behind", position=cursor.position)

    return settle
