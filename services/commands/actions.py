"""Recording decided watch actions: one account's accepted events, or a whole server batch's
over many accounts, appended in one transaction, with an outcome per action."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from eventstore import AppendResult, EventStore, LogCursor, NewEvent
from projections import domain
from projections.domain import Rejected


class Recorded(msgspec.Struct, frozen=True):
    """The action is in the log, at ``position``."""

    position: int


class Duplicate(msgspec.Struct, frozen=True):
    """The action was recorded before (by its client id, or as the same action)."""


Outcome = Recorded | Duplicate | Rejected


class _Plan:
    """One account's decisions: the outcomes known before appending (rejections, duplicates
    within the batch) and the events to append, with the outcome slot each one fills."""

    def __init__(self, decisions: Sequence[NewEvent | Rejected]) -> None:
        self.outcomes: list[Outcome | None] = []
        self.to_append: list[NewEvent] = []
        self.slots: list[int] = []
        seen: set[Any] = set()
        for decided in decisions:
            if isinstance(decided, Rejected):
                self.outcomes.append(decided)
            elif not seen.isdisjoint(keys := decided.keys):
                self.outcomes.append(Duplicate())
            else:
                seen |= keys
                self.slots.append(len(self.outcomes))
                self.outcomes.append(None)
                self.to_append.append(decided)

    def finish(self, appended: Sequence[AppendResult]) -> tuple[list[Outcome], LogCursor | None]:
        for slot, result in zip(self.slots, appended, strict=True):
            self.outcomes[slot] = Duplicate() if result.duplicate else Recorded(result.position)
        final = [o for o in self.outcomes if o is not None]
        assert len(final) == len(self.outcomes)
        return final, max((result.cursor for result in appended), default=None)


async def record(
    store: EventStore, account_id: str, decisions: Sequence[NewEvent | Rejected]
) -> tuple[list[Outcome], LogCursor | None]:
    """Append the accepted events of one account in one transaction; an outcome per decision,
    in order (the same event twice in one batch: the second is a duplicate), and the newest
    tailing cursor among them (None: nothing was accepted)."""
    plan = _Plan(decisions)
    appended = (
        await store.append(domain.watch_stream(account_id), plan.to_append)
        if plan.to_append
        else []
    )
    return plan.finish(appended)


async def record_many(
    store: EventStore, decisions: Mapping[str, Sequence[NewEvent | Rejected]]
) -> tuple[dict[str, list[Outcome]], LogCursor | None]:
    """Append the accepted events of many accounts (``decisions`` by account) in one
    transaction; each account's outcomes as :func:`record` gives them, and the newest tailing
    cursor of all (None: nothing was accepted)."""
    plans = {account_id: _Plan(decided) for account_id, decided in decisions.items()}
    writing = [account_id for account_id, plan in plans.items() if plan.to_append]
    appended = await store.append_many(
        [(domain.watch_stream(account_id), plans[account_id].to_append) for account_id in writing]
    )
    results = dict(zip(writing, appended, strict=True))
    outcomes: dict[str, list[Outcome]] = {}
    newest: LogCursor | None = None
    for account_id, plan in plans.items():
        outcomes[account_id], cursor = plan.finish(results.get(account_id, []))
        if cursor is not None:
            newest = cursor if newest is None else max(newest, cursor)
    return outcomes, newest
