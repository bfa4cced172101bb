"""What a connector does, whatever the media server (``connectors.md``, "What a connector does").

* **Intake.** A webhook names an item: the connector reads the item again, with the user's
  data, and compares it with what it last saw. A poll does the same for every item. What changed
  becomes server events in the outbox, recorded in the same local transaction as what was seen,
  and the sender takes them to watchledger.
* **Outbound.** Changes are applied under one lock with the looks: the item is read, anything
  the user changed there that is not yet reported is reported (and that field is left alone:
  watchledger decides), then only what differs is written, then the item is read again and that
  is what is seen. A write is recorded as in progress before it is made, so a crash between
  write and record does not turn it into the user's action at the next look.
* **Echoes.** What the connector wrote is what it saw afterwards, so the webhook or the poll
  that follows finds nothing new; and a read made before one of its own writes to the item is
  not compared at all (it is older than what is recorded).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import structlog

from services.http.wire import BaselineRequest, Change, StateChange

from .config import ConnectorConfig
from .metrics import ConnectorMetrics
from .model import (
    Item,
    MediaServer,
    MediaServerError,
    MediaServerRefused,
    MediaUser,
    Observed,
    UserData,
)
from .state import LocalState
from .upstream import Backoff, Sender, Watchledger, WatchledgerUnavailable, retrying

log = structlog.get_logger(__name__)

T = TypeVar("T")
Event = dict[str, object]

# An unplayed item that the library added this recently is a replaced file (Jellyfin's "date
# scanned"), not an unwatched.
ADDED_GRACE = timedelta(hours=24)
# How long one long-poll of changes holds.
CHANGES_WAIT = 30.0


def _now() -> datetime:
    return datetime.now(UTC)


def _written(before: UserData, after: UserData, fields: set[str]) -> UserData:
    """What is seen after writing ``fields``: those as the server now has them (a Plex scrobble
    stamps its own date), every other field as it was read before the write, so a change the
    user made meanwhile is still a change at the next look, not taken for the write's."""
    played = after if "played" in fields else before
    rated = after if "rating" in fields else before
    return UserData(
        played.played, played.viewed_at, rated.rating, rated.rated_at, played.in_progress
    )


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


