"""``watchledger bench connectors``: connectors against the fake media servers, against a
``watchledger serve`` child process on a scratch database.

* **Library scan**: a Jellyfin library of ``items`` movies, every one played by its user,
  read by the connector's first poll (mapping every item to its ids, recording what was
  seen); its ceiling is paging through the same listing with no connector.
* **Baseline upload**: sync turned on, the baseline request answered: one record per title,
  sent in batches and recorded; its ceiling is posting the same records straight to the API
  in batches of the same size.
* **Server to server**: a title played to the end on a Plex server (its webhook), until the
  connector of a Jellyfin server has marked it played there (production's sender window);
  its floor is the service alone, a server's event until another server's long-poll has it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from services.connectors.config import load_config
from services.connectors.connector import Connector
from services.connectors.fakes.mediabrowser import FakeMediaBrowser
from services.connectors.fakes.plex import FakePlex
from services.connectors.run import opened, started
from services.http.wire import MAX_BATCH

from .bench import Figure, Latency, _timed, running_server, scratch_database

# The fakes' own credentials (no real server is involved).
API_KEY = "bench-jellyfin-key"
PLEX_TOKEN = "bench-plex-token"  # noqa: S105
# A month ago: every viewing in the library is in the past.
PAST = time.time() - 30 * 86_400


class _Api:
    def __init__(self, http: aiohttp.ClientSession, operator: str) -> None:
        self.http = http
        self.operator = {"Authorization": f"Bearer {operator}"}

    async def call(self, method: str, path: str, headers: dict[str, str], body: Any = None) -> Any:
        async with self.http.request(method, path, json=body, headers=headers) as response:
            response.raise_for_status()
            return await response.json() if response.status != 204 else None

    async def account(self, name: str, *, sync: bool) -> dict[str, str]:
        body = {"id": name, "kind": "full", "name": name}
        created = await self.call("POST", "/v1/accounts", self.operator, body)
        headers = {"Authorization": f"Bearer {created['token']}"}
        if sync:
            await self.sync(headers)
        return headers

    async def sync(self, headers: dict[str, str]) -> None:
        await self.call("PATCH", "/v1/me", headers, {"sync_enabled": True})

    async def server(self, owner: dict[str, str], sid: str) -> str:
        body = {"id": sid, "name": sid, "version": "1.40.0.1"}
        return str((await self.call("POST", "/v1/servers", owner, body))["token"])


def _config(
    folder: Path, base: str, sid: str, kind: str, media_url: str, account: str, media_user: str
) -> Path:
    path = folder / f"{sid}.toml"
    path.write_text(
        f'state_file = "{sid}.sqlite"\npoll_interval = 3600\n'
        f'[watchledger]\nurl = "{base}"\nserver_id = "{sid}"\ntoken_env = "SERVER_TOKEN"\n'
        f'[media_server]\nkind = "{kind}"\nurl = "{media_url}"\ntoken_env = "MEDIA_TOKEN"\n'
        f'[listen]\nhost = "127.0.0.1"\nport = 0\n'
        f'[[users]]\nmedia_user = "{media_user}"\naccount = "{account}"\n'
    )
    return path


@contextlib.asynccontextmanager
async def _running(config: Path, env: dict[str, str]) -> AsyncIterator[Connector]:
    """A connector with production's settings, running until the block ends."""
    async with opened(load_config(config, env)) as connector, started(connector):
        yield connector


async def _list_all(media_url: str, user: str, items: int) -> None:
    """The listing the connector pages through, with no connector: the scan's ceiling."""
    headers = {"Authorization": f'MediaBrowser Token="{API_KEY}"'}
    async with aiohttp.ClientSession(media_url, headers=headers) as http:
        for start in range(0, items, 500):
            params = {
                "userId": user,
                "recursive": "true",
                "includeItemTypes": "Movie,Episode",
                "fields": "ProviderIds",
                "enableUserData": "true",
                "startIndex": str(start),
                "limit": "500",
            }
            async with http.get("/Items", params=params) as response:
                response.raise_for_status()
                await response.json()


async def _scan_and_baseline(api: _Api, base: str, folder: Path, items: int) -> list[Figure]:
    fake = FakeMediaBrowser("jellyfin", API_KEY)
    user = fake.add_user("ann")
    for i in range(items):
        item = fake.add_movie({"Imdb": f"tt{2_000_000 + i}", "Tmdb": str(900_000 + i)})
        watch = fake.watch(user, item)
        watch.plays, watch.last_played = 1 + i % 3, PAST + i
    media_url = await fake.start(fake.app())
    try:
        ceiling = await _timed(
            "Jellyfin listing, no connector (ceiling)",
            items,
            lambda: _list_all(media_url, user, items),
            ceiling=True,
        )
        ann = await api.account("ann", sync=False)
        token = await api.server(ann, "jf-scan")
        config = _config(folder, base, "jf-scan", "jellyfin", media_url, "ann", "ann")
        env = {"SERVER_TOKEN": token, "MEDIA_TOKEN": API_KEY}
        started = time.perf_counter()
        async with _running(config, env) as connector:
            await connector.polled(0)
            scan = Figure(
                f"connector first scan, {items:,} items", items, time.perf_counter() - started
            )
            await connector.drained(0)
            answered = connector.changes_drained
            started = time.perf_counter()
            await api.sync(ann)  # the baseline request
            await connector.drained(answered)
            await connector.sender.idle()
            baseline = Figure(
                f"baseline upload, {items:,} titles, to recorded",
                items,
                time.perf_counter() - started,
            )
        raw_owner = await api.account("raw", sync=True)
        raw = {"Authorization": f"Bearer {await api.server(raw_owner, 'raw-baseline')}"}
        records = [
            {
                "account": "raw",
                "type": "watched",
                "guid": f"imdb://movie/tt{2_000_000 + i}",
                "ids": [f"tmdb://movie/{900_000 + i}"],
                "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(PAST + i)),
                "baseline": True,
            }
            for i in range(items)
        ]

        async def post_all() -> None:
            for start in range(0, items, MAX_BATCH):
                body = {"events": records[start : start + MAX_BATCH]}
                await api.call("POST", "/v1/servers/raw-baseline/events", raw, body)

        posted = await _timed(
            f"POST /v1/servers/{{sid}}/events, {MAX_BATCH}/request (ceiling)",
            items,
            post_all,
            ceiling=True,
        )
    finally:
        await fake.close()
    return [scan, ceiling, baseline, posted]


