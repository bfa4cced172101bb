"""``watchledger connect`` as the separate process it is in production, against a real
``watchledger serve`` process and a fake Jellyfin server: a mark on the server reaches the
service, a change through the API reaches the server with its date, SIGTERM stops it cleanly
(exit 0), and a token the service refuses is one line and exit 3."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from services.connectors.fakes.mediabrowser import FakeMediaBrowser
from tests.api import OPERATOR_TOKEN
from tests.live import WATCHLEDGER, LiveService, free_port, live_service

API_KEY = "jf-api-key"
SECRET = "live-hook-secret"
T1 = 1_767_268_800.0  # 2026-01-01T12:00:00Z


@pytest.fixture
def service(server_url: str, template_name: str) -> Iterator[LiveService]:
    with live_service(server_url, template_name, OPERATOR_TOKEN) as running:
        yield running


class Api:
    """Calls to the live service."""

    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http = http
        self.base = base

    async def call(
        self, method: str, path: str, token: str, body: Any = None, expect: int = 200
    ) -> Any:
        async with self.http.request(
            method, self.base + path, json=body, headers={"Authorization": f"Bearer {token}"}
        ) as response:
            assert response.status == expect, await response.text()
            return await response.json() if response.status != 204 else None


@pytest.fixture
async def world(service: LiveService, tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    """Ann (sync on) owns a registered Jellyfin server; the fake Jellyfin runs; a
    configuration for its connector is written."""
    fake = FakeMediaBrowser("jellyfin", API_KEY)
    user = fake.add_user("ann")
    movie = fake.add_movie({"Imdb": "tt0111161", "Tmdb": "278"})
    media_url = await fake.start(fake.app())
    async with aiohttp.ClientSession() as http:
        api = Api(http, service.base_url)
        account = {"id": "ann", "kind": "full", "name": "Ann"}
        ann = (await api.call("POST", "/v1/accounts", OPERATOR_TOKEN, account, 201))["token"]
        server = {"id": "jf-live", "name": "Jellyfin", "version": "10.11.0"}
        registered = await api.call("POST", "/v1/servers", ann, server, 201)
        await api.call("PATCH", "/v1/me", ann, {"sync_enabled": True})
        port = free_port()
        config = tmp_path / "jf.toml"
        config.write_text(
            "\n".join(
                [
                    'state_file = "jf.sqlite"',
                    "poll_interval = 3600",
                    "[watchledger]",
                    f'url = "{service.base_url}"',
                    'server_id = "jf-live"',
                    'token_env = "WATCHLEDGER_SERVER_TOKEN"',
                    "[media_server]",
                    'kind = "jellyfin"',
                    f'url = "{media_url}"',
                    'token_env = "JELLYFIN_API_KEY"',
                    "[listen]",
                    'host = "127.0.0.1"',
                    f"port = {port}",
                    'secret_env = "HOOK_SECRET"',
                    "[[users]]",
                    'media_user = "ann"',
                    'account = "ann"',
                ]
            )
            + "\n"
        )
        env = {
            **os.environ,
            "WATCHLEDGER_SERVER_TOKEN": registered["token"],
            "JELLYFIN_API_KEY": API_KEY,
            "HOOK_SECRET": SECRET,
            "WATCHLEDGER_LOG_FORMAT": "json",
        }
        yield {
            "fake": fake,
            "api": api,
            "ann": ann,
            "user": user,
            "movie": movie,
            "config": config,
            "env": env,
            "webhook": f"http://127.0.0.1:{port}/webhook?secret={SECRET}",
        }
    await fake.close()


async def connect(config: Path, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        WATCHLEDGER,
        "connect",
        "--config",
        str(config),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


async def logged(process: asyncio.subprocess.Process, event: str) -> list[dict[str, Any]]:
    """The process's JSON log lines up to and including the first ``event``."""
    assert process.stdout is not None
    lines: list[dict[str, Any]] = []
    async with asyncio.timeout(60):
        while True:
            raw = await process.stdout.readline()
            assert raw, f"the connector exited ({await process.wait()}) before {event}: {lines}"
            if raw.startswith(b"{"):
                lines.append(json.loads(raw))
                if lines[-1]["event"] == event:
                    return lines


async def test_a_connector_process_syncs_both_ways_and_stops_on_sigterm(
    world: dict[str, Any],
) -> None:
    fake: FakeMediaBrowser = world["fake"]
    api: Api = world["api"]
    process = await connect(world["config"], world["env"])
    try:
        await logged(process, "user_polled")  # started, listening, first scan done
        fake.webhook_url = world["webhook"]
        fake.clock = T1
        await fake.mark_played(world["user"], world["movie"])
        async with asyncio.timeout(30):
            while True:  # another process: its log says when it sent, the service when stored
                found = await api.call("GET", "/v1/me/state?limit=10", world["ann"])
                if found["items"]:
                    break
                await asyncio.sleep(0.05)
        [item] = found["items"]
        assert item["watched"] is True
        assert item["watched_at"] == "2026-01-01T12:00:00Z"
        assert "tmdb://movie/278" in item["ids"]

        action = {"type": "rated", "guid": "imdb://movie/tt0111161", "rating": 7}
        await api.call("POST", "/v1/me/actions", world["ann"], {"actions": [action]})
        await fake.wait_writes(lambda writes: any(w.action == "rated" for w in writes))
        assert fake.data[(world["user"], world["movie"])].rating == 7
    finally:
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            lines = await logged(process, "connector_stopped")
            assert await process.wait() == 0
    assert not [line for line in lines if line["level"] in ("error", "critical")]
    assert API_KEY not in json.dumps(lines)
    assert world["env"]["WATCHLEDGER_SERVER_TOKEN"] not in json.dumps(lines)


async def test_a_token_the_service_refuses_is_one_line_and_exit_3(
    world: dict[str, Any],
) -> None:
    env = {**world["env"], "WATCHLEDGER_SERVER_TOKEN": "wls.jf-live.not-the-token"}
    env.pop("WATCHLEDGER_LOG_FORMAT")
    process = await connect(world["config"], env)
    async with asyncio.timeout(60):
        out, _ = await process.communicate()
    assert process.returncode == 3, out
    text = out.decode()
    lines = [line for line in text.splitlines() if "refused" in line]
    assert len(lines) == 1, text
    assert "watchledger refused the connector" in lines[0]
    assert "not-the-token" not in text
