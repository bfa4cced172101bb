"""The watchledger side of a connector: the API calls a server makes (its events, its changes),
and the sender that moves the local outbox to watchledger in batches."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
import msgspec
import structlog
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential

from services.http.wire import MAX_BATCH, Change, Changes

from .config import Secret
from .metrics import ConnectorMetrics
from .model import ConnectorError
from .state import LocalState

log = structlog.get_logger(__name__)

T = TypeVar("T")


class WatchledgerUnavailable(ConnectorError):
    """watchledger could not be reached, or answered 5xx or 429: worth another try."""


class WatchledgerRefused(ConnectorError):
    """watchledger refused a request (4xx): the message has its status and problem code."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class Backoff(msgspec.Struct, frozen=True):
    """Waits between tries of a failed call: exponential from ``first`` to ``most`` seconds."""

    first: float = 0.5
    most: float = 30.0


def retrying(errors: tuple[type[BaseException], ...], backoff: Backoff, what: str) -> AsyncRetrying:
    """Tries until the call succeeds (the task is cancelled to stop), waiting longer each time;
    only ``errors`` are retried, each try logged."""

    def logged(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        log.warning(
            "connector_retrying",
            call=what,
            attempt=state.attempt_number,
            error=str(error),
            wait=round(state.upcoming_sleep, 2),
        )

    return AsyncRetrying(
        retry=retry_if_exception_type(errors),
        wait=wait_exponential(multiplier=backoff.first, min=backoff.first, max=backoff.most),
        before_sleep=logged,
        reraise=True,
    )


_CHANGES = msgspec.json.Decoder(Changes)


class Watchledger:
    """watchledger's API as one server calls it (its token in every request)."""

    def __init__(
        self, http: aiohttp.ClientSession, url: str, server_id: str, token: Secret
    ) -> None:
        self._http = http
        self._url = url
        self.server_id = server_id
        self._headers = {"Authorization": f"Bearer {token.reveal()}"}

    async def _call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, str] | None = None,
        seconds: float = 30.0,
    ) -> bytes:
        url = f"{self._url}{path}"
        try:
            async with self._http.request(
                method,
                url,
                data=None if body is None else msgspec.json.encode(body),
                params=params,
                headers={**self._headers, "Content-Type": "application/json"},
                timeout=aiohttp.ClientTimeout(total=seconds),
            ) as response:
                content = await response.read()
                if response.status >= 500 or response.status == 429:
                    raise WatchledgerUnavailable(f"{method} {path}: {response.status}")
                if response.status >= 400:
                    code = _problem_code(content)
                    raise WatchledgerRefused(
                        f"{method} {path}: {response.status} {code}", response.status
                    )
                return content
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise WatchledgerUnavailable(f"{method} {path}: {type(exc).__name__} {exc}") from exc

    async def server(self) -> dict[str, Any]:
        """The server as registered (checks the token)."""
        content = await self._call("GET", f"/v1/servers/{self.server_id}")
        info: dict[str, Any] = msgspec.json.decode(content)
        return info

    async def send(self, events: list[dict[str, object]]) -> list[dict[str, Any]]:
        """Post server events (at most MAX_BATCH); their results, in order."""
        content = await self._call(
            "POST", f"/v1/servers/{self.server_id}/events", body={"events": events}
        )
        results: list[dict[str, Any]] = msgspec.json.decode(content)["results"]
        return results

    async def changes(self, cursor: str | None, wait: float) -> tuple[list[Change], str]:
        """The pending changes after ``cursor`` (acknowledging those before it), holding up to
        ``wait`` seconds for one."""
        params = {"wait": f"{wait:g}", "limit": "100"}
        if cursor:
            params["cursor"] = cursor
        content = await self._call(
            "GET", f"/v1/servers/{self.server_id}/changes", params=params, seconds=wait + 30
        )
        page = _CHANGES.decode(content)
        return page.changes, page.cursor


def _problem_code(content: bytes) -> str:
    try:
        problem = msgspec.json.decode(content)
    except msgspec.DecodeError:
        return ""
    return str(problem.get("code", "")) if isinstance(problem, dict) else ""


class Sender:
    """Moves the outbox to watchledger: waits a moment after the first new event (a season
    marked watched is one webhook per episode: they go as one request), then sends everything
    pending in batches, retrying until watchledger takes them."""

    def __init__(
        self,
        state: LocalState,
        upstream: Watchledger,
        metrics: ConnectorMetrics,
        *,
        backoff: Backoff,
        window: float = 0.25,
    ) -> None:
        self._state = state
        self._upstream = upstream
        self._metrics = metrics
        self._backoff = backoff
        self._window = window
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        metrics.outbox.set_function(state.pending_count)

    def wake(self) -> None:
        """New events are in the outbox."""
        self._idle.clear()
        self._wake.set()

    async def idle(self) -> None:
        """Until the outbox is empty (as far as this process knows)."""
        await self._idle.wait()

    async def run(self) -> None:
        self._wake.set()  # what a previous run left
        while True:
            await self._wake.wait()
            await asyncio.sleep(self._window)
            self._wake.clear()
            await self.flush()
            if not self._wake.is_set():
                self._idle.set()

    async def flush(self) -> None:
        """Send everything pending."""
        while batch := self._state.pending(MAX_BATCH):
            events = [event for _, event in batch]
            try:
                results = await self._with_retries(
                    lambda events=events: self._upstream.send(events)  # type: ignore[misc]
                )
            except WatchledgerRefused as exc:
                if exc.status in (400, 422):
                    results = await self._one_by_one(events)
                else:
                    raise
            for event, result in zip(events, results, strict=True):
                status = str(result.get("status"))
                self._metrics.events_sent.labels(type=str(event["type"]), result=status).inc()
                if status == "rejected":
                    log.info(
                        "event_rejected",
                        type=event["type"],
                        code=result.get("code"),
                        baseline=event.get("baseline", False),
                    )
            self._state.sent(batch[-1][0])
            log.info("events_sent", events=len(events))

    async def _one_by_one(self, events: list[dict[str, object]]) -> list[dict[str, Any]]:
        """A batch watchledger refused as a whole: each event alone, and one it refuses is
        dropped (logged: it can never be taken)."""
        results: list[dict[str, Any]] = []
        for event in events:

            def send_one(event: dict[str, object] = event) -> Awaitable[list[dict[str, Any]]]:
                return self._upstream.send([event])

            try:
                results += await self._with_retries(send_one)
            except WatchledgerRefused as exc:
                self._metrics.errors.labels(side="watchledger").inc()
                log.error("event_refused", type=event["type"], error=str(exc))
                results.append({"status": "refused"})
        return results

    async def _with_retries(self, call: Callable[[], Awaitable[T]]) -> T:
        async for attempt in retrying((WatchledgerUnavailable,), self._backoff, "send events"):
            with attempt:
                try:
                    return await call()
                except WatchledgerUnavailable:
                    self._metrics.errors.labels(side="watchledger").inc()
                    raise
        raise AssertionError("unreachable: tenacity reraises the last error")
