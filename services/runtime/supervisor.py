"""The supervisor: the one owner of every background task of the process.

Whatever runs in the background — the projection runners, the projection progress tracker,
the servers' queue wake-ups, the event store's notifier and LISTEN connection — is started
through it, watched by it and stopped by it. None of them ends by itself: when one does (it
died), :meth:`Supervisor.watch` says so and the whole process stops rather than limp on.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, TypeVar

import structlog

log = structlog.get_logger(__name__)


class BackgroundTaskDied(RuntimeError):
    """A background task ended: none ends by itself."""


class Component(Protocol):
    """Something that runs background tasks of its own while its context is open (the event
    store: its notifier and its LISTEN connection)."""

    async def __aenter__(self) -> Any: ...

    async def __aexit__(self, *exc: object) -> Any: ...

    def background_tasks(self) -> list[asyncio.Task[None]]: ...


C = TypeVar("C", bound=Component)


class Supervisor:
    """Starts, watches and stops every background task; use it as an async context manager
    (leaving it stops everything)."""

    def __init__(self) -> None:
        # Set to stop (a signal, a task that died); :meth:`watch` returns or raises then.
        self.stop = asyncio.Event()
        self._started: list[asyncio.Task[None]] = []
        self._watched: list[asyncio.Task[None]] = []
        self._components = contextlib.AsyncExitStack()
        self._reported: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Supervisor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def start(self, name: str, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``work()`` as the task ``name`` until the supervisor stops."""
        task = asyncio.create_task(work(), name=name)
        self._started.append(task)
        self._watched.append(task)

    async def enter(self, component: C) -> C:
        """Open ``component``'s context (it starts its tasks) and watch its tasks; its context
        is left, which stops them, when the supervisor stops."""
        await self._components.enter_async_context(component)
        self._watched.extend(component.background_tasks())
        return component

    async def watch(self) -> None:
        """Return once :attr:`stop` is set; raise :class:`BackgroundTaskDied` as soon as any
        task ends first (and set :attr:`stop`)."""
        stopping = asyncio.create_task(self.stop.wait(), name="supervisor-stop")
        try:
            done, _ = await asyncio.wait(
                {stopping, *self._watched}, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stopping.cancel()
            await asyncio.wait([stopping])
        if stopping in done:
            return
        failed = next(task for task in self._watched if task in done)
        self._report(failed)
        self.stop.set()
        raise BackgroundTaskDied(f"background task {failed.get_name()} died")

    async def close(self) -> None:
        """Stop every task started here (cancelled, and waited for), then leave every
        component's context, last entered first (which stops theirs). A task started here
        that had died, and was not reported by :meth:`watch`, is raised then."""
        self.stop.set()
        for task in self._started:
            task.cancel()
        await asyncio.gather(*self._started, return_exceptions=True)
        died = [
            task
            for task in self._started
            if task not in self._reported and not task.cancelled() and task.exception()
        ]
        await self._components.aclose()
        if died:
            self._report(died[0])
            raise BackgroundTaskDied(f"background task {died[0].get_name()} died") from (
                died[0].exception()
            )

    def _report(self, task: asyncio.Task[None]) -> None:
        self._reported.add(task)
        error = None if task.cancelled() else task.exception()
        log.error("background_task_died", task=task.get_name(), exc_info=error)
