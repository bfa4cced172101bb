"""Limits on what one caller may hold open at once, and noticing when a holder has gone."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Iterator
from typing import Any, TypeVar

from aiohttp import web

from .auth import Principal
from .errors import ApiError

T = TypeVar("T")

# How often open long-held requests are checked for a client that went away (one pass over
# all of them: a few microseconds each).
SWEEP_SECONDS = 1.0


class ClientGone(Exception):
    """The client of a long-held request closed its connection."""


class StreamSlots:
    """How many long-held requests (long-polls and feed streams) each token may have open at
    once, and whether each one's client is still there.

    One server or app needs one or two; a token holding hundreds is a bug or an attack, and
    each costs the process memory and a connection. A slot is given back as soon as its client
    goes: aiohttp does not cancel a handler whose client closed the connection, so one sweep for
    the whole process looks, every :data:`SWEEP_SECONDS`, for held requests whose connection has
    closed, and tells their handlers (no timer per request, and none at all while nothing is
    held)."""

    def __init__(self, per_token: int, *, sweep: float = SWEEP_SECONDS) -> None:
        self.per_token = per_token
        self.sweep = sweep
        self._held: dict[Principal, int] = {}
        self._watched: dict[asyncio.Future[None], web.BaseRequest] = {}
        self._sweeper: asyncio.Task[None] | None = None

    def held(self, principal: Principal) -> int:
        return self._held.get(principal, 0)

    @contextlib.contextmanager
    def hold(
        self, principal: Principal, request: web.BaseRequest
    ) -> Iterator[asyncio.Future[None]]:
        """A slot for the request's lifetime; 429 ``rate_limited`` when the token has none.
        Gives a future that is done once the request's client has gone."""
        held = self._held.get(principal, 0)
        if held >= self.per_token:
            raise ApiError(
                429,
                "rate_limited",
                f"this token already holds {held} long-polls or streams open (at most "
                f"{self.per_token}); wait for one to end",
                headers={"Retry-After": "1"},
            )
        self._held[principal] = held + 1
        gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._watched[gone] = request
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep(), name="stream-slots-sweep")
        try:
            yield gone
        finally:
            del self._watched[gone]
            gone.cancel()
            if not self._watched and self._sweeper is not None:
                self._sweeper.cancel()
                self._sweeper = None
            if self._held[principal] == 1:
                del self._held[principal]
            else:
                self._held[principal] -= 1

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self.sweep)
            for gone, request in list(self._watched.items()):
                transport = request.transport
                if (transport is None or transport.is_closing()) and not gone.done():
                    gone.set_result(None)


async def unless_gone(work: Awaitable[T], gone: asyncio.Future[None]) -> T:
    """``work``'s result; if the client goes first, ``work`` is cancelled and
    :class:`ClientGone` raised."""
    task = asyncio.ensure_future(work)
    either: set[asyncio.Future[Any]] = {task, gone}
    try:
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        await _cancel(task)
        raise
    if task.done():
        return task.result()
    await _cancel(task)
    raise ClientGone


async def _cancel(task: asyncio.Future[T]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
