"""What the fake media servers share: per-user watch data, a record of every write, the switch
that makes a server unreachable, and waiting (without sleeping) for a write to arrive.

No routes here: plex.py and mediabrowser.py each name the OpenAPI document (and commit) their
routes were checked against; the table is /work/research/openapi-check.md."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer


@dataclass
class Watch:
    """One user's data for one item."""

    plays: int = 0
    last_played: float | None = None  # Unix seconds
    rating: float | None = None  # the server's own scale
    rated_at: float | None = None
    position: int = 0


@dataclass(frozen=True)
class Write:
    """A write a client made: who (user key), what, to which item, with which parameters."""

    user: str
    action: str
    item: str
    params: dict[str, Any] = field(default_factory=dict)


class FakeServer:
    """Base of the fakes: ``data[(user, item)]``, ``writes``, ``down`` (answer 503) and
    :meth:`wait_writes`."""

    def __init__(self) -> None:
        self.data: dict[tuple[str, str], Watch] = {}
        self.writes: list[Write] = []
        self.reads = 0
        self.down = False
        self.fail_writes = 0  # the next N writes answer 500 (and change nothing)
        self._changed = asyncio.Condition()
        self.server: TestServer | None = None
        self.webhook_url: str | None = None
        # Called as each write is made, before it is answered: what a person does meanwhile.
        self.during_write: Callable[[Write], Awaitable[None]] | None = None

    def watch(self, user: str, item: str) -> Watch:
        return self.data.setdefault((user, item), Watch())

    async def wrote(self, write: Write) -> None:
        self.writes.append(write)
        if self.during_write is not None:
            await self.during_write(write)
        async with self._changed:
            self._changed.notify_all()

    async def wait_writes(
        self, predicate: Callable[[list[Write]], bool], within: float = 20
    ) -> None:
        """Until ``predicate(writes)`` holds (each write wakes the check)."""
        async with asyncio.timeout(within):
            async with self._changed:
                await self._changed.wait_for(lambda: predicate(self.writes))

    @web.middleware
    async def availability(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        if self.down:
            return web.Response(status=503, text="down")
        if request.method != "GET" and self.fail_writes > 0:
            self.fail_writes -= 1
            return web.Response(status=500, text="write failed")
        self.reads += request.method == "GET"
        response: web.StreamResponse = await handler(request)
        return response

    async def start(self, app: web.Application) -> str:
        self.server = TestServer(app)
        await self.server.start_server(access_log=None)  # a line a request is noise here
        return str(self.server.make_url("")).rstrip("/")

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()
