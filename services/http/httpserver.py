"""aiohttp's HTTP server, bounded against slow and idle clients.

``GuardedAppRunner`` is ``web.AppRunner`` with a protocol handler that

- closes a connection that has not sent a complete request line and headers within
  ``header_timeout`` (counted from connecting, or from the first byte of a new request on a
  kept-alive connection);
- closes an idle kept-alive connection after ``keepalive_timeout`` (aiohttp's own timer);
- closes any connection beyond ``max_connections`` as soon as it is accepted;
- answers requests its parser cannot read with a 400 problem+json (``bad_request``) and
  closes the connection, logging one warning line that holds no request data.

The body timeout lives where the body is read (``endpoints._decode_body``), which calls
``close_after_response`` so the connection is not read on after a 408.

aiohttp has no public hooks for any of this; each private one used is named where it is used.
"""

from __future__ import annotations

import asyncio
import sys
import traceback
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from services.runtime.config import Settings

from .errors import ApiError, problem_response

log = structlog.get_logger(__name__)

MALFORMED = "malformed HTTP request"


class GuardedRequestHandler(web.RequestHandler):
    """aiohttp's protocol handler (one per connection) with a header timeout, the connection
    cap, and errors that are problem+json and never log request data."""

    __slots__ = ("_guard", "_header_timeout", "_header_timer")

    def __init__(self, manager: GuardedServer, *, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = manager
        self._header_timeout = header_timeout
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self._guard.admit():
            # Closed before aiohttp sees it: no handler task, no timers, nothing read.
            transport.close()
            return
        super().connection_made(transport)
        # aiohttp also arms its idle timer at connect; keep_alive() (public) cancels it so the
        # header timeout alone governs until the first request head is complete.
        self.keep_alive(True)
        self._arm_header_timer()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # Private state read here, because aiohttp has no hook for "a request head started" or
        # "a request head is complete": ``_waiter`` is the future start() awaits while the
        # connection is idle between requests (so any byte now begins a new head), and
        # ``_request_count`` counts the messages the parser has produced.
        waiter = self._waiter
        if data and self._header_timer is None and waiter is not None and not waiter.done():
            self.keep_alive(True)  # stops aiohttp's idle timer: the header timer takes over
            self._arm_header_timer()
        parsed = self._request_count
        super().data_received(data)
        if self._request_count != parsed:
            self._disarm_header_timer()

    def close_after_response(self) -> None:
        """Close the connection once the current response is sent, without reading the rest
        of the request body first (aiohttp would otherwise linger up to 10 s reading it)."""
        # ``_lingering_time`` is the constructor's ``lingering_time``, kept privately; it is
        # per connection, so only this connection stops lingering.
        self._lingering_time = 0.0
        self.close()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """aiohttp's answer to a request it could not parse (400) or whose handler raised
        past every middleware (500, 504). aiohttp's own logs the exception, whose text holds
        the offending request line or header (a bearer token included), and answers
        text/plain; this one logs the exception's class only and answers problem+json."""
        if request.writer.output_size > 0:
            # As aiohttp does: part of a response is out, so the connection is broken.
            raise ConnectionError("response already started; cannot send an error response")
        reason = type(exc).__name__ if exc is not None else None
        if status == 400 or isinstance(exc, HttpProcessingError):
            log.warning("bad_http_request", status=400, reason=reason, remote=request.remote)
            error = ApiError(400, "bad_request", MALFORMED)
        else:
            log.error(
                "http_handler_failed",
                status=status,
                reason=reason,
                method=request.method,
                path=request.path,
                where=where_raised(exc),
            )
            code = "internal_error" if status == 500 else HTTPStatus(status).name.lower()
            error = ApiError(status, code, "the request could not be handled")
        response = problem_response(error)
        response.headers["Server"] = "watchledger"  # as the application's (no versions)
        response.force_close()
        return response

    def log_exception(self, *args: Any, **kw: Any) -> None:
        """aiohttp's remaining error logs ("Unhandled exception", ...), as one line with the
        exception's class and where it was raised: never its text, which can quote request
        data."""
        exc = kw.get("exc_info")
        if not isinstance(exc, BaseException):
            exc = sys.exc_info()[1]
        log.error(
            "http_protocol_error",
            message=args[0] if args and isinstance(args[0], str) else None,
            reason=type(exc).__name__ if exc is not None else None,
            where=where_raised(exc),
        )

    def _arm_header_timer(self) -> None:
        loop = asyncio.get_running_loop()
        self._header_timer = loop.call_later(self._header_timeout, self._header_timed_out)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timed_out(self) -> None:
        self._header_timer = None
        log.debug("http_header_timeout", header_timeout=self._header_timeout)
        self.force_close()


class GuardedServer(web.Server):
    """aiohttp's low-level server making ``GuardedRequestHandler``s, and keeping count."""

    def __init__(
        self, *args: Any, header_timeout: float, max_connections: int, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout = header_timeout
        self.max_connections = max_connections
        self._saturated = False

    def __call__(self) -> GuardedRequestHandler:
        # Server.__call__ is the protocol factory. Replaced whole rather than extended: aiohttp's
        # retries without the handler kwargs it cannot pass, which would silently drop ours.
        # ``_loop`` and ``_kwargs`` are what aiohttp's version hands to RequestHandler.
        return GuardedRequestHandler(
            self, loop=self._loop, header_timeout=self.header_timeout, **self._kwargs
        )

    def admit(self) -> bool:
        """Whether one more connection may open; logs once each time the cap is reached."""
        if len(self.connections) < self.max_connections:
            if self._saturated:
                self._saturated = False
                log.info("connections_below_cap", max_connections=self.max_connections)
            return True
        if not self._saturated:
            self._saturated = True
            log.warning("connections_at_cap", max_connections=self.max_connections)
        return False


class GuardedAppRunner(web.AppRunner):
    """``web.AppRunner`` serving through ``GuardedServer`` with the limits in ``settings``."""

    __slots__ = ("_settings",)

    def __init__(self, app: web.Application, settings: Settings, **kwargs: Any) -> None:
        super().__init__(app, keepalive_timeout=settings.keepalive_timeout, **kwargs)
        self._settings = settings

    async def _make_server(self) -> web.Server:
        # BaseRunner.setup() calls _make_server (abstract, private) for its server. aiohttp's
        # starts the app and builds a plain Server from the app's handler, request factory and
        # merged handler kwargs; the same parts build ours. ``_kwargs`` (private) is those
        # merged handler kwargs (keepalive_timeout, access log, debug, ...).
        plain = await super()._make_server()
        return GuardedServer(
            _meet_expectations(plain.request_handler),
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            header_timeout=self._settings.header_timeout,
            max_connections=self._settings.max_connections,
            **plain._kwargs,
        )


def _meet_expectations(
    handler: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]],
) -> Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]:
    """``handler`` behind a check of the ``Expect`` header: anything but ``100-continue`` is
    417 problem+json. aiohttp answers it before routing and the middlewares, echoing the
    header's value into a text/plain body, and fails (500) on a value that is not UTF-8."""

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        expect = request.headers.get("Expect")
        if expect is not None and expect.lower() != "100-continue":
            response = problem_response(
                ApiError(
                    417, "expectation_failed", "the only Expect this server meets is 100-continue"
                )
            )
            response.force_close()
            return response
        return await handler(request)

    return handle


def close_after_response(request: web.BaseRequest) -> None:
    """Close ``request``'s connection once its response is sent, unread body or not."""
    protocol = request.protocol
    if isinstance(protocol, GuardedRequestHandler):
        protocol.close_after_response()
    else:
        protocol.close()


def where_raised(exc: BaseException | None) -> list[str] | None:
    """The innermost frames an exception passed through (file, line, function): enough to
    find a bug, with none of the values involved."""
    if exc is None:
        return None
    frames = traceback.extract_tb(exc.__traceback__)[-5:]
    return [f"{frame.filename}:{frame.lineno} {frame.name}" for frame in frames]
