"""Hostile requests: a raw HTTP/1.1 client and the principals to aim it with.

aiohttp's client normalises or refuses much of what a hostile client sends (bytes that are not
UTF-8 in a header, a NUL in a path, a body that is not what its headers say), so these tests
write their requests byte for byte on a socket of their own.
"""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.parse
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp.test_utils import TestClient

from tests.api import EPISODE, MOVIE, OPERATOR, post_actions
from tests.servers import setup_owner_with_server

ACCOUNT = "ann"
SERVER = "srv-a"
_TIMEOUT = 30


@dataclass(frozen=True)
class RawResponse:
    status: int
    body: bytes

    def problem(self) -> dict[str, Any]:
        """The problem+json body (the test fails if it is not one)."""
        problem: dict[str, Any] = json.loads(self.body)
        return problem

    def __str__(self) -> str:
        return f"{self.status} {self.body[:2000]!r}"


async def send(
    client: TestClient[Any, Any],
    method: str,
    target: bytes | str,
    *,
    headers: Sequence[tuple[bytes | str, bytes | str]] = (),
    body: bytes | None = None,
    content_type: bytes | str | None = b"application/json",
) -> RawResponse:
    """One request on a new connection, exactly these bytes: the request target is sent as
    given (percent-encode it yourself), headers may hold any bytes but CR and LF."""
    lines = [b"%s %s HTTP/1.1" % (_bytes(method), _bytes(target)), b"Host: watchledger.test"]
    lines += [b"%s: %s" % (_bytes(name), _bytes(value)) for name, value in headers]
    if body is not None:
        if content_type is not None:
            lines.append(b"Content-Type: " + _bytes(content_type))
        lines.append(b"Content-Length: %d" % len(body))
    lines.append(b"Connection: close")
    request = b"\r\n".join(lines) + b"\r\n\r\n" + (body or b"")
    async with asyncio.timeout(_TIMEOUT):
        reader, writer = await asyncio.open_connection(client.host, client.port)
        try:
            writer.write(request)
            await writer.drain()
            response = await _read(reader)
        finally:
            writer.close()
            await writer.wait_closed()
    head, _, payload = response.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0]
    # aiohttp answers a request its parser refuses as HTTP/1.0.
    assert status_line.startswith(b"HTTP/1."), f"not an HTTP response: {response[:200]!r}"
    return RawResponse(int(status_line.split()[1]), payload)


async def _read(reader: asyncio.StreamReader) -> bytes:
    """The whole response (the server closes the connection after it); of an event stream,
    which never ends by itself, only the head: the client hangs up then."""
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = await reader.read(65536)
        if not chunk:
            return response
        response += chunk
    head = response.partition(b"\r\n\r\n")[0].lower()
    if any(
        line.startswith(b"content-type:") and b"text/event-stream" in line
        for line in head.split(b"\r\n")
    ):
        return response
    return response + await reader.read()


def _bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def bearer(token: bytes | str) -> tuple[bytes, bytes]:
    return (b"Authorization", b"Bearer " + _bytes(token))


def token_of(headers: dict[str, str]) -> str:
    """The token in a helper's ``{"Authorization": "Bearer ..."}``."""
    return headers["Authorization"].removeprefix("Bearer ")


def cursor(value: Any) -> str:
    """A cursor shaped like the API's own (unpadded base64url of JSON), holding ``value``."""
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def percent(text: str) -> str:
    """``text`` percent-encoded whole (lone surrogates as the bytes UTF-8 would give them)."""
    return urllib.parse.quote(text.encode("utf-8", "surrogatepass"), safe="")


def body_of(value: Any) -> bytes:
    """JSON of ``value``, any Python string included (lone surrogates escaped as ``\\ud800``,
    NaN and infinities as the non-JSON words Python writes)."""
    return json.dumps(value).encode()


@dataclass(frozen=True)
class Principals:
    """A token of each kind: the operator; ``ann``, who owns server ``srv-a``, syncs, and has
    watched and rated; and that server."""

    operator: str
    account: str
    server: str

    def of(self, kind: str) -> str:
        token: str = getattr(self, kind)
        return token


async def principals(client: TestClient[Any, Any]) -> Principals:
    owner, server = await setup_owner_with_server(client, ACCOUNT, SERVER)
    await post_actions(
        client,
        owner,
        {"type": "watched", "guid": MOVIE, "at": "2026-01-01T12:00:00Z"},
        {"type": "rated", "guid": MOVIE, "rating": 8, "at": "2026-01-01T12:01:00Z"},
        {"type": "watched", "guid": EPISODE, "at": "2026-01-02T12:00:00Z"},
    )
    return Principals(token_of(OPERATOR), token_of(owner), token_of(server))


Logged = list[MutableMapping[str, Any]]


@contextmanager
def server_errors() -> Iterator[Logged]:
    """While open, what the in-process service logs is collected (tracebacks as text) instead
    of printed: a failing test can show the exception behind a 5xx, and hundreds of them
    (a property test shrinking one) are not each rendered on the console."""
    format_exc = structlog.processors.format_exc_info
    with structlog.testing.capture_logs(processors=[format_exc]) as entries:
        yield entries


def explain(response: RawResponse, logged: Sequence[Mapping[str, Any]]) -> str:
    """The response, and the last error the service logged (its traceback's last lines)."""
    errors = [e for e in logged if e.get("log_level") in {"error", "critical"}]
    if not errors:
        return str(response)
    last = errors[-1]
    trace = "\n".join(str(last.get("exception", "")).splitlines()[-12:])
    return f"{response}\nthe service logged {last.get('event')!r}:\n{trace}"