class Connector:
    """One media server bridged to watchledger."""

    def __init__(
        self,
        config: ConnectorConfig,
        server: MediaServer,
        upstream: Watchledger,
        state: LocalState,
        metrics: ConnectorMetrics,
        *,
        backoff: Backoff | None = None,
        sender_window: float = 0.25,
    ) -> None:
        self.config = config
        self.server = server
        self.upstream = upstream
        self.state = state
        self.metrics = metrics
        self.backoff = backoff or Backoff()
        self.sender = Sender(state, upstream, metrics, backoff=self.backoff, window=sender_window)
        metrics.deferred.set_function(state.deferred_count)
        self.users: list[MediaUser] = []
        self._by_name: dict[str, MediaUser] = {}
        self._by_account: dict[str, list[MediaUser]] = {}
        # Looks and writes take turns; a write's sequence number tells a look whose read was
        # made before it (and is older than what the write recorded).
        self._lock = asyncio.Lock()
        # Changes are applied one at a time, in the order watchledger delivered them (the kept
        # ones of titles not in the library too).
        self._applying = asyncio.Lock()
        self._seq = 0
        self._writes: dict[tuple[str, str], int] = {}
        self._retry_looks: set[tuple[str, str]] = set()
        self._poll_now = asyncio.Event()
        self.polls_done = 0
        self.listening_port = 0
        # Answers of the changes feed that were empty: each one says that everything delivered
        # before it was applied and acknowledged.
        self.changes_drained = 0
        self._drained = asyncio.Condition()
        self._polled = asyncio.Condition()
        # "Now", for times the server does not give (an unwatched noticed by a poll).
        self.clock: Callable[[], datetime] = _now

    # -- start ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Check both sides (tokens, users), retrying while either cannot be reached."""
        server = await self._media(self.server.identify, "identify the media server")
        registered = await self._upstream_call(self.upstream.server, "check the server token")
        configured = [(u.media_user, u.account, u.token) for u in self.config.users]
        self.users = await self._media(lambda: self.server.users(configured), "list users")
        for user in self.users:
            for name in user.names:
                self._by_name[name] = user
            self._by_account.setdefault(user.account, []).append(user)
        log.info(
            "connector_started",
            kind=self.server.kind,
            media_server=server,
            server_id=registered.get("id"),
            users=len(self.users),
        )

    # -- intake: webhooks ----------------------------------------------------------------------

    async def on_webhook(self, body: bytes, content_type: str) -> str:
        """Take one webhook request (raises :class:`~.model.BadWebhook`); the outcome, for the
        metrics: accepted, ignored, no_user, unmapped_user or deferred."""
        hooks = self.server.hooks(body, content_type)
        if not hooks:
            return "ignored"
        outcome = "ignored"
        for hook in hooks:
            if hook.event == "added":
                self.state.mark_added(hook.item_id, self.clock())
                outcome = "accepted"
                continue
            if not hook.users:
                outcome = "no_user"  # never guessed: the poll will see the change
                continue
            user = next((self._by_name[n] for n in hook.users if n in self._by_name), None)
            if user is None:
                outcome = "unmapped_user"
                continue
            if hook.played is not None and not hook.about_rating:
                seen = self.state.seen(user.key, hook.item_id)
                if seen is not None and seen.played == hook.played:
                    continue  # a progress save: nothing a watch state cares about
            try:
                await self.look(user, hook.item_id, at=hook.at)
            except MediaServerError as exc:
                self.metrics.errors.labels(side="media_server").inc()
                log.warning("webhook_deferred", error=str(exc))
                self._retry_looks.add((user.key, hook.item_id))
                self._poll_now.set()
                return "deferred"
            outcome = "accepted"
        return outcome

    async def look(self, user: MediaUser, item_id: str, *, at: datetime | None = None) -> None:
        """Read one item again and report what changed since it was last seen."""
        before = self._seq
        observed = await self.server.read(user, item_id)
        if observed is None:
            return
        mapped = self.state.remember_items([observed.item])
        async with self._lock:
            self._take(user, [observed], before, hook_at=at)
        self.sender.wake()
        if mapped and self.state.deferred_named(mapped):
            self.poll_soon()  # a kept change is due: the poller applies it (not this webhook)

    def _take(
        self,
        user: MediaUser,
        observed: Sequence[Observed],
        before: int,
        *,
        hook_at: datetime | None = None,
        silent: bool = False,
    ) -> int:
        """Compare items read (before the write numbered ``before``) with what was seen,
        record them and queue the events of what changed (none if ``silent``: a user's first
        scan). The number of events queued."""
        seen = self.state.seen_many(user.key, [o.item.item_id for o in observed])
        records: list[tuple[str, UserData]] = []
        events: list[Event] = []
        done: list[str] = []
        now = self.clock()
        for o in observed:
            item_id = o.item.item_id
            if self._writes.get((user.key, item_id), 0) > before:
                continue  # read before one of our own writes to it: older than what is seen
            old = seen.get(item_id)
            if old == o.data:
                continue
            records.append((item_id, o.data))
            applying = self.state.applying(user.key, item_id)
            if applying:
                done.append(item_id)
            if not silent:
                events += self._changes(user, o.item, old, o.data, applying, now, hook_at)
        self.state.record(user.key, records, events, done_applying=done)
        return len(events)

    def _changes(
        self,
        user: MediaUser,
        item: Item,
        old: UserData | None,
        new: UserData,
        applying: dict[str, object],
        now: datetime,
        hook_at: datetime | None,
    ) -> list[Event]:
        """The server events saying how ``old`` became ``new`` (old None: first sight)."""
        events: list[Event] = []
        when = min(hook_at or now, now)
        if "played" in applying and applying["played"] == new.played:
            pass  # our own write, recorded as seen only now
        elif new.played and (old is None or not old.played):
            events.append(self._event(user, item, "watched", new.viewed_at, now))
        elif (
            new.played
            and old is not None
            and new.viewed_at is not None
            and (old.viewed_at is None or new.viewed_at > old.viewed_at)
        ):
            events.append(self._event(user, item, "watched", new.viewed_at, now))  # seen again
        elif (
            old is not None
            and old.played
            and not new.played
            and not new.in_progress  # Jellyfin unplays a watched video when it is played again
            and not self.state.added_since(item.item_id, now - ADDED_GRACE)
        ):
            events.append(self._event(user, item, "unwatched", when, now))
        old_rating = None if old is None else old.rating
        if "rating" in applying and applying["rating"] == new.rating:
            pass
        elif new.rating != old_rating:
            if new.rating is None:
                events.append(self._event(user, item, "unrated", when, now))
            else:
                rated = self._event(user, item, "rated", new.rated_at or when, now)
                rated["rating"] = new.rating
                events.append(rated)
        return events

    @staticmethod
    def _event(
        user: MediaUser,
        item: Item,
        kind: str,
        at: datetime | None,
        now: datetime,
        *,
        baseline: bool = False,
    ) -> Event:
        """One server event: only what ``api.md`` names (rule 2: nothing of where it happened)."""
        event: Event = {"account": user.account, "type": kind, "guid": item.ids[0]}
        if len(item.ids) > 1:
            event["ids"] = list(item.ids[1:])
        if at is not None:
            event["at"] = _iso(min(at, now))
        if item.edition:
            event["edition"] = item.edition
        if baseline:
            event["baseline"] = True
        return event

    # -- intake: polling -----------------------------------------------------------------------

    async def poll_forever(self) -> None:
        """Poll every user's watch data each ``poll_interval`` (at once when asked)."""
        while True:
            started = time.monotonic()
            try:
                await self.poll()
            except MediaServerError as exc:
                self.metrics.errors.labels(side="media_server").inc()
                log.warning("poll_failed", error=str(exc))
            else:
                self.metrics.polls.observe(time.monotonic() - started)
                self.metrics.polled()
            async with self._polled:
                self.polls_done += 1
                self._polled.notify_all()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poll_now.wait(), self.config.poll_interval)
            self._poll_now.clear()

    def poll_soon(self) -> None:
        self._poll_now.set()

    async def polled(self, after: int) -> None:
        """Until more than ``after`` polls have ended."""
        async with self._polled:
            await self._polled.wait_for(lambda: self.polls_done > after)

    async def poll(self) -> None:
        """One full poll: every mapped user's items (a user's first is only recorded)."""
        for key, item_id in sorted(self._retry_looks):
            user = next(u for u in self.users if u.key == key)
            await self.look(user, item_id)
            self._retry_looks.discard((key, item_id))
        for user in self.users:
            first = self.state.get(f"scanned:{user.key}") is None
            queued = await self._scan(user, silent=first)
            if first:
                self.state.put(f"scanned:{user.key}", _iso(self.clock()))
            log.info("user_polled", kind=self.server.kind, first=first, events=queued)
        self.sender.wake()
        await self.apply_deferred()

    async def _scan(self, user: MediaUser, *, silent: bool) -> int:
        """Read every item with the user's data, and report what changed (nothing if
        ``silent``)."""
        queued = 0
        pages = self.server.scan(user).__aiter__()
        while True:
            before = self._seq
            try:
                page = await pages.__anext__()
            except StopAsyncIteration:
                return queued
            self.state.remember_items(o.item for o in page)
            async with self._lock:
                queued += self._take(user, page, before, silent=silent)

    # -- outbound ------------------------------------------------------------------------------

    async def follow_changes(self) -> None:
        """Long-poll watchledger's changes and apply them. The cursor is passed (acknowledging
        them) only once all were applied or skipped, at once and without waiting, so the
        acknowledgement is confirmed by the answer (empty: nothing else pending) before the
        next long-poll holds."""
        cursor = self.state.get("changes_cursor")
        wait = 0.0  # catch up first: the first empty answer says all pending was applied
        while True:
            changes, next_cursor = await self._upstream_call(
                lambda cursor=cursor, wait=wait: self.upstream.changes(cursor, wait),  # type: ignore[misc]
                "read changes",
            )
            for change in changes:
                await self._media(lambda change=change: self.apply(change), "apply a change")  # type: ignore[misc]
            if next_cursor != cursor:
                self.state.put("changes_cursor", next_cursor)
                cursor = next_cursor
            wait = 0.0 if changes else CHANGES_WAIT
            if not changes:
                async with self._drained:
                    self.changes_drained += 1
                    self._drained.notify_all()

    async def drained(self, after: int) -> None:
        """Until more than ``after`` answers of the changes feed were empty (everything
        delivered before the last of them is applied and acknowledged)."""
        async with self._drained:
            await self._drained.wait_for(lambda: self.changes_drained > after)

    async def apply(self, change: Change) -> None:
        """Apply one change to every item of its title, for every user of its account."""
        async with self._applying:
            if isinstance(change, BaselineRequest):
                await self.baseline(change.account)
                self.metrics.changes.labels(outcome="baseline").inc()
            else:
                await self._apply_state(change)

    async def apply_deferred(self) -> None:
        """Apply the kept changes whose titles the library now holds (read under the lock: a
        newer change may have replaced them). Each stays kept until it is applied: a failure
        leaves it for the next poll."""
        async with self._applying:
            for change in self.state.deferred_in_library():
                log.info("deferred_change_due", kind=self.server.kind)
                await self._apply_state(change)

    async def _apply_state(self, change: StateChange) -> None:
        started = time.monotonic()
        users = self._by_account.get(change.account, [])
        if not users:
            self.metrics.changes.labels(outcome="unmapped_account").inc()
            return
        if change.watched is None and change.rated_at is None:
            self.state.undefer(change.account, change.ids)  # a kept older one is void too
            self.metrics.changes.labels(outcome="no_state").inc()  # deleted or unknown: untouched
            return
        item_ids = self.state.items_named(change.ids)
        if not item_ids:
            # Kept (it is acknowledged) and applied if an item of the title appears.
            self.state.defer(change)
            self.metrics.changes.labels(outcome="not_in_library").inc()
            return
        for user in users:
            for item_id in item_ids:
                outcome = await self._apply_item(user, item_id, change)
                self.metrics.changes.labels(outcome=outcome).inc()
        # Only now: had a write failed, a kept change would have stayed kept.
        self.state.undefer(change.account, change.ids)
        self.metrics.apply.observe(time.monotonic() - started)

    async def _apply_item(self, user: MediaUser, item_id: str, change: StateChange) -> str:
        async with self._lock:
            try:
                observed = await self.server.read(user, item_id)
            except MediaServerRefused:
                observed = None
            if observed is None:
                return "not_in_library"
            current = observed.data
            old = self.state.seen(user.key, item_id)
            applying = self.state.applying(user.key, item_id)
            # What the user changed here and no one reported yet goes first, and its field is
            # left alone: watchledger decides, and sends a change if this one lost.
            local = (
                self._changes(user, observed.item, old, current, applying, self.clock(), None)
                if old is not None and old != current
                else []
            )
            local_played = any(e["type"] in ("watched", "unwatched") for e in local)
            local_rating = any(e["type"] in ("rated", "unrated") for e in local)
            writes: list[tuple[str, Callable[[], Awaitable[None]]]] = []
            if not local_played and change.watched is not None:
                if change.watched and not current.played:
                    at = change.watched_at if self.server.takes_play_date else None
                    writes.append(("played", lambda: self.server.mark_played(user, item_id, at)))
                elif not change.watched and current.played:
                    writes.append(("unplayed", lambda: self.server.mark_unplayed(user, item_id)))
            if not local_rating and change.rated_at is not None and change.rating != current.rating:
                rating, rated_at = change.rating, change.rated_at
                writes.append(
                    (
                        "rated" if rating is not None else "unrated",
                        lambda: self.server.rate(user, item_id, rating, rated_at),
                    )
                )
            if not writes:
                self.state.record(user.key, [(item_id, current)], local)
                if local:
                    self.sender.wake()
                return "local_change_first" if local else "already_set"
            for name, _ in writes:
                field = "rating" if name in ("rated", "unrated") else "played"
                value: object = change.rating if field == "rating" else name == "played"
                self.state.begin_applying(user.key, item_id, field, value)
            self._seq += 1
            self._writes[(user.key, item_id)] = self._seq
            for name, write in writes:
                await write()
                self.metrics.writes.labels(write=name).inc()
            after = await self.server.read(user, item_id)
            written = {"rating" if name in ("rated", "unrated") else "played" for name, _ in writes}
            data = current if after is None else _written(current, after.data, written)
            self.state.record(user.key, [(item_id, data)], local, done_applying=[item_id])
            self._forget_old_writes()
        if local:
            self.sender.wake()
        log.info("change_applied", kind=self.server.kind, writes=[name for name, _ in writes])
        return "applied"

    def _forget_old_writes(self) -> None:
        if len(self._writes) > 10_000:
            keep = self._seq - 5_000
            self._writes = {k: v for k, v in self._writes.items() if v > keep}

    async def baseline(self, account: str) -> None:
        """Upload the account's baseline (rule 7): for each of its users, one record per title
        watched (with its most recent viewing) and one per title rated."""
        now = self.clock()
        for user in self._by_account.get(account, []):
            events = 0
            pages = self.server.scan(user).__aiter__()
            while True:
                before = self._seq
                try:
                    page = await pages.__anext__()
                except StopAsyncIteration:
                    break
                self.state.remember_items(o.item for o in page)
                async with self._lock:
                    self._take(user, page, before, silent=True)
                    batch: list[Event] = []
                    for o in page:
                        if o.data.played:
                            batch.append(
                                self._event(
                                    user, o.item, "watched", o.data.viewed_at, now, baseline=True
                                )
                            )
                        if o.data.rating is not None:
                            rated = self._event(
                                user, o.item, "rated", o.data.rated_at, now, baseline=True
                            )
                            rated["rating"] = o.data.rating
                            batch.append(rated)
                    self.state.queue(batch)
                    events += len(batch)
            self.state.put(f"scanned:{user.key}", _iso(now))
            log.info("baseline_queued", kind=self.server.kind, events=events)
        self.sender.wake()

    # -- retries -------------------------------------------------------------------------------

    async def _media(self, call: Callable[[], Awaitable[T]], what: str) -> T:
        return await self._retried(call, what, MediaServerError, "media_server")

    async def _upstream_call(self, call: Callable[[], Awaitable[T]], what: str) -> T:
        return await self._retried(call, what, WatchledgerUnavailable, "watchledger")

    async def _retried(
        self,
        call: Callable[[], Awaitable[T]],
        what: str,
        error: type[Exception],
        side: str,
    ) -> T:
        """``call``, retried with backoff while it raises ``error`` (each counted against
        ``side``)."""
        async for attempt in retrying((error,), self.backoff, what):
            with attempt:
                try:
                    return await call()
                except error:
                    self.metrics.errors.labels(side=side).inc()
                    raise
        raise AssertionError("unreachable: tenacity reraises the last error")
