"""``watchledger connect`` as the separate process it is in production, against a real
``watchledger serve`` process and a fake Plex, Jellyfin or Emby server: a watch on the server
reaches the service with the server's time, a rating through the API reaches the server, an
unwatch on the server reaches the service, SIGTERM stops it cleanly (exit 0), and a token the
service refuses is one line and exit 3."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from services.connectors.fakes.mediabrowser import FakeMediaBrowser
from services.connectors.fakes.plex import FakePlex
from tests.api import OPERATOR_TOKEN
from tests.live import WATCHLEDGER, LiveService, free_port, live_service

API_KEY = "live-media-token"
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


@pytest.fixture(params=["plex", "jellyfin", "emby"])
async def world(
    request: pytest.FixtureRequest, service: LiveService, tmp_path: Path
) -> AsyncIterator[dict[str, Any]]:
    """Ann (sync on) owns a registered media server of each kind in turn; its fake runs; a
    configuration for its connector is written."""
    kind = str(request.param)
    fake: FakePlex | FakeMediaBrowser
    if kind == "plex":
        fake = FakePlex(API_KEY)
        fake.add_movie("101", "plex://movie/5d776825880197001ec967c6", ["imdb://tt0111161"])
        user, movie, media_user = "1", "101", "owner"
    else:
        fake = FakeMediaBrowser(kind, API_KEY)  # type: ignore[arg-type]
        user = fake.add_user("ann")
        movie = fake.add_movie({"Imdb": "tt0111161", "Tmdb": "278"})
        media_user = "ann"
    media_url = await fake.start(fake.app())
    async with aiohttp.ClientSession() as http:
        api = Api(http, service.base_url)
        account = {"id": "ann", "kind": "full", "name": "Ann"}
        ann = (await api.call("POST", "/v1/accounts", OPERATOR_TOKEN, account, 201))["token"]
        server = {"id": "live-1", "name": kind, "version": "10.11.0"}
        registered = await api.call("POST", "/v1/servers", ann, server, 201)
        await api.call("PATCH", "/v1/me", ann, {"sync_enabled": True})
        port = free_port()
        config = tmp_path / "live.toml"
        config.write_text(
            "\n".join(
                [
                    'state_file = "live.sqlite"',
                    "poll_interval = 3600",
                    "[watchledger]",
                    f'url = "{service.base_url}"',
                    'server_id = "live-1"',
                    'token_env = "WATCHLEDGER_SERVER_TOKEN"',
                    "[media_server]",
                    f'kind = "{kind}"',
                    f'url = "{media_url}"',
                    'token_env = "MEDIA_TOKEN"',
                    "[listen]",
                    'host = "127.0.0.1"',
                    f"port = {port}",
                    'secret_env = "HOOK_SECRET"',
                    "[[users]]",
                    f'media_user = "{media_user}"',
                    'account = "ann"',
                ]
            )
            + "\n"
        )
        env = {
            **os.environ,
            "WATCHLEDGER_SERVER_TOKEN": registered["token"],
            "MEDIA_TOKEN": API_KEY,
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


class Connect:
    """A ``watchledger connect`` process and its JSON log, read as it comes (so its pipe never
    fills)."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[dict[str, Any]] = []
        self._more = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, config: Path, env: dict[str, str]) -> Connect:
        process = await asyncio.create_subprocess_exec(
            WATCHLEDGER,
            "connect",
            "--config",
            str(config),
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        return cls(process)

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for raw in self.process.stdout:
            if raw.startswith(b"{"):
                async with self._more:
                    self.lines.append(json.loads(raw))
                    self._more.notify_all()
        async with self._more:
            self._more.notify_all()

    async def logged(self, event: str, after: int = 0) -> None:
        """Until the log has ``event`` (after its first ``after`` lines)."""

        def seen() -> bool:
            if any(line["event"] == event for line in self.lines[after:]):
                return True
            assert not self._reader.done(), f"the connector exited before {event}: {self.lines}"
            return False

        async with asyncio.timeout(60), self._more:
            await self._more.wait_for(seen)

    async def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            code = await self.process.wait()
            await self._reader
        return code


async def test_a_connector_process_syncs_both_ways_and_stops_on_sigterm(
    world: dict[str, Any],
) -> None:
    fake: FakePlex | FakeMediaBrowser = world["fake"]
    api: Api = world["api"]
    user, movie = world["user"], world["movie"]
    connector = await Connect.start(world["config"], world["env"])
    runs = [connector]
    try:
        await connector.logged("user_polled")  # started, listening, first scan done
        fake.webhook_url = world["webhook"]
        fake.clock = T1
        await fake.play_to_end(user, movie)
        item = await until_state(api, world["ann"], lambda found: found.get("watched"))
        assert item["watched_at"] == "2026-01-01T12:00:00Z"
        assert "imdb://movie/tt0111161" in item["ids"]

        action = {"type": "rated", "guid": "imdb://movie/tt0111161", "rating": 7}
        await api.call("POST", "/v1/me/actions", world["ann"], {"actions": [action]})
        await fake.wait_writes(lambda writes: any(w.action in ("rate", "rated") for w in writes))
        assert fake.data[(user, movie)].rating == 7

        fake.clock = T1 + 60
        if isinstance(fake, FakePlex):
            # Plex sends no webhook for a manual mark: a poll finds it (a restart's first one,
            # its state file kept).
            fake.mark_unplayed(user, movie)
            assert await connector.stop() == 0
            connector = await Connect.start(world["config"], world["env"])
            runs.append(connector)
        else:
            await fake.mark_unplayed(user, movie)
        item = await until_state(api, world["ann"], lambda found: found.get("watched") is False)
        assert item["rating"] == 7
    finally:
        assert await connector.stop() == 0
    lines = [line for run in runs for line in run.lines]
    assert [line["event"] for line in lines].count("connector_stopped") == len(runs)
    assert not [line for line in lines if line["level"] in ("error", "critical")]
    assert API_KEY not in json.dumps(lines)
    assert world["env"]["WATCHLEDGER_SERVER_TOKEN"] not in json.dumps(lines)


async def until_state(
    api: Api, token: str, wanted: Callable[[dict[str, Any]], object]
) -> dict[str, Any]:
    """The account's one title once ``wanted`` holds of it (another process: no event crosses
    to this one, so this asks again)."""
    async with asyncio.timeout(30):
        while True:
            found = (await api.call("GET", "/v1/me/state?limit=10", token))["items"]
            if found and wanted(found[0]):
                return dict(found[0])
            await asyncio.sleep(0.05)


async def test_a_token_the_service_refuses_is_one_line_and_exit_3(
    world: dict[str, Any],
) -> None:
    env = {**world["env"], "WATCHLEDGER_SERVER_TOKEN": "wls.live-1.not-the-token"}
    env.pop("WATCHLEDGER_LOG_FORMAT")
    process = await asyncio.create_subprocess_exec(
        WATCHLEDGER,
        "connect",
        "--config",
        str(world["config"]),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(60):
        out, _ = await process.communicate()
    assert process.returncode == 3, out
    text = out.decode()
    lines = [line for line in text.splitlines() if "refused" in line]
    assert len(lines) == 1, text
    assert "watchledger refused the connector" in lines[0]
    assert "not-the-token" not in text
