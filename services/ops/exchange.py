"""What this release checks, and writes beside the log, when events are imported
(``watchledger events import``; the event store's :mod:`eventstore.exchange` does the rest)."""

from __future__ import annotations

import uuid

from eventstore import EventStoreError, StreamName
from eventstore.database import Connection
from eventstore.exchange import ExportedEvent
from projections import domain
from services.commands.servers import restore_registration, restore_token


class ImportRules:
    """Only event types this release knows, with data it can read, may be imported; and a
    server registered in an account's stream gets its registry row in the same transaction,
    exactly as registration writes it, so its token works (and a later new token of it
    replaces the row's, so only that one works, as here)."""

    def check(self, event: ExportedEvent) -> None:
        if not domain.registry.is_known(event.type):
            raise ValueError(f"unknown event type {event.type!r}")
        try:
            domain.registry.decode(event.recorded())
        except EventStoreError as exc:
            raise ValueError(str(exc)) from exc
        except ValueError as exc:  # msgspec's errors of the data's shape are ValueErrors
            raise ValueError(f"{event.type} data: {exc}") from exc

    def keys(self, event: ExportedEvent) -> tuple[uuid.UUID, ...]:
        """A watch action's natural keys (product rule 5), which an earlier release's export
        may lack (it had one, under the action's guid)."""
        stream = StreamName.parse(event.stream)
        if stream.category != "watch":
            return ()
        action = domain.registry.decode(event.recorded())
        if not isinstance(action, domain.WatchAction):
            return ()
        rating = action.rating if isinstance(action, domain.Rated) else None
        ids = (action.guid, *action.ids)
        return domain.natural_keys(stream.id, ids, event.type, action.at, rating)

    def concerns(self, event: ExportedEvent) -> bool:
        return event.type in _REGISTRY_EVENTS and (
            StreamName.parse(event.stream).category == "account"
        )

    async def apply(self, conn: Connection, event: ExportedEvent) -> None:
        decoded = domain.registry.decode(event.recorded())
        owner = StreamName.parse(event.stream).id
        if isinstance(decoded, domain.ServerTokenReplaced):
            await restore_token(conn, owner, decoded)
        else:
            assert isinstance(decoded, domain.ServerRegistered)
            await restore_registration(conn, owner, decoded)


# The owner's events the servers' registry follows: a registration, a new token.
_REGISTRY_EVENTS = frozenset(
    {domain.ServerRegistered.event_type, domain.ServerTokenReplaced.event_type}
)
