"""The release a process runs, and what a response or a log line says about it (issue "Run it
for real", item 11): `watchledger --version`, `GET /healthz`'s version, a Server header that
names no versions, and an access log at info that names routes, never paths or tokens."""

from __future__ import annotations

import logging
from collections.abc import Iterator, MutableMapping
from importlib.metadata import version
from typing import Any

import pytest
import structlog
from aiohttp.test_utils import TestClient

from services.http import metrics
from services.ops import cli
from tests.api import MOVIE, create_account, post_actions, t


def test_the_command_says_its_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"watchledger {version('watchledger')}"


async def test_healthz_says_the_version_and_no_response_names_python_or_aiohttp(
    client: TestClient[Any, Any],
) -> None:
    response = await client.get("/healthz")
    assert await response.json() == {"status": "ok", "version": version("watchledger")}
    for path in ("/healthz", "/v1/openapi.json", "/v1/me", "/nowhere"):
        answer = await client.get(path)
        assert answer.headers["Server"] == "watchledger", path
    # A request aiohttp cannot parse is answered below the application: the same header.
    unparsed = await client.request("BREW", "/healthz")
    assert unparsed.status == 400
    assert unparsed.headers["Server"] == "watchledger"


@pytest.fixture
def access_log(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[MutableMapping[str, Any]]]:
    """The request middleware's log lines, at info, whatever an earlier test configured
    (commands configure structlog for the process, with a level, and cache loggers)."""
    saved = structlog.get_config()
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        cache_logger_on_first_use=False,
    )
    try:
        with structlog.testing.capture_logs() as entries:
            monkeypatch.setattr(metrics, "log", structlog.get_logger(metrics.__name__))
            yield entries
    finally:
        structlog.configure(**saved)


async def test_the_access_log_names_the_route_never_the_title_or_the_token(
    client: TestClient[Any, Any], access_log: list[MutableMapping[str, Any]]
) -> None:
    headers = await create_account(client, "ann")
    await post_actions(client, headers, {"type": "watched", "guid": MOVIE, "at": t(1)})
    access_log.clear()
    assert (await client.get(f"/v1/me/state/{MOVIE}", headers=headers)).status == 200
    assert (await client.get(f"/v1/me/history?guid={MOVIE}", headers=headers)).status == 200
    assert (await client.request("PROPFIND", "/v1/me", headers=headers)).status == 405

    requests = [e for e in access_log if e["event"] == "request"]
    assert [(e["log_level"], e["method"], e["route"], e["status"]) for e in requests] == [
        ("info", "GET", "/v1/me/state/{guid}", 200),
        ("info", "GET", "/v1/me/history", 200),
        ("info", "PROPFIND", "unmatched", 405),  # no route takes it
    ]
    shown = repr(access_log)
    assert "5d776825880197001ec967c6" not in shown
    assert headers["Authorization"].split()[1] not in shown


async def test_the_method_label_is_bounded(client: TestClient[Any, Any]) -> None:
    for method in ("PROPFIND", "MKCOL", "SEARCH"):  # methods aiohttp parses, we serve none
        await client.request(method, "/healthz")
    metrics = await (await client.get("/metrics")).text()
    assert 'method="other"' in metrics
    for method in ("PROPFIND", "MKCOL", "SEARCH"):
        assert method not in metrics
