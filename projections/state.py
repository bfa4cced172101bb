"""The watch state projection: each account's current watch state and rating per title
(product rule 4), which accounts sync and which servers each one has access to (rules 3 and
8) — and, as state changes, the servers' outbound queues (:mod:`projections.queues`).

One handler per event type (``functools.singledispatch``) returns the statements that fold
the event in. Last-writer-wins lives in the SQL (a conditional upsert on (at, position)), so
applying the same events in any order of arrival — and replaying them — gives the same rows.
A title is queued for an account's servers exactly when its state changes (a late, older event
queues nothing), in the same transaction, so a server is never handed a queued title ahead of
the state it points to.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from functools import singledispatch

from eventstore import Event, RecordedEvent
from eventstore.queries import load_queries

from . import queues
from .domain import (
    TOMBSTONES,
    AccessAccepted,
    AccessLeft,
    AccessRevoked,
    AccountCreated,
    Rated,
    ServerRegistered,
    SyncChanged,
    Unrated,
    Unwatched,
    Watched,
    WatchStateKept,
    guid_kind,
    id_rank,
)
from .events import account_event, check_stored
from .protocol import Op, Slice

QUERIES = load_queries("projections", "sql/state.sql")

TABLES = ("watch_state", "title_ids", "sync_accounts", "sync_access")
# The folds with a set-based form for a run of actions naming their title by one id (the
# common case: no link to make, so the run's titles are found with one join).
_SET_BASED = frozenset({"state_watch", "state_rate"})
# The rating a fold can store (smallint): an event with another is dead-lettered.
_SMALLINT = range(-(2**15), 2**15)


def _named_ids(recorded: RecordedEvent) -> tuple[str, frozenset[str]] | None:
    """(account, the ids it names its title by) of a watch action the live fold will fold;
    None for any other event, or one it will dead-letter."""
    if recorded.type not in ("watched", "unwatched", "rated", "unrated"):
        return None
    try:
        decoded = account_event(recorded)
        check_stored(recorded, "watch")
    except Exception:  # noqa: BLE001 - its fold dead-letters it; this only looks ahead
        return None
    if decoded is None:
        return None
    account, event = decoded
    if not isinstance(event, Watched | Unwatched | Rated | Unrated):
        return None
    if isinstance(event, Rated) and event.rating not in _SMALLINT:
        return None
    return account, frozenset((event.guid, *event.ids))


def _titled(query: str, ids: list[str], args: tuple[object, ...]) -> Op:
    """The fold ``query`` (state_watch, state_keep or state_rate) for an action naming its
    title by ``ids`` (its guid first); of several ids, its ``_titled`` form, told the title the
    ids name once linked and the others, which finds a title already linked with one look at
    its links instead of a look-up of each id. The title told is the first in shown order of
    the guid and the first other id (a decided action's others are in shown order); told
    another, the database finds out and links the ids as title_link does. Of one id (the
    common case), its ``_one`` form where it has one, which the runner folds a run of with one
    set-based statement (``_many``)."""
    title = min(ids[0], ids[1], key=id_rank) if len(ids) > 1 else ids[0]
    others = [i for i in ids if i != title]
    if others:
        return Op(QUERIES[f"{query}_titled"], (args[0], title, *args[2:], others))
    if query in _SET_BASED:
        # One id: its ``_one`` form, which a run of such actions folds with one statement.
        return Op(QUERIES[f"{query}_one"], (args[0], title, *args[2:]), QUERIES[f"{query}_many"])
    return Op(QUERIES[query], args)


@singledispatch
def _fold(event: Event, account: str, recorded: RecordedEvent) -> list[Op]:
    return []


@_fold.register
def _(event: Watched | Unwatched, account: str, recorded: RecordedEvent) -> list[Op]:
    check_stored(recorded, "watch")
    ids = [event.guid, *event.ids]
    args = (
        account,
        ids,
        guid_kind(event.guid),
        isinstance(event, Watched),
        event.at,
        recorded.position,
        recorded.recorded_at,
    )
    return [_titled("state_watch", ids, args)]


@_fold.register
def _(event: WatchStateKept, account: str, recorded: RecordedEvent) -> list[Op]:
    check_stored(recorded, "watch")
    ids = [event.guid, *event.ids]
    args = (
        account,
        ids,
        guid_kind(event.guid),
        event.watched,
        event.at,
        recorded.position,
        event.recorded_at,
    )
    return [_titled("state_keep", ids, args)]


@_fold.register
def _(event: Rated | Unrated, account: str, recorded: RecordedEvent) -> list[Op]:
    check_stored(recorded, "watch")
    rating = event.rating if isinstance(event, Rated) else None
    ids = [event.guid, *event.ids]
    args = (
        account,
        ids,
        guid_kind(event.guid),
        rating,
        event.at,
        recorded.position,
        recorded.recorded_at,
    )
    return [_titled("state_rate", ids, args)]


@_fold.register
def _(event: AccountCreated, account: str, recorded: RecordedEvent) -> list[Op]:
    return [Op(QUERIES["account_add"], (account,))]


@_fold.register
def _(event: SyncChanged, account: str, recorded: RecordedEvent) -> list[Op]:
    setting = Op(QUERIES["account_sync"], (account, event.enabled))
    if event.enabled:
        # Every server the account has access to gets its whole state and a baseline request.
        return [setting, queues.backfill(account)]
    return [setting, queues.drop_account(account)]


@_fold.register
def _(event: ServerRegistered | AccessAccepted, account: str, recorded: RecordedEvent) -> list[Op]:
    # While sync is on, a server newly accessible gets the whole state and a baseline request.
    # An offer (access_offered, or a legacy access_granted) gives the server nothing until the
    # account accepts it (product rule 3).
    return [
        Op(QUERIES["access_add"], (account, event.server_id)),
        queues.backfill(account, event.server_id),
    ]


@_fold.register
def _(event: AccessRevoked | AccessLeft, account: str, recorded: RecordedEvent) -> list[Op]:
    return [
        Op(QUERIES["access_remove"], (account, event.server_id)),
        queues.drop_server(account, event.server_id),
    ]


class WatchStateProjection:
    """Each account's current watch state and rating per title, and what the outbound queues
    are decided on (who syncs, which servers have access)."""

    name = "watch_state"
    tables = TABLES
    purges = TOMBSTONES

    def apply(self, event: RecordedEvent) -> Sequence[Op]:
        decoded = account_event(event)
        return [] if decoded is None else _fold(decoded[1], decoded[0], event)

    def prepare(self, events: Sequence[RecordedEvent]) -> Sequence[Op]:
        """The first links of the batch's new ids, in one statement: each id of an action
        naming its title by several ids, when the account never used it (no link, title, state
        or pending change of its) and no other action of the batch shares its set, is linked
        to the set's title (its first id in shown order, unless that is linked to another) as
        the action's fold would link it (title_link, its dearest kind of call); linked first,
        the fold finds the title with one look. Anything else — a merge, ids two sets of the
        batch share — is left to the folds, in order. Links are a union, so linking these
        first changes no row."""
        # Each account's distinct sets of ids, in the order of the batch (so the statement is
        # the same for the same events).
        sets: dict[str, dict[tuple[str, ...], None]] = defaultdict(dict)
        for event in events:
            named = _named_ids(event)
            if named is not None and len(named[1]) > 1:
                sets[named[0]][tuple(sorted(named[1]))] = None
        accounts: list[str] = []
        titles: list[str] = []
        ids: list[str] = []
        for account, found in sets.items():
            uses = Counter(i for ids_of_set in found for i in ids_of_set)
            for ids_of_set in found:
                if any(uses[i] > 1 for i in ids_of_set):
                    continue
                title = min(ids_of_set, key=id_rank)
                others = [i for i in ids_of_set if i != title]
                accounts += [account] * len(others)
                titles += [title] * len(others)
                ids += others
        return [Op(QUERIES["state_link_fresh"], (accounts, titles, ids))] if ids else []

    def rebuild(self, part: Slice) -> Sequence[Op]:
        # The cut first (a state deletion in the slice forgets what earlier slices gave), then
        # the links (so the folds find every event's title), then the folds, each of which
        # leaves out what precedes the slice's last deletion.
        return [
            Op(QUERIES[name], part.args)
            for name in (
                "rebuild_state_cut",
                "rebuild_title_links",
                "rebuild_state_watch",
                "rebuild_state_rate",
                "rebuild_state_accounts",
                "rebuild_state_access",
            )
        ]

    def skipped(self, part: Slice) -> Op:
        return Op(QUERIES["rebuild_state_skipped"], part.args)
