"""What a projection is: a pure fold of the log into tables it owns, foldable event by event
(live) and slice by slice (set-based rebuilds).

A projection declares its **tables** (it is their one owner) and offers:

(a) :meth:`Projection.apply` — the live fold: the statements that fold one event in, applied by
    :mod:`projections.runner` with the checkpoint in the same transaction (after
    :meth:`Projection.prepare`'s for the batch, if any);
(b) :meth:`Projection.rebuild` — the set-based fold of a :class:`Slice` of the log: one statement
    per event kind over every event of the slice (the whole log, a range of it, or one
    account's part), never a loop over events. Run over consecutive slices in tailing order,
    it gives the rows the live fold gives over the same events;
(c) the comparison of rebuilt tables with live ones (:mod:`projections.replay`, generic over
    the declared tables);
(d) the rebuild of one account (:func:`rebuild_account`): its rows deleted, then (b) over its
    part of the log. The runner does this when it meets a deletion's tombstone, so a projection
    follows deletions by implementing this protocol, nothing more.

Events a projection cannot fold (poison events) are dead-lettered live; the rebuild leaves out
the same events, and :meth:`Projection.skipped` lists them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from eventstore import LogCursor, RecordedEvent


class Op(NamedTuple):
    """One SQL statement (a named query's text) and its arguments; optionally, the same
    statement for a run of such ops at once (``many``: its parameters are the run's arguments
    as arrays, column by column), which the runner uses for consecutive ops of one query: one
    set-based statement a run instead of one execution an event."""

    query: str
    args: tuple[Any, ...]
    many: str | None = None


# The last cursor a slice can reach: past every event.
END = LogCursor(2**63 - 1, 2**63 - 1)


class Slice(NamedTuple):
    """Part of the log, in tailing order: the events after ``after`` up to ``through``
    (inclusive), of one account or all; optionally only those up to a position or a time
    (a point-in-time copy)."""

    account: str | None = None
    after: LogCursor = LogCursor.START
    through: LogCursor = END
    until_position: int | None = None
    until_time: datetime | None = None

    @property
    def args(self) -> tuple[Any, ...]:
        """The parameters every rebuild statement takes, $1 to $7."""
        return (
            self.account,
            self.after.transaction_id,
            self.after.position,
            self.through.transaction_id,
            self.through.position,
            self.until_position,
            self.until_time,
        )


class Projection(Protocol):
    """A pure fold of the log into the tables it owns."""

    @property
    def name(self) -> str:
        """Stable name: the checkpoint's key."""
        ...

    @property
    def tables(self) -> Sequence[str]:
        """The tables it owns, each keyed by account first (rebuilt, swapped and compared)."""
        ...

    @property
    def purges(self) -> frozenset[str]:
        """The tombstones (deletions) that purge events this projection folds: meeting one, the
        runner rebuilds that account's rows (:func:`rebuild_account`)."""
        ...

    def apply(self, event: RecordedEvent) -> Sequence[Op]:
        """The statements that fold ``event`` in; [] for events it does not care about.
        Pure: the same event always gives the same statements."""
        ...

    def prepare(self, events: Sequence[RecordedEvent]) -> Sequence[Op]:
        """Statements run before a batch's folds (:meth:`apply` of each of ``events``, in
        order), in their transaction: work the folds would do event by event, done for the
        batch at once. The rows after the folds are the same with or without them. Pure; []
        for none. (A batch with a poison event is applied event by event, without them.)"""
        ...

    def rebuild(self, part: Slice) -> Sequence[Op]:
        """The set-based statements that fold ``part`` of the log into its tables (as found
        on the search path), in order."""
        ...

    def skipped(self, part: Slice) -> Op:
        """A query listing the events of ``part`` that :meth:`rebuild` leaves out for their
        data (account_id, position, transaction_id, event_id, stream, type)."""
        ...


# Rebuild statements take an account or none ("$1 IS NULL OR account_id = $1"): a generic
# plan would scan the whole log for one account, so they are planned for their parameters.
CUSTOM_PLANS = Op("SET LOCAL plan_cache_mode = force_custom_plan", ())
DEFAULT_PLANS = Op("SET LOCAL plan_cache_mode = auto", ())


def rebuild_account(projection: Projection, account: str, through: LogCursor) -> list[Op]:
    """The statements that rebuild one account's rows of ``projection`` from its part of the
    log up to ``through`` (a tombstone's cursor): after a purge, rows the removed events gave
    go, and everything the log still holds is folded in again."""
    delete = [
        Op(f"DELETE FROM {table} WHERE account_id = $1", (account,)) for table in projection.tables
    ]
    rebuild = projection.rebuild(Slice(account=account, through=through))
    return [CUSTOM_PLANS, *delete, *rebuild, DEFAULT_PLANS]
