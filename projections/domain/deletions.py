"""Decisions on deleting an account's watch history (product rule 10) and its watch state and
ratings (rule 11). Pure: given what the account's watch stream holds, which events to remove,
what to keep, and the tombstone to leave.

Both remove events physically (the store's sanctioned purge) and leave a content-free
tombstone in the same transaction; the projections, meeting it, rebuild the account from what
the log still holds, so a replay gives what the live projections show.

* **History**: every watched and unwatched record goes. The state they decided does not
  change: it is carried past the deletion as one :class:`WatchStateKept` per id the records
  named their titles by (with the other ids they listed, so their links stay), appended
  just before the tombstone (a state, not a record: it adds no history, counts nothing, and
  reaches no feed and no server). States kept by an earlier deletion are replaced by these.
* **State & ratings**: allowed only while sync is off. Every rating event and every kept state
  goes; the watch records stay, as history, but decide no state any more: the
  :class:`StateDeleted` tombstone cuts them off (a projection ignores what precedes it).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import NamedTuple

from eventstore import Event, EventStoreError, RecordedEvent

from .account import Account
from .errors import DomainError
from .events import (
    HistoryDeleted,
    Rated,
    StateDeleted,
    Unrated,
    Unwatched,
    Watched,
    WatchStateKept,
    registry,
)
from .titles import TitleLinks, shown_order


class SyncEnabled(DomainError):
    """Watch state and ratings can only be deleted while sync is off."""

    code = "sync_enabled"


class Deletion(NamedTuple):
    """What a deletion does: remove the events at ``purge``, append ``kept``, then the
    ``tombstone``; ``deleted`` is what the API reports (history records removed, or titles
    whose state was removed)."""

    purge: list[int]
    kept: list[Event]
    tombstone: Event
    deleted: int


_WatchEvent = Watched | Unwatched | Rated | Unrated | WatchStateKept


def _decoded(
    events: Iterable[RecordedEvent],
) -> list[tuple[RecordedEvent, _WatchEvent | None, bool]]:
    """(recorded, event, after the last state deletion) for the stream's watch events; the
    event is None when it cannot be read (a poison event: it is removed all the same, and
    decides nothing, as in the projections)."""
    events = list(events)
    cut = max((e.position for e in events if e.type == StateDeleted.event_type), default=0)
    decoded: list[tuple[RecordedEvent, _WatchEvent | None, bool]] = []
    for recorded in events:
        if recorded.type not in _TYPES:
            continue
        try:
            event = registry.decode(recorded)
        except (EventStoreError, ValueError):  # msgspec's errors of shape are ValueErrors
            event = None
        readable = event if isinstance(event, _WatchEvent) else None
        decoded.append((recorded, readable, recorded.position > cut))
    return decoded


_TYPES = frozenset(
    {
        Watched.event_type,
        Unwatched.event_type,
        Rated.event_type,
        Unrated.event_type,
        WatchStateKept.event_type,
    }
)
_HISTORY = frozenset({Watched.event_type, Unwatched.event_type})
_STATE = frozenset({Rated.event_type, Unrated.event_type, WatchStateKept.event_type})


class _Deciding(NamedTuple):
    at: datetime
    position: int
    watched: bool
    recorded_at: datetime


def delete_history(events: Sequence[RecordedEvent]) -> Deletion:
    """Rule 10, over every event of the account's watch stream."""
    purge: list[int] = []
    deciding: dict[str, _Deciding] = {}
    linked: dict[str, set[str]] = {}  # each guid's other ids, as the purged events listed them
    records = 0
    for recorded, event, after_cut in _decoded(events):
        if recorded.type in _HISTORY:
            records += 1
        if recorded.type in _HISTORY or recorded.type == WatchStateKept.event_type:
            purge.append(recorded.position)
            if isinstance(event, Watched | Unwatched | WatchStateKept):
                linked.setdefault(event.guid, set()).update(event.ids)
        if isinstance(event, Watched | Unwatched):
            candidate = _Deciding(
                event.at, recorded.position, isinstance(event, Watched), recorded.recorded_at
            )
        elif isinstance(event, WatchStateKept):
            candidate = _Deciding(event.at, recorded.position, event.watched, event.recorded_at)
        else:
            continue
        if not after_cut:
            continue
        current = deciding.get(event.guid)
        if current is None or (candidate.at, candidate.position) > (current.at, current.position):
            deciding[event.guid] = candidate
    kept: list[Event] = [
        WatchStateKept(
            guid=guid,
            watched=d.watched,
            at=d.at,
            recorded_at=d.recorded_at,
            ids=tuple(shown_order(linked.get(guid, set()) - {guid})),
        )
        for guid, d in sorted(deciding.items())
    ]
    return Deletion(purge, kept, HistoryDeleted(), records)


def delete_state(account: Account, events: Sequence[RecordedEvent]) -> Deletion:
    """Rule 11, over every event of the account's watch stream; raises :class:`SyncEnabled`
    while sync is on."""
    if account.sync_enabled:
        raise SyncEnabled("turn sync off to delete the watch state and ratings")
    purge: list[int] = []
    watched: set[str] = set()
    rating: dict[str, tuple[datetime, int, bool]] = {}
    links = TitleLinks()
    for recorded, event, after_cut in _decoded(events):
        if recorded.type in _STATE:
            purge.append(recorded.position)
        if event is not None:
            links.link(event.guid, *event.ids)
        if not after_cut:
            continue
        if isinstance(event, Watched | Unwatched | WatchStateKept):
            watched.add(event.guid)
        elif isinstance(event, Rated | Unrated):
            latest = rating.get(event.guid)
            if latest is None or (event.at, recorded.position) > latest[:2]:
                rating[event.guid] = (event.at, recorded.position, isinstance(event, Rated))
    # A title may have been named by several ids (rule 1b): it counts once.
    named = watched | {guid for guid, (_, _, rated) in rating.items() if rated}
    return Deletion(purge, [], StateDeleted(), len({links.title(guid) for guid in named}))
