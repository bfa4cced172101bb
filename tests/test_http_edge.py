"""The HTTP server's edges over real sockets: slow and idle clients are cut off in bounded
time, connections are capped, and requests aiohttp's parser refuses are 400 problem+json
whose logs hold no request data."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient

from services.http.httpserver import GuardedServer
from services.runtime.config import Settings
from services.runtime.logs import configure_logging
from tests.api import MOVIE, create_account, post_actions
from tests.guarded import GuardedTestServer

Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]
GET_HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n"


@pytest.fixture
def make_server(
    make_client: Callable[..., Awaitable[TestClient[Any, Any]]],
) -> Callable[..., Awaitable[TestClient[Any, Any]]]:
    """Factory: a running guarded server with the given limits (short by default)."""

    async def make(**limits: Any) -> TestClient[Any, Any]:
        short = {"header_timeout": 0.5, "body_timeout": 0.5, "keepalive_timeout": 0.5}
        return await make_client(**{**short, **limits})

    return make


@pytest.fixture
async def sockets() -> AsyncIterator[Callable[[TestClient[Any, Any]], Awaitable[Stream]]]:
    """Factory: a raw TCP connection to a test server (all closed after the test)."""
    opened: list[asyncio.StreamWriter] = []

    async def connect(client: TestClient[Any, Any]) -> Stream:
        reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
        opened.append(writer)
        return reader, writer

    yield connect
    for writer in opened:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    """Every log line of the test (debug and up, JSON), as the service would write them."""
    root = logging.getLogger()
    handlers, config = root.handlers[:], structlog.get_config()
    levels = {
        logger: logger.level
        for logger in [root, *logging.root.manager.loggerDict.values()]
        if isinstance(logger, logging.Logger)
    }
    stream = io.StringIO()
    configure_logging("debug", "json", stream=stream)
    yield stream
    root.handlers[:] = handlers
    for logger, level in levels.items():
        logger.setLevel(level)
    structlog.configure(**config)


async def read_to_eof(reader: asyncio.StreamReader, bound: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took;
    fails if it is still open after ``bound`` seconds."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        data = await asyncio.wait_for(reader.read(), bound)
    except ConnectionResetError:
        data = b""
    return data, loop.time() - started


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length body: status, headers, body."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    return _parse_head(head, await reader.readexactly(_content_length(head)))


def parse_response(data: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    assert len(body) == _content_length(head + b"\r\n\r\n"), data
    return _parse_head(head, body)


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def _parse_head(head: bytes, body: bytes) -> tuple[int, dict[str, str], bytes]:
    status_line, *lines = head.decode("latin-1").strip().split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


def assert_problem(
    response: tuple[int, dict[str, str], bytes], status: int, code: str
) -> dict[str, Any]:
    got_status, headers, body = response
    assert got_status == status, response
    assert headers["content-type"].startswith("application/problem+json"), response
    problem: dict[str, Any] = json.loads(body)
    assert problem["status"] == status
    assert problem["code"] == code
    assert problem["type"] == "about:blank"
    return problem


async def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(
    make_server: Callable[..., Awaitable[TestClient[Any, Any]]],
    sockets: Callable[[TestClient[Any, Any]], Awaitable[Stream]],
) -> None:
    client = await make_server(header_timeout=0.5, keepalive_timeout=30)
    reader, _ = await sockets(client)

    data, took = await read_to_eof(reader, 5)

    assert data == b""
    assert 0.4 <= took < 2


async def test_a_dribbled_request_head_is_closed_after_the_header_timeout(
    make_server: Callable[..., Awaitable[TestClient[Any, Any]]],
    sockets: Callable[[TestClient[Any, Any]], Awaitable[Stream]],
) -> None:
    client = await make_server(header_timeout=0.5, keepalive_timeout=30)
    reader, writer = await sockets(client)

    async def dribble(data: bytes) -> None:
        with contextlib.suppress(ConnectionError):
            for i in range(len(data)):
                writer.write(data[i : i + 1])
                await writer.drain()
                await asyncio.sleep(0.1)  # the slowness is the point

    dribbler = asyncio.create_task(dribble(b"GET /healthz HTTP/1.1\r\nHo"))
    try:
        data, took = await read_to_eof(reader, 5)
    finally:
        dribbler.cancel()
    assert data == b""
    assert 0.4 <= took < 2  # the whole dribble would take 2.6 s


async def test_on_a_kept_alive_connection_the_header_timeout_counts_from_the_first_byte(
    make_server: Callable[..., Awaitable[TestClient[Any, Any]]],
    sockets: Callable[[TestClient[Any, Any]], Awaitable[Stream]],
) -> None:
    client = await make_server(header_timeout=0.5, keepalive_timeout=30)
    reader, writer = await sockets(client)
    writer.write(GET_HEALTHZ)
    status, _, _ = await read_response(reader)
    assert status == 200

    writer.write(b"GET /hea")  # a second request begins, and never ends
    data, took = await read_to_eof(reader, 5)

    assert data == b""
    assert 0.4 <= took < 2  # the header timeout, not the 30 s idle one


async def test_a_body_that_stops_halfway_is_408_and_the_connection_closes(
    make_server: Callable[..., Awaitable[TestClient[Any, Any]]],
    sockets: Callable[[TestClient[Any, Any]], Awaitable[Stream]],
) -> None:
    # A body timeout longer than the header timeout: the header timer must not cut a body.
    client = await make_server(header_timeout=0.3, body_timeout=1.0, keepalive_timeout=30)
    ann = await create_account(client, "ann")
    reader, writer = await sockets(client)
    head = (
        "POST /v1/me/actions HTTP/1.1\r\nHost: test\r\n"
        f"Authorization: {ann['Authorization']}\r\n"
        "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    )
    writer.write(head.encode() + b'{"actions": [' + b" " * 487)

    data, took = await read_to_eof(reader, 5)

    status, headers, body = parse_response(data)
    problem = assert_problem((status, headers, body), 408, "request_timeout")
    assert problem["title"] == "Request Timeout"
    assert headers["connection"].lower() == "close"
    assert 0.9 <= took < 3


async def test_a_client_that_hangs_up_mid_body_is_no_server_error(
    make_server: Callable[..., Awaitable[TestClient[Any, Any]]],
    sockets: Callable[[TestClient[Any, Any]], Awaitable[Stream]],
    logs: io.StringIO,
) -> None:
    """A connector stopping while it sends a batch: the request is a 4xx in the log, never
    an error with a traceback, and nothing of the batch is recorded."""
    client = await make_server(body_timeout=30)
    ann = await create_account(client, "ann")
    _, writer = await sockets(client)
    head = (
        "POST /v1/me/actions HTTP/1.1\r\nHost: test\r\n"
        f"Authorization: {ann['Authorization']}\r\n"
        "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    )
    writer.write(head.encode() + b'{"actions": [')
    await writer.drain()
    writer.transport.abort()  # gone, mid-body
    async with asyncio.timeout(10):
        # No event says the handler has ended: its log line does.
        while '"/v1/me/actions"' not in logs.getvalue():  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    lines = [json.loads(line) for line in logs.getvalue().splitlines()]
    assert not [line for line in lines if line["level"] == "error"], lines
    [request] = [line for line in lines if line.get("route") == "/v1/me/actions"]
    assert request["status"] == 400
    history = await client.get("/v1/me/history", headers=ann)
    assert (await history.json())["items"] == []


async def test_an_idle_kept_alive_connection_is_closed_after_the_keepalive_timeout(
    make_server: Callable[..., Awaitable[TestClient[Any, Any]]],
    sockets: Callable[[TestClient[Any, Any]], Awaitable[Stream]],
) -> None:
    client = await make_server(header_timeout=30, keepalive_timeout=0.5)
    reader, writer = await sockets(client)
    writer.write(GET_HEALTHZ)
    status, headers, _ = await read_response(reader)
    assert status == 200
    assert headers.get("connection", "keep-alive").lower() != "close"

    data, took = await read_to_eof(reader, 5)

    assert data == b""
    assert 0.4 <= took < 2


async def test_connections_beyond_the_cap_are_closed_at_once(
    make_server: Callable[..., Awaitable[TestClient[Any, Any]]],
    sockets: Callable[[TestClient[Any, Any]], Awaitable[Stream]],
) -> None:
    client = await make_server(max_connections=3, header_timeout=30, keepalive_timeout=30)
    server = client.server.handler
    first_three = [await sockets(client) for _ in range(3)]
    for reader, writer in first_three:  # each answered once, so each is surely counted
        writer.write(GET_HEALTHZ)
        assert (await read_response(reader))[0] == 200

    reader, writer = await sockets(client)
    with contextlib.suppress(ConnectionError):
        writer.write(GET_HEALTHZ)
    data, took = await read_to_eof(reader, 5)
    assert data == b""  # no answer at all: closed on accept
    assert took < 1

    for reader, writer in first_three:  # the first three still work
        writer.write(GET_HEALTHZ)
        assert (await read_response(reader))[0] == 200

    # A closed connection frees its place. Nothing signals when the server has counted it
    # out (aiohttp drops it when its handler task ends), so this one wait polls.
    first_three[0][1].close()
    async with asyncio.timeout(5):
        while len(server.connections) >= 3:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    reader, writer = await sockets(client)
    writer.write(GET_HEALTHZ)
    assert (await read_response(reader))[0] == 200


SECRET = "SECRETSECRET"
MALFORMED = {
    "bad request line": b"GET /healthz HTTP/1.1 extra words\r\nHost: test\r\n\r\n",
    "bad version": b"GET /healthz HTTP/1.x\r\nHost: test\r\n\r\n",
    "bad method": b"G(T /healthz HTTP/1.1\r\nHost: test\r\n\r\n",
    "control character in a header": b"GET /healthz HTTP/1.1\r\nHost: test\r\nX-A: b\x01c\r\n\r\n",
    "control character after a bearer token": (
        b"GET /v1/me HTTP/1.1\r\nHost: test\r\n"
        b"Authorization: Bearer wla.ann.SECRETSECRET\x01\r\n\r\n"
    ),
    "over-long header line": (
        b"GET /v1/me HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer wla.ann.SECRETSECRET"
        + b"A" * 9000
        + b"\r\n\r\n"
    ),
    "over-long request line": b"GET /" + b"a" * 9000 + b"?SECRETSECRET HTTP/1.1\r\n\r\n",
    "header without a colon": b"GET /healthz HTTP/1.1\r\nHost: test\r\nSECRETSECRET\r\n\r\n",
    "byte soup": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03SECRETSECRET\xff\xfe\r\n\r\n",
}


async def test_requests_the_parser_refuses_are_400_problems_and_log_no_request_data(
    make_server: Callable[..., Awaitable[TestClient[Any, Any]]],
    sockets: Callable[[TestClient[Any, Any]], Awaitable[Stream]],
    logs: io.StringIO,
) -> None:
    client = await make_server(header_timeout=30, keepalive_timeout=30)
    for name, request in MALFORMED.items():
        reader, writer = await sockets(client)
        writer.write(request)

        data, _ = await read_to_eof(reader, 5)  # answered, then closed

        problem = assert_problem(parse_response(data), 400, "bad_request")
        assert problem["title"] == "Bad Request", name
        assert problem["detail"] == "malformed HTTP request", name

    lines = [json.loads(line) for line in logs.getvalue().splitlines()]
    assert SECRET not in logs.getvalue()
    assert "wla.ann" not in logs.getvalue()
    warnings = [line for line in lines if line["event"] == "bad_http_request"]
    assert len(warnings) == len(MALFORMED)
    assert all(w["level"] == "warning" and w["status"] == 400 for w in warnings)
    assert not [line for line in lines if "exception" in line]


@pytest.mark.parametrize(
    ("framing", "body"),
    [
        ("Transfer-Encoding: chunked", b'5\r\n{"act\r\nzz SECRETSECRET\r\n\r\n'),
        ("Content-Encoding: gzip\r\nContent-Length: 16", b"not gzip, SECRET"),
    ],
)
async def test_a_body_the_parser_refuses_is_a_400_problem(
    make_server: Callable[..., Awaitable[TestClient[Any, Any]]],
    sockets: Callable[[TestClient[Any, Any]], Awaitable[Stream]],
    logs: io.StringIO,
    framing: str,
    body: bytes,
) -> None:
    client = await make_server(header_timeout=30, keepalive_timeout=30)
    ann = await create_account(client, "ann")
    reader, writer = await sockets(client)
    writer.write(
        (
            "POST /v1/me/actions HTTP/1.1\r\nHost: test\r\n"
            f"Authorization: {ann['Authorization']}\r\nContent-Type: application/json\r\n"
            f"{framing}\r\n\r\n"
        ).encode()
        + body
    )

    data, _ = await read_to_eof(reader, 5)  # answered, then closed

    assert_problem(parse_response(data), 400, "bad_request")
    assert "SECRET" not in logs.getvalue()
    assert ann["Authorization"].removeprefix("Bearer ") not in logs.getvalue()


async def test_ordinary_requests_go_through_the_guarded_server(
    client: TestClient[Any, Any],
) -> None:
    assert client.server.runner is not None
    assert isinstance(client.server.runner.server, GuardedServer)
    ann = await create_account(client, "ann")
    [result] = await post_actions(client, ann, {"type": "watched", "guid": MOVIE})
    assert result["status"] == "recorded"
    state = await client.get("/v1/me/state", headers=ann)
    assert state.status == 200
    assert [item["guid"] for item in (await state.json())["items"]] == [MOVIE]
    # Kept alive across requests: the connector reuses one connection for all of them.
    assert len(client.server.runner.server.connections) == 1


async def test_errors_past_every_middleware_log_no_exception_text(
    sockets: Callable[[TestClient[Any, Any]], Awaitable[Stream]], logs: io.StringIO
) -> None:
    """aiohttp's own 500 path (a handler raising with no problem middleware) and its
    "Unhandled exception" path (a failing response-prepare hook) log the exception's class,
    never its text."""

    async def raises(request: web.Request) -> web.StreamResponse:
        raise RuntimeError(f"{request.headers['Authorization']} broke it")

    async def fails_to_prepare(request: web.Request, response: web.StreamResponse) -> None:
        if request.path == "/prepare":
            raise RuntimeError(f"{request.headers['Authorization']} broke it")

    app = web.Application()
    app.router.add_get("/raise", raises)
    app.router.add_get("/prepare", ok)
    app.on_response_prepare.append(fails_to_prepare)
    client: TestClient[Any, Any] = TestClient(GuardedTestServer(app, Settings()))
    await client.start_server()
    try:
        secret = {"Authorization": f"Bearer wla.ann.{SECRET}"}
        response = await client.get("/raise", headers=secret)
        assert response.status == 500
        assert response.content_type == "application/problem+json"
        assert (await response.json())["code"] == "internal_error"

        reader, writer = await sockets(client)
        writer.write(
            f"GET /prepare HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {SECRET}\r\n\r\n".encode()
        )
        data, _ = await read_to_eof(reader, 5)  # nothing can be answered: closed
        assert data == b""
    finally:
        await client.close()

    lines = [json.loads(line) for line in logs.getvalue().splitlines()]
    assert SECRET not in logs.getvalue()
    assert not [line for line in lines if "exception" in line]
    failed = {line["event"]: line for line in lines if line["level"] == "error"}
    assert failed["http_handler_failed"]["reason"] == "RuntimeError"
    assert failed["http_handler_failed"]["where"]
    assert failed["http_protocol_error"]["message"] == "Unhandled exception"
    assert failed["http_protocol_error"]["reason"] == "RuntimeError"


async def ok(request: web.Request) -> web.Response:
    return web.Response(text="ok")
