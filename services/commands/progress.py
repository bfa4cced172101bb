"""Read-your-writes: a command answers once the projections have applied what it wrote."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog

from eventstore import LogCursor
from projections.catalog import all_projections
from projections.runner import ProjectionProgress

log = structlog.get_logger(__name__)

# Every projection: what most writes wait for.
PROJECTION_NAMES = tuple(p.name for p in all_projections())
# What a write of watch actions (an account's own, or a server's) waits for: the projections
# its writer reads back — state (and the servers' queues, folded with it), history and
# profile counts. Not the activity feeds: that fold costs writers a fifth of their throughput
# when they wait for it too (`watchledger bench api`), while a friend's feed, a stream and
# even the actor's own activity page are read apart from the write, a few milliseconds after
# it. Friendships, settings (visibility) and deletions still wait for every projection, so a
# change of who sees what applies at once.
ACTION_PROJECTIONS = ("watch_state", "watch_history")
# How long a write waits for the projections to apply it before answering anyway.
SETTLE_WITHIN = 5.0

Settle = Callable[[LogCursor], Awaitable[None]]
"""Waits until the projections have applied the event at a cursor."""


async def no_wait(cursor: LogCursor) -> None:
    """A :data:`Settle` that does not wait (nothing reads the projections back)."""
    return None


def settle_with(
    tracker: ProjectionProgress,
    within: float = SETTLE_WITHIN,
    names: tuple[str, ...] = PROJECTION_NAMES,
) -> Settle:
    """The :data:`Settle` of a process whose ``tracker`` follows the projections: waits for
    ``names`` (default: every projection)."""

    async def settle(cursor: LogCursor) -> None:
        # A write answers once every projection (state and queues, history) has applied it;
        # past the bound it answers anyway, and says so. While the database is gone it answers
        # at once (it is in the log), and quietly: the outage is logged once, not once per
        # write.
        applied = await tracker.wait_until_applied(cursor, within, unless_lost=True, names=names)
        if not applied and tracker.lost is None:
            log.warning("projections_behind", position=cursor.position)

    return settle
