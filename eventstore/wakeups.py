"""Wake-ups for readers of the log: LISTEN/NOTIFY as a hint, never as the delivery.

* :class:`Wakeups` is the in-process side: any number of waiters (tails, long-polls, streams)
  wait on one generation counter, so a thousand waiters cost nothing more than one.
* :class:`LogListener` holds the one dedicated connection that LISTENs (a pooled connection
  would be reset with ``UNLISTEN *``), reconnects when it is lost, and wakes every waiter after
  a reconnect, since notifications sent meanwhile are gone.
* :class:`KeyedWakeups` is :class:`Wakeups` per key (a server, an account), and
  :class:`HintFollower` the one loop that turns hints into a refresh (a query of what changed)
  and then wakes just the keys it names: any number of waiters cost one query per hint.
* :class:`Notifier` sends the NOTIFY after an append has committed. NOTIFY inside the writing
  transaction would take PostgreSQL's global notification lock across the commit's WAL flush
  and serialise every writer; sending it afterwards from one place, coalesced, keeps writers
  parallel. A lost hint costs latency only: every waiter also polls.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import asyncpg
import structlog
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential

from .database import CONNECTION_BROKEN, TRANSIENT_ERRORS
from .queries import QUERIES

log = structlog.get_logger(__name__)

DEFAULT_CHANNEL = "watchledger_events"
# What may go wrong sending a hint or closing a connection, none of it worth more than a log.
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (*TRANSIENT_ERRORS, asyncpg.InterfaceError)
_RECONNECT_ERRORS: tuple[type[BaseException], ...] = (*TRANSIENT_ERRORS, OSError)
# A follower outlives these: the database may be restarting, or still being migrated.
_INTERRUPTIONS: tuple[type[BaseException], ...] = (*CONNECTION_BROKEN, asyncpg.PostgresError)


class Wakeups:
    """A generation counter that waiters can block on."""

    def __init__(self) -> None:
        self._generation = 0
        self._changed = asyncio.Event()
        self._waiting = 0
        self._waiting_changed = asyncio.Event()

    @property
    def waiting(self) -> int:
        """How many are waiting right now."""
        return self._waiting

    async def until_waiting(self, count: int) -> None:
        """Return once at least ``count`` are waiting (for tests and diagnostics)."""
        while self._waiting < count:
            self._waiting_changed.clear()
            await self._waiting_changed.wait()

    @property
    def generation(self) -> int:
        """Take this before reading, then :meth:`wait` with it: no wake-up can fall between."""
        return self._generation

    def wake(self) -> None:
        self._generation += 1
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def wait(self, since: int, within: float | None) -> bool:
        """Wait until woken after generation ``since``; False if ``within`` seconds pass first."""
        if self._generation != since:
            return True
        changed = self._changed
        self._waiting += 1
        self._waiting_changed.set()
        try:
            async with asyncio.timeout(within):
                await changed.wait()
        except TimeoutError:
            return False
        finally:
            self._waiting -= 1
            self._waiting_changed.set()
        return True


class KeyedWakeups:
    """:class:`Wakeups` per key: a waiter is woken by its own key's changes only, or by
    :meth:`close` (the service is stopping: every waiter answers with what it has)."""

    def __init__(self) -> None:
        self._keys: dict[str, Wakeups] = {}
        self.closing = False

    def for_key(self, key: str) -> Wakeups:
        wakeups = self._keys.get(key)
        if wakeups is None:
            wakeups = self._keys[key] = Wakeups()
        return wakeups

    def wake(self, keys: Iterable[str]) -> None:
        """Wake whoever waits on one of ``keys`` (keys nobody ever waited on cost nothing)."""
        for key in keys:
            wakeups = self._keys.get(key)
            if wakeups is not None:
                wakeups.wake()

    def release(self, key: str) -> None:
        """Forget ``key`` (nobody waits on it any more): a key that had waiters once costs
        nothing afterwards."""
        self._keys.pop(key, None)

    @property
    def waiting(self) -> int:
        """Waiters right now, over all keys."""
        return sum(w.waiting for w in self._keys.values())

    def close(self) -> None:
        self.closing = True
        for wakeups in self._keys.values():
            wakeups.wake()


class HintFollower:
    """Calls ``refresh`` once per hint on ``hints`` (and every :attr:`poll` seconds in case one
    was lost), for as long as :meth:`run` runs.

    After a database error it calls ``refresh`` again after an exponential backoff up to
    ``max_backoff`` seconds, telling ``on_lost`` each time; the outage is logged once, when it
    starts, and its end once."""

    def __init__(
        self,
        name: str,
        hints: Wakeups,
        refresh: Callable[[], Awaitable[None]],
        *,
        poll: float = 1.0,
        max_backoff: float = 5.0,
        on_lost: Callable[[BaseException | None], None] | None = None,
    ) -> None:
        self.name = name
        self.poll = poll
        self._hints = hints
        self._refresh = refresh
        self._max_backoff = max_backoff
        self._on_lost = on_lost
        self._failing = False

    async def run(self) -> None:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(_INTERRUPTIONS),
            wait=wait_exponential(multiplier=self._max_backoff / 10, max=self._max_backoff),
            before_sleep=self._lost,
        ):
            with attempt:
                await self._follow()

    async def _follow(self) -> None:
        while True:
            generation = self._hints.generation
            await self._refresh()
            if self._failing:
                self._failing = False
                log.info("follower_resumed", follower=self.name)
            await self._hints.wait(generation, self.poll)

    def _lost(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        if not self._failing:
            log.warning("follower_interrupted", follower=self.name, error=type(error).__name__)
        self._failing = True
        if self._on_lost is not None:
            self._on_lost(error)


Connect = Callable[[], Awaitable["asyncpg.Connection[Any]"]]


class LogListener:
    """LISTENs on one or more channels over one dedicated connection; each channel has its
    own :class:`Wakeups` (:meth:`wakeups_for`), the first one's is :attr:`wakeups`."""

    def __init__(
        self,
        connect: Connect,
        *,
        channels: Sequence[str] = (DEFAULT_CHANNEL,),
        max_reconnect_delay: float = 5.0,
    ) -> None:
        if not channels:
            raise ValueError("a listener needs at least one channel")
        self._wakeups = {channel: Wakeups() for channel in channels}
        self.wakeups = self._wakeups[channels[0]]
        self._connect = connect
        self._max_delay = max_reconnect_delay
        self._conn: asyncpg.Connection[Any] | None = None
        self._lost = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.reconnects = 0

    def wakeups_for(self, channel: str) -> Wakeups:
        return self._wakeups[channel]

    @property
    def task(self) -> asyncio.Task[None] | None:
        return self._task

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    async def start(self) -> None:
        await self._open()
        self._task = asyncio.create_task(self._supervise(), name="log-listener")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            except (asyncpg.PostgresError, OSError) as exc:
                # It had died already (say, its database was dropped): a supervisor watching
                # the task has been told; closing is no place to raise it again.
                log.error("listener_failed", error=str(exc))
            self._task = None
        if self._conn is not None:
            with contextlib.suppress(*_CONNECTION_ERRORS):
                await self._conn.close(timeout=5)
            self._conn = None
        # Whoever still waits re-reads now rather than at its next poll.
        self._wake_all()

    def _wake_all(self) -> None:
        for wakeups in self._wakeups.values():
            wakeups.wake()

    async def _open(self) -> None:
        conn = await self._connect()
        conn.add_termination_listener(self._on_terminated)
        for channel in self._wakeups:
            await conn.add_listener(channel, self._on_notify)
        self._conn = conn
        self._lost.clear()

    def _on_notify(self, _conn: object, _pid: object, channel: str, _payload: object) -> None:
        self._wakeups[channel].wake()

    def _on_terminated(self, *_: object) -> None:
        self._lost.set()

    async def _supervise(self) -> None:
        while True:
            await self._lost.wait()
            log.warning("listener_connection_lost", channels=list(self._wakeups))
            self._conn = None
            self._wake_all()
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(_RECONNECT_ERRORS),
                wait=wait_exponential(multiplier=0.05, max=self._max_delay),
            ):
                with attempt:
                    await self._open()
            self.reconnects += 1
            log.info("listener_reconnected", reconnects=self.reconnects)
            self._wake_all()


