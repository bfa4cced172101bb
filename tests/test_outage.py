"""Database outages, against a real PostgreSQL behind a TCP proxy that the tests cut.

"PostgreSQL stops" is the proxy closing every connection and refusing new ones; "it starts
again" is the proxy listening again on the same port; a "hung network" is the proxy keeping
every connection open and accepting new ones, but passing no byte either way. Nothing is
mocked: the service meets exactly what asyncpg meets when the database goes away.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from eventstore import database as db
from eventstore.wakeups import DEFAULT_CHANNEL
from services.http.appkeys import SERVERS
from services.http.errors import problem_middleware
from services.runtime.config import Settings
from tests.api import MOVIE, OPERATOR, create_account, sample_metrics, settle
from tests.servers import register
from tests.test_api_conventions import problem

DATABASE_TIMEOUT = Settings().database_timeout
# A request while the database refuses connections answers well within this (seconds).
PROMPTLY = 2.0


class PostgresProxy:
    """A TCP proxy on 127.0.0.1 in front of the test PostgreSQL (Unix socket or TCP)."""

    def __init__(self, target_url: str) -> None:
        self.target_url = target_url
        parts = urlsplit(target_url)
        query = dict(parse_qsl(parts.query))
        self._host = query.pop("host", "") or parts.hostname or "localhost"
        self._port = int(query.pop("port", "") or parts.port or 5432)
        self._parts = parts._replace(query=urlencode(query))
        self.port = 0
        self.blackhole = False
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def url(self) -> str:
        """The same database's URL, through this proxy."""
        userinfo, _, _ = self._parts.netloc.rpartition("@")
        netloc = f"{userinfo}@127.0.0.1:{self.port}" if userinfo else f"127.0.0.1:{self.port}"
        return urlunsplit(self._parts._replace(netloc=netloc))

    @property
    def listening(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        """Listen (again, on the same port): PostgreSQL is up."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """PostgreSQL stops: every open connection is closed, new ones are refused."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        await self.cut()
        if server is not None:
            await server.wait_closed()

    async def hang(self) -> None:
        """The network hangs: connections stay open (and new ones are accepted), silent."""
        self.blackhole = True

    async def heal(self) -> None:
        """The hung network comes back as broken connections (as after a partition)."""
        self.blackhole = False
        await self.cut()

    async def cut(self) -> None:
        """Close every open connection."""
        for writer in list(self._writers):
            writer.transport.abort()
        if self._tasks:
            await asyncio.wait(list(self._tasks))

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        upstream: asyncio.StreamWriter | None = None
        try:
            if self.blackhole:
                while await reader.read(65536):
                    continue  # a hung network swallows what is sent
                return
            if self._host.startswith("/"):
                up_reader, upstream = await asyncio.open_unix_connection(
                    f"{self._host}/.s.PGSQL.{self._port}"
                )
            else:
                up_reader, upstream = await asyncio.open_connection(self._host, self._port)
            self._writers.add(upstream)
            await asyncio.gather(self._pump(reader, upstream), self._pump(up_reader, writer))
        except OSError:
            return  # either side went away: the finally below closes both
        finally:
            for end in (writer, upstream):
                if end is not None:
                    self._writers.discard(end)
                    end.transport.abort()
            self._tasks.discard(task)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                if not self.blackhole:  # a hung network swallows what is sent
                    writer.write(data)
                    await writer.drain()
        except OSError:
            return  # a side went away: the finally below closes the other
        finally:
            writer.transport.abort()  # one side gone: so is the other


@dataclass
class Service:
    """The service, its database behind ``proxy``, and an account ``ann`` (headers)."""

    proxy: PostgresProxy
    client: TestClient[Any, Any]
    ann: dict[str, str]


@pytest.fixture
async def service(
    make_database: Callable[..., Any], make_client: Callable[..., Any]
) -> AsyncIterator[Service]:
    proxy = PostgresProxy(await make_database())
    await proxy.start()
    client = await make_client(proxy.url)
    ann = await create_account(client, "ann")
    yield Service(proxy, client, ann)
    # The service stops with its database reachable, as any test leaves it; then the proxy.
    if proxy.blackhole:
        await proxy.heal()
    if not proxy.listening:
        await proxy.start()
    await client.close()
    await proxy.stop()


@pytest.fixture
def logs() -> Any:
    """Every structlog event of the test (as dicts), instead of printing them."""
    with structlog.testing.capture_logs() as entries:
        yield entries


def watched(guid: str = MOVIE, **fields: Any) -> dict[str, Any]:
    return {"actions": [{"type": "watched", "guid": guid, **fields}]}


def guid(n: int) -> str:
    return f"plex://movie/{n:024x}"


async def timed(request: Awaitable[Any], within: float) -> tuple[Any, float]:
    """The response, and the seconds it took; fails the test past ``within`` seconds."""
    started = time.monotonic()
    async with asyncio.timeout(within):
        response = await request
        await response.read()
    return response, time.monotonic() - started


async def unavailable(response: Any) -> None:
    """A 503 ``database_unavailable`` problem, with a short Retry-After."""
    await problem(response, 503, "database_unavailable")
    assert 1 <= int(response.headers["Retry-After"]) <= 5


async def until_ok(request: Callable[[], Awaitable[Any]], within: float = 10.0) -> Any:
    """Repeat ``request`` (shortly apart) until it answers 200; fails past ``within`` seconds."""
    async with asyncio.timeout(within):
        while True:
            response = await request()
            await response.read()
            if response.status == 200:
                return response
            await asyncio.sleep(0.05)


def events(entries: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in entries if e["event"] == name]


# -- PostgreSQL stops ---------------------------------------------------------------------------


async def test_while_the_database_is_down_requests_answer_503_at_once(service: Service) -> None:
    client, ann = service.client, service.ann
    assert (await client.get("/v1/me", headers=ann)).status == 200

    await service.proxy.stop()

    me, seconds = await timed(client.get("/v1/me", headers=ann), within=DATABASE_TIMEOUT)
    await unavailable(me)
    assert seconds < PROMPTLY
    write, seconds = await timed(
        client.post("/v1/me/actions", json=watched(), headers=ann), within=DATABASE_TIMEOUT
    )
    await unavailable(write)
    assert seconds < PROMPTLY
    admin, seconds = await timed(client.get("/v1/admin/events", headers=OPERATOR), within=5)
    await unavailable(admin)


async def test_an_outage_is_logged_once_not_once_a_request(
    service: Service, logs: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    client, ann = service.client, service.ann
    caplog.set_level(logging.WARNING)

    await service.proxy.stop()
    requests = [
        client.get("/v1/me", headers=ann)
        if i % 2
        else client.post("/v1/me/actions", json=watched(), headers=ann)
        for i in range(50)
    ]
    async with asyncio.timeout(DATABASE_TIMEOUT):
        responses = await asyncio.gather(*requests)
    for response in responses:
        await unavailable(response)

    [down] = events(logs, "database_unavailable")
    assert down["log_level"] == "warning"
    assert down["error"].endswith("Error")  # the class: ConnectionRefusedError, say
    assert events(logs, "database_recovered") == []

    await service.proxy.start()
    await until_ok(lambda: client.get("/v1/me", headers=ann))
    assert (await client.post("/v1/me/actions", json=watched(), headers=ann)).status == 200

    [up] = events(logs, "database_recovered")
    assert up["log_level"] == "info"
    assert up["outage_seconds"] > 0
    assert len(events(logs, "database_unavailable")) == 1
    assert events(logs, "request_failed") == []
    assert [e for e in logs if e.get("exc_info") or e["log_level"] in {"error", "critical"}] == []
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []


async def test_metrics_health_and_readiness_answer_during_an_outage(service: Service) -> None:
    client = service.client
    await sample_metrics(client)
    before = await (await client.get("/metrics")).text()
    assert "watchledger_database_up 1.0" in before
    assert 'watchledger_projection_lag_events{projection="watch_state"}' in before

    await service.proxy.stop()

    # A scrape answers from memory at once; the sampler's next turn finds the database gone.
    scrape, seconds = await timed(client.get("/metrics"), within=PROMPTLY)
    assert scrape.status == 200
    assert seconds < PROMPTLY
    await sample_metrics(client)
    scrape, seconds = await timed(client.get("/metrics"), within=PROMPTLY)
    assert seconds < PROMPTLY
    text = await scrape.text()
    assert "watchledger_database_up 0.0" in text
    # The last known projection figures, not holes in the series.
    assert 'watchledger_projection_lag_events{projection="watch_state"}' in text
    assert "watchledger_log_head_position" in text
    health, _ = await timed(client.get("/healthz"), within=PROMPTLY)
    assert health.status == 200
    ready, seconds = await timed(client.get("/readyz"), within=DATABASE_TIMEOUT)
    assert ready.status == 503
    assert (await ready.json())["reason"] == "database_unreachable"
    assert seconds < PROMPTLY

    await service.proxy.start()
    await until_ok(lambda: client.get("/readyz"))
    await sample_metrics(client)
    assert "watchledger_database_up 1.0" in await (await client.get("/metrics")).text()


async def test_writes_in_flight_when_the_database_goes_away_end_and_none_acknowledged_is_lost(
    service: Service,
) -> None:
    client, ann, proxy = service.client, service.ann, service.proxy
    writers = 16
    results: list[tuple[int, float, str, bool]] = []  # status, seconds, guid, after the restart
    enough, all_down, restarted = asyncio.Event(), asyncio.Event(), asyncio.Event()
    waiting = 0

    async def write(w: int) -> None:
        nonlocal waiting
        n = 0
        while True:
            n += 1
            title = guid(w * 10_000 + n)
            after_restart = restarted.is_set()
            started = time.monotonic()
            response = await client.post("/v1/me/actions", json=watched(title), headers=ann)
            await response.read()
            results.append((response.status, time.monotonic() - started, title, after_restart))
            if len([r for r in results if r[0] == 200]) >= 2 * writers:
                enough.set()
            if after_restart and response.status == 200:
                return  # it writes again after the outage
            if response.status != 200 and not restarted.is_set():
                assert response.headers["Retry-After"]
                waiting += 1
                if waiting == writers:
                    all_down.set()
                await restarted.wait()  # as a client told Retry-After would

    tasks = [asyncio.create_task(write(w), name=f"writer-{w}") for w in range(writers)]
    try:
        async with asyncio.timeout(10):
            await enough.wait()
        await proxy.stop()  # with writes in flight
        async with asyncio.timeout(DATABASE_TIMEOUT + 1):
            await all_down.wait()
        await proxy.start()
        restarted.set()
        async with asyncio.timeout(15):
            await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()

    assert {status for status, *_ in results} <= {200, 503}
    assert 503 in {status for status, *_ in results}
    # Nothing hung: an outage ends a write at once, and read-your-writes waits 5 s at most.
    assert max(seconds for _, seconds, _, _ in results) < 5 + 1.5
    assert all(status == 200 for status, _, _, after in results if after)

    # Every write acknowledged with 200 is in the log, and in the projections.
    await settle(client)
    for status, _, title, _ in results:
        if status == 200:
            state = await client.get(f"/v1/me/state/{title}", headers=ann)
            assert state.status == 200, title
            assert (await state.json())["watched"] is True


async def test_a_write_waiting_for_the_projections_answers_when_the_database_goes_away(
    service: Service, logs: list[dict[str, Any]]
) -> None:
    client, ann = service.client, service.ann
    # An open transaction (straight to the database) holds the projections back: the write
    # is in the log, and waits for them (read-your-writes).
    holder = await asyncpg.connect(service.proxy.target_url)
    listener = await asyncpg.connect(service.proxy.target_url)
    appended = asyncio.Event()
    try:
        await listener.add_listener(DEFAULT_CHANNEL, lambda *_: appended.set())
        hold = holder.transaction()
        await hold.start()
        await holder.fetchval("SELECT pg_current_xact_id()")
        write = asyncio.create_task(
            timed(client.post("/v1/me/actions", json=watched(), headers=ann), within=10)
        )
        async with asyncio.timeout(5):
            await appended.wait()  # the service's wake-up after the append: the write waits

        await service.proxy.stop()

        response, seconds = await write
        assert response.status == 200  # it is in the log
        assert seconds < PROMPTLY  # not the whole read-your-writes bound (5 s)
        assert events(logs, "projections_behind") == []
        await hold.rollback()
    finally:
        await holder.close()
        await listener.close()

    await service.proxy.start()
    await until_ok(lambda: client.get("/v1/me", headers=ann))
    await settle(client)
    state = await client.get(f"/v1/me/state/{MOVIE}", headers=ann)
    assert (await state.json())["watched"] is True


async def test_the_service_recovers_by_itself_and_reads_its_writes(service: Service) -> None:
    client, ann = service.client, service.ann
    for _ in range(2):  # twice: the second outage is met like the first
        await service.proxy.stop()
        await unavailable(await client.get("/v1/me/state", headers=ann))
        await service.proxy.start()
        await until_ok(lambda: client.get("/v1/me", headers=ann))

    recorded = await client.post("/v1/me/actions", json=watched(MOVIE), headers=ann)
    assert recorded.status == 200
    await settle(client)
    state = await client.get(f"/v1/me/state/{MOVIE}", headers=ann)
    assert state.status == 200
    assert (await state.json())["watched"] is True


async def test_a_long_poll_waiting_when_the_database_goes_away_ends_with_503(
    service: Service, logs: list[dict[str, Any]]
) -> None:
    client, ann = service.client, service.ann
    srv = await register(client, ann, "srv-a")
    first = await client.get("/v1/servers/srv-a/changes", headers=srv)
    cursor = (await first.json())["cursor"]
    app = client.app
    assert app is not None

    wait = 1.0
    poll = asyncio.create_task(
        timed(
            client.get(
                "/v1/servers/srv-a/changes",
                params={"cursor": cursor, "wait": str(wait)},
                headers=srv,
            ),
            within=wait + DATABASE_TIMEOUT,
        )
    )
    async with asyncio.timeout(5):
        await app[SERVERS].wakeups.for_server("srv-a").until_waiting(1)
    await service.proxy.stop()

    response, seconds = await poll
    await unavailable(response)
    assert seconds < wait + PROMPTLY
    assert events(logs, "request_failed") == []

    await service.proxy.start()
    again = await until_ok(
        lambda: client.get("/v1/servers/srv-a/changes", params={"cursor": cursor}, headers=srv)
    )
    assert (await again.json())["changes"] == []


# -- the network hangs --------------------------------------------------------------------------


async def test_a_hung_network_answers_503_within_the_database_timeout(service: Service) -> None:
    client, ann = service.client, service.ann
    assert (await client.get("/v1/me", headers=ann)).status == 200

    await service.proxy.hang()

    bound = DATABASE_TIMEOUT + 2.5
    me, write, scrape, ready, health = await asyncio.gather(
        timed(client.get("/v1/me", headers=ann), within=bound),
        timed(client.post("/v1/me/actions", json=watched(), headers=ann), within=bound),
        timed(client.get("/metrics"), within=bound),
        timed(client.get("/readyz"), within=bound),
        timed(client.get("/healthz"), within=bound),
    )
    await unavailable(me[0])
    await unavailable(write[0])
    assert scrape[0].status == 200
    assert scrape[1] < DATABASE_TIMEOUT  # its own, shorter bound, then the last known figures
    assert ready[0].status == 503
    assert health[0].status == 200
    assert health[1] < PROMPTLY

    await service.proxy.heal()
    await until_ok(lambda: client.get("/v1/me", headers=ann))
    assert (await client.post("/v1/me/actions", json=watched(), headers=ann)).status == 200


# -- only the database being unreachable is a 503 -------------------------------------------------


async def test_a_bug_is_still_a_logged_500_and_only_an_unreachable_database_a_503(
    make_database: Callable[..., Any], logs: list[dict[str, Any]]
) -> None:
    proxy = PostgresProxy(await make_database())
    await proxy.start()
    pool = await db.create_pool(proxy.url, min_size=0, max_size=2)

    queries = {"/ok": "SELECT 1", "/data-error": "SELECT 'x'::int", "/syntax-error": "SELEC 1"}

    async def query(request: web.Request) -> web.StreamResponse:
        await pool.fetch(queries[request.path])
        return web.Response(text="ok")

    async def client_gone(request: web.Request) -> web.StreamResponse:
        raise ConnectionResetError("Connection lost")  # as aiohttp's own, not the database's

    app = web.Application(middlewares=[problem_middleware])
    for path in queries:
        app.router.add_get(path, query)
    app.router.add_get("/client-gone", client_gone)
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    try:
        assert (await client.get("/ok")).status == 200
        for path in ("/data-error", "/syntax-error", "/client-gone"):
            await problem(await client.get(path), 500, "internal_error")
        assert len([e for e in events(logs, "request_failed") if e.get("exc_info")]) == 3

        await proxy.stop()
        await unavailable(await client.get("/ok"))
        await problem(await client.get("/client-gone"), 500, "internal_error")
    finally:
        await client.close()
        await pool.close()
        await proxy.stop()
