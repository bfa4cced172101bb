"""Recording decided watch actions: one account's accepted events appended in one
transaction, with an outcome per action."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from eventstore import EventStore, LogCursor, NewEvent
from projections import domain
from projections.domain import Rejected


class Recorded(msgspec.Struct, frozen=True):
    """The action is in the log, at ``position``."""

    position: int


class Duplicate(msgspec.Struct, frozen=True):
    """The action was recorded before (by its client id, or as the same action)."""


Outcome = Recorded | Duplicate | Rejected


async def record(
    store: EventStore, account_id: str, decisions: Sequence[NewEvent | Rejected]
) -> tuple[list[Outcome], LogCursor | None]:
    """Append the accepted events of one account in one transaction; an outcome per decision,
    in order (the same event twice in one batch: the second is a duplicate), and the newest
    tailing cursor among them (None: nothing was accepted)."""
    outcomes: list[Outcome | None] = []
    to_append: list[NewEvent] = []
    slots: list[int] = []  # outcomes index of each event to append
    seen: set[Any] = set()
    for decided in decisions:
        if isinstance(decided, Rejected):
            outcomes.append(decided)
        elif not seen.isdisjoint(keys := decided.keys):
            outcomes.append(Duplicate())
        else:
            seen |= keys
            slots.append(len(outcomes))
            outcomes.append(None)
            to_append.append(decided)
    cursor: LogCursor | None = None
    if to_append:
        appended = await store.append(domain.watch_stream(account_id), to_append)
        for slot, result in zip(slots, appended, strict=True):
            outcomes[slot] = Duplicate() if result.duplicate else Recorded(result.position)
        cursor = max(result.cursor for result in appended)
    final = [o for o in outcomes if o is not None]
    assert len(final) == len(decisions)
    return final, cursor