class Notifier:
    """Sends one NOTIFY for any number of :meth:`poke` calls made while the last one was sent."""

    def __init__(self, pool: asyncpg.Pool[Any], *, channel: str = DEFAULT_CHANNEL) -> None:
        self._pool = pool
        self._channel = channel
        self._pending = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.sent = 0

    def poke(self) -> None:
        self._pending.set()

    @property
    def task(self) -> asyncio.Task[None] | None:
        return self._task

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"notifier:{self._channel}")

    async def close(self) -> None:
        if self._task is None:
            return
        if self._pending.is_set():
            # Flush the last hint so a waiter elsewhere does not wait for its poll.
            with contextlib.suppress(*_CONNECTION_ERRORS):
                await self._send()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def _send(self) -> None:
        self._pending.clear()
        await self._pool.execute(QUERIES["notify"], self._channel)
        self.sent += 1

    async def _run(self) -> None:
        failing = False
        while True:
            await self._pending.wait()
            try:
                await self._send()
            except _CONNECTION_ERRORS as exc:
                # Waiters poll anyway; try again shortly rather than spin on a broken database.
                # Said once per outage, not twice a second through it.
                if not failing:
                    log.warning("notify_failed", channel=self._channel, error=type(exc).__name__)
                failing = True
                self._pending.set()
                await asyncio.sleep(0.5)
            else:
                if failing:
                    log.info("notify_resumed", channel=self._channel)
                failing = False
