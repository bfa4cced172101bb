"""Hostile inputs the service once answered with a 500: each is now the client's error.

Text PostgreSQL cannot hold (a NUL, bytes that are not UTF-8), times that leave the range of
a timestamp once turned to UTC (year 1 an hour east of Greenwich), and integers past a
bigint: in a header, a path, a query, a cursor or a body, all are 401 or 422 problem+json,
never an exception.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.api import MOVIE
from tests.hostile import (
    ACCOUNT,
    SERVER,
    Logged,
    Principals,
    RawResponse,
    bearer,
    body_of,
    cursor,
    explain,
    principals,
    send,
    server_errors,
)

BEFORE_YEAR_ONE = "0001-01-01T00:00:00+01:00"
AFTER_YEAR_9999 = "9999-12-31T23:59:59-01:00"
PAST_BIGINT = 2**63


@dataclass
class Api:
    """The service, its principals, and what it logged."""

    client: TestClient[Any, Any]
    who: Principals
    logged: Logged

    async def call(
        self, kind: str, method: str, target: str, body: bytes | None = None
    ) -> RawResponse:
        """``method target`` as ``kind`` (operator, account or server), body as given."""
        headers = [bearer(self.who.of(kind))]
        return await send(self.client, method, target, headers=headers, body=body)

    def expect(self, response: RawResponse, status: int, code: str) -> None:
        assert_problem(response, status, code, self.logged)


def assert_problem(
    response: RawResponse, status: int, code: str, logged: Sequence[Mapping[str, Any]] = ()
) -> None:
    """The response is problem+json with this status and code (and, for a 422, the
    field-level errors the contract promises); ``logged``: what the service logged."""
    assert response.status == status, explain(response, logged)
    problem = response.problem()
    assert (problem["status"], problem["code"]) == (status, code), problem
    if status == 422:
        assert problem.get("errors"), problem


@pytest.fixture
def logged() -> Iterator[Logged]:
    with server_errors() as entries:
        yield entries


@pytest.fixture
async def api(client: TestClient[Any, Any], logged: Logged) -> Api:
    return Api(client, await principals(client), logged)


@pytest.fixture
def who(api: Api) -> Principals:
    return api.who


# -- Authorization headers that are not UTF-8 -------------------------------------------------


@pytest.mark.parametrize(
    "token",
    [b"\xff", b"wla.ann.\xff\xfe", b"wls.srv-a.\xc3", b"wla.\xe9.secret", b"\x80" * 64],
    ids=["lone-ff", "account-shaped", "server-shaped", "latin-1-owner", "continuation-bytes"],
)
@pytest.mark.parametrize(
    "target",
    ["/v1/me", "/v1/admin/events", f"/v1/servers/{SERVER}/changes", f"/v1/servers/{SERVER}"],
)
async def test_an_authorization_header_that_is_not_utf8_is_401(
    client: TestClient[Any, Any], logged: Logged, target: str, token: bytes
) -> None:
    response = await send(client, "GET", target, headers=[(b"Authorization", b"Bearer " + token)])
    assert_problem(response, 401, "unauthorized", logged)


# -- NUL in text ------------------------------------------------------------------------------


async def test_nul_in_an_account_name_is_422(api: Api) -> None:
    body = body_of({"id": "nul", "kind": "full", "name": "A\u0000B"})
    api.expect(await api.call("operator", "POST", "/v1/accounts", body), 422, "invalid_request")


@pytest.mark.parametrize(
    ("field", "value"), [("name", "Living\u0000room"), ("version", "1.32.5.7349\u0000")]
)
async def test_nul_in_a_server_name_or_version_is_422(api: Api, field: str, value: str) -> None:
    server = body_of({"id": "srv-nul", "name": "Den", "version": "1.32.5.7349", field: value})
    api.expect(await api.call("account", "POST", "/v1/servers", server), 422, "invalid_request")


async def test_nul_in_the_history_guid_filter_is_422(api: Api) -> None:
    response = await api.call("account", "GET", "/v1/me/history?guid=%00")
    api.expect(response, 422, "invalid_request")


@pytest.mark.parametrize("guid", ["%00", "plex%3A%2F%2Fmovie%2F5d776825880197001ec967c6%00"])
async def test_nul_in_the_state_guid_path_is_422(api: Api, guid: str) -> None:
    response = await api.call("account", "GET", f"/v1/me/state/{guid}")
    api.expect(response, 422, "invalid_request")


async def test_nul_in_a_server_id_path_is_422(api: Api) -> None:
    response = await api.call("account", "GET", "/v1/servers/srv%00a")
    api.expect(response, 422, "invalid_request")


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
@pytest.mark.parametrize(
    "target", ["/v1/servers/%00/access/bob", f"/v1/servers/{SERVER}/access/b%00b"]
)
async def test_nul_in_a_share_path_is_422(api: Api, method: str, target: str) -> None:
    api.expect(await api.call("account", method, target), 422, "invalid_request")


async def test_a_forged_state_cursor_holding_nul_is_422(api: Api) -> None:
    forged = cursor(MOVIE + "\u0000")
    response = await api.call("account", "GET", f"/v1/me/state?cursor={forged}")
    api.expect(response, 422, "invalid_request")


# -- bodies that are not UTF-8 ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "method", "target", "body"),
    [
        ("account", "POST", "/v1/me/actions", b'{"actions":[{"type":"watched","guid":"\xff"}]}'),
        ("operator", "POST", "/v1/accounts", b'{"id":"latin","kind":"full","name":"Ren\xe9e"}'),
        ("account", "POST", "/v1/servers", b'{"id":"srv-b","name":"\xc3\x28","version":"1.32.5"}'),
        (
            "server",
            "POST",
            f"/v1/servers/{SERVER}/events",
            b'{"events":[{"account":"ann","type":"watched","guid":"\xed\xa0\x80"}]}',
        ),
        ("account", "PATCH", "/v1/me", b'{"visibility":"\xff"}'),
        ("account", "PATCH", "/v1/me", b'{"\xff":true}'),
        ("account", "PATCH", "/v1/me", b'{"sync_enabled":true,"\xfe":1}'),
    ],
    ids=[
        "actions",
        "accounts",
        "servers",
        "server-events",
        "settings-value",
        "settings-key",
        "settings-unknown-key",
    ],
)
async def test_a_json_body_that_is_not_utf8_is_422(
    api: Api, kind: str, method: str, target: str, body: bytes
) -> None:
    api.expect(await api.call(kind, method, target, body), 422, "invalid_request")


# -- times outside a timestamp's range once in UTC --------------------------------------------


@pytest.mark.parametrize("at", [BEFORE_YEAR_ONE, AFTER_YEAR_9999])
async def test_an_action_at_outside_the_timestamp_range_in_utc_is_422(api: Api, at: str) -> None:
    body = body_of({"actions": [{"type": "watched", "guid": MOVIE, "at": at}]})
    api.expect(await api.call("account", "POST", "/v1/me/actions", body), 422, "invalid_request")


@pytest.mark.parametrize("at", [BEFORE_YEAR_ONE, AFTER_YEAR_9999])
async def test_a_server_event_at_outside_the_timestamp_range_in_utc_is_422(
    api: Api, at: str
) -> None:
    event = {"account": ACCOUNT, "type": "watched", "guid": MOVIE, "at": at}
    target = f"/v1/servers/{SERVER}/events"
    response = await api.call("server", "POST", target, body_of({"events": [event]}))
    api.expect(response, 422, "invalid_request")


@pytest.mark.parametrize("at", ["0001-01-01T00%3A00%3A00%2B01%3A00", "9999-12-31T23:59:59-01:00"])
async def test_updated_after_outside_the_timestamp_range_in_utc_is_422(api: Api, at: str) -> None:
    response = await api.call("account", "GET", f"/v1/me/state?updated_after={at}")
    api.expect(response, 422, "invalid_request")


async def test_a_history_cursor_at_outside_the_timestamp_range_in_utc_is_422(api: Api) -> None:
    forged = cursor([BEFORE_YEAR_ONE, 1])
    response = await api.call("account", "GET", f"/v1/me/history?cursor={forged}")
    api.expect(response, 422, "invalid_request")


# -- integers past a bigint -------------------------------------------------------------------


@pytest.mark.parametrize("after", [PAST_BIGINT, 2**64, 10**30])
async def test_admin_events_after_past_a_bigint_is_422(api: Api, after: int) -> None:
    response = await api.call("operator", "GET", f"/v1/admin/events?after={after}")
    api.expect(response, 422, "invalid_request")


@pytest.mark.parametrize("position", [PAST_BIGINT, -PAST_BIGINT - 1])
async def test_an_admin_events_cursor_past_a_bigint_is_422(api: Api, position: int) -> None:
    response = await api.call("operator", "GET", f"/v1/admin/events?cursor={position}")
    api.expect(response, 422, "invalid_request")


async def test_a_changes_cursor_past_a_bigint_is_422(api: Api) -> None:
    target = f"/v1/servers/{SERVER}/changes?cursor={cursor(PAST_BIGINT)}"
    api.expect(await api.call("server", "GET", target), 422, "invalid_request")


@pytest.mark.parametrize("position", [PAST_BIGINT, -PAST_BIGINT - 1])
async def test_a_history_cursor_position_past_a_bigint_is_422(api: Api, position: int) -> None:
    forged = cursor(["2026-01-01T12:00:00Z", position])
    response = await api.call("account", "GET", f"/v1/me/history?cursor={forged}")
    api.expect(response, 422, "invalid_request")


# -- Expect -----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [b"\x80", b"something-else"], ids=["not-utf8", "unknown"])
@pytest.mark.parametrize("target", ["/healthz", "/v1/me", "/no/such/path"])
async def test_an_expectation_the_server_cannot_meet_is_417(
    client: TestClient[Any, Any], target: str, value: bytes
) -> None:
    """aiohttp answers ``Expect`` before routing and the middlewares: text/plain echoing the
    value, and a 500 for a value that is not UTF-8."""
    response = await send(client, "GET", target, headers=[(b"Expect", value)])
    assert_problem(response, 417, "expectation_failed")


async def test_expect_100_continue_still_works(
    client: TestClient[Any, Any], who: Principals
) -> None:
    body = body_of({"actions": [{"type": "watched", "guid": MOVIE}]})
    response = await send(
        client,
        "POST",
        "/v1/me/actions",
        headers=[bearer(who.account), (b"Expect", b"100-continue")],
        body=body,
    )
    # The raw client reads the interim "100 Continue" as the status; the final answer follows.
    assert response.status == 100, response
    assert response.body.startswith(b"HTTP/1.1 200 OK\r\n"), response
