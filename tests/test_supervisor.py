"""The supervisor owns every background task: it starts them, one dying stops the whole, and
stopping it stops them all (and the components it entered, which stop theirs)."""

from __future__ import annotations

import asyncio

import pytest

from services.runtime.supervisor import BackgroundTaskDied, Supervisor


class _Component:
    """A component with a background task of its own, as the event store has."""

    def __init__(self) -> None:
        self.task: asyncio.Task[None] | None = None
        self.closed = False

    async def __aenter__(self) -> _Component:
        self.task = asyncio.create_task(_forever(), name="component")
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        await asyncio.wait([self.task])
        self.closed = True

    def background_tasks(self) -> list[asyncio.Task[None]]:
        return [] if self.task is None else [self.task]


async def _forever() -> None:
    await asyncio.Event().wait()


async def test_watch_returns_when_stopped_and_closing_stops_everything() -> None:
    async with Supervisor() as supervisor:
        component = await supervisor.enter(_Component())
        supervisor.start("forever", _forever)
        supervisor.stop.set()
        await supervisor.watch()
    assert component.closed
    assert component.task is not None
    assert component.task.cancelled()


async def test_a_task_that_dies_stops_the_whole() -> None:
    async def dies() -> None:
        raise OSError("gone")

    async with Supervisor() as supervisor:
        supervisor.start("forever", _forever)
        supervisor.start("dies", dies)
        with pytest.raises(BackgroundTaskDied, match="background task dies died"):
            await supervisor.watch()
        assert supervisor.stop.is_set()


async def test_a_task_that_died_unwatched_is_raised_when_closing() -> None:
    async def dies() -> None:
        raise OSError("gone")

    supervisor = Supervisor()
    supervisor.start("dies", dies)
    await asyncio.sleep(0)
    with pytest.raises(BackgroundTaskDied) as raised:
        await supervisor.close()
    assert isinstance(raised.value.__cause__, OSError)