async def _server_to_server(api: _Api, base: str, folder: Path, samples: int) -> list[Latency]:
    plex, jellyfin = FakePlex(PLEX_TOKEN), FakeMediaBrowser("jellyfin", API_KEY)
    jellyfin.add_user("ann")
    pairs = []
    for i in range(samples):
        imdb = f"tt{3_000_000 + i}"
        plex.add_movie(str(1000 + i), f"plex://movie/{4_000_000 + i:024x}", [f"imdb://{imdb}"])
        pairs.append((str(1000 + i), jellyfin.add_movie({"Imdb": imdb})))
    plex_url, jellyfin_url = await plex.start(plex.app()), await jellyfin.start(jellyfin.app())
    try:
        lat = await api.account("lat", sync=True)
        plex_env = {"SERVER_TOKEN": await api.server(lat, "plex-lat"), "MEDIA_TOKEN": PLEX_TOKEN}
        jf_env = {"SERVER_TOKEN": await api.server(lat, "jf-lat"), "MEDIA_TOKEN": API_KEY}
        plex_config = _config(folder, base, "plex-lat", "plex", plex_url, "lat", "owner")
        jf_config = _config(folder, base, "jf-lat", "jellyfin", jellyfin_url, "lat", "ann")
        lags = []
        async with (
            _running(plex_config, plex_env) as on_plex,
            _running(jf_config, jf_env) as on_jellyfin,
        ):
            plex.webhook_url = f"http://127.0.0.1:{on_plex.listening_port}/webhook"
            for connector in (on_plex, on_jellyfin):
                await connector.polled(0)
                await connector.drained(0)
            for key, item in pairs:
                started = time.perf_counter()
                await plex.play_to_end("1", key)
                await jellyfin.wait_writes(lambda w, item=item: any(x.item == item for x in w))  # type: ignore[misc]
                lags.append(time.perf_counter() - started)
    finally:
        await plex.close()
        await jellyfin.close()
    floor = await _service_alone(api, samples)
    return [
        Latency("webhook on Plex -> played on Jellyfin (connectors)", lags),
        Latency("server A event -> long-poll on B (service alone)", floor),
    ]


async def _service_alone(api: _Api, samples: int) -> list[float]:
    owner = await api.account("floor", sync=True)
    a = {"Authorization": f"Bearer {await api.server(owner, 'floor-a')}"}
    b = {"Authorization": f"Bearer {await api.server(owner, 'floor-b')}"}
    cursor = (await api.call("GET", "/v1/servers/floor-b/changes", b))["cursor"]  # baseline
    lags = []
    for i in range(samples):
        event = {"account": "floor", "type": "watched", "guid": f"tmdb://movie/{5_000_000 + i}"}
        started = time.perf_counter()
        waiting = asyncio.create_task(
            api.call("GET", f"/v1/servers/floor-b/changes?wait=10&cursor={cursor}", b)
        )
        await api.call("POST", "/v1/servers/floor-a/events", a, {"events": [event]})
        answer = await waiting
        while not answer["changes"]:
            path = f"/v1/servers/floor-b/changes?wait=10&cursor={answer['cursor']}"
            answer = await api.call("GET", path, b)
        lags.append(time.perf_counter() - started)
        cursor = answer["cursor"]
    return lags


async def bench_connectors(
    url: str, *, items: int, samples: int
) -> tuple[list[Figure], list[Latency]]:
    operator = f"wlo.{secrets.token_urlsafe(32)}"
    # A line per change applied would bury the figures.
    logging.getLogger("services.connectors").setLevel(logging.WARNING)
    async with (
        scratch_database(url) as scratch,
        running_server(scratch, operator) as base,
        aiohttp.ClientSession(base, connector=aiohttp.TCPConnector(limit=0)) as http,
    ):
        api = _Api(http, operator)
        with tempfile.TemporaryDirectory(prefix="watchledger-bench-") as folder:
            figures = await _scan_and_baseline(api, base, Path(folder), items)
            latencies = await _server_to_server(api, base, Path(folder), samples)
    return figures, latencies
