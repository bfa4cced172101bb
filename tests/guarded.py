"""Test servers that serve through the service's own guarded HTTP server."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from services.http.httpserver import GuardedAppRunner
from services.runtime.config import Settings


class GuardedTestServer(TestServer):
    """aiohttp's ``TestServer`` serving through ``GuardedAppRunner`` (with ``settings``' limits),
    so tests run through the same protocol handler as ``watchledger serve``."""

    def __init__(self, app: web.Application, settings: Settings, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.settings = settings

    async def _make_runner(self, **kwargs: Any) -> web.BaseRunner:
        # BaseTestServer.start_server() builds its runner here (private hook; TestServer's own
        # returns a plain AppRunner). aiohttp's test server asks for handlers to be cancelled
        # when their client goes; `watchledger serve` leaves aiohttp's default (not cancelled:
        # a write runs to its end), and so do the tests.
        kwargs["handler_cancellation"] = False
        return GuardedAppRunner(self.app, self.settings, **kwargs)
