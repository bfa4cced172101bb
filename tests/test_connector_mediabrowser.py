"""The Jellyfin and Emby connectors end to end: a fake server, the connector, a real
watchledger."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from services.connectors.fakes.common import Write
from services.connectors.fakes.mediabrowser import FakeMediaBrowser
from tests.api import create_account, settle
from tests.connectors import WEBHOOK_SECRET, Running, running_connector, write_config
from tests.servers import register, sync

API_KEY = "mb-api-key"
T1 = 1_767_268_800.0  # 2026-01-01T12:00:00Z
MOVIE = "imdb://movie/tt0111161"


class World:
    def __init__(
        self,
        fake: FakeMediaBrowser,
        running: Running,
        ann: dict[str, str],
        server: dict[str, str],
    ) -> None:
        self.fake = fake
        self.running = running
        self.ann = ann
        self.server = server
        self.user = next(iter(fake.users))
        self.movie = next(i.id for i in fake.items.values() if i.type == "Movie")
        self.episode = next(i.id for i in fake.items.values() if i.type == "Episode")


@contextlib.asynccontextmanager
async def mediabrowser_world(
    client: TestClient[Any, Any],
    tmp_path: Path,
    flavor: str,
    fmt: str = "",
    *,
    sender_window: float = 0.01,
) -> AsyncIterator[World]:
    """Ann (sync on) owns a registered Jellyfin or Emby server (webhooks in ``fmt``) holding a
    movie and a show's first episode, and its connector runs."""
    fake = FakeMediaBrowser(flavor, API_KEY)  # type: ignore[arg-type]
    if fmt:
        fake.webhook_format = fmt  # type: ignore[assignment]
    fake.add_user("ann")
    fake.add_movie({"Imdb": "tt0111161", "Tmdb": "278"})
    series = fake.add_series({"Tvdb": "81189"})
    fake.add_episode(series, 1, 1, {"Tvdb": "349232"})
    ann = await create_account(client, "ann")
    server = await register(client, ann, "mb-1")
    await sync(client, ann, True)
    url = await fake.start(fake.app())
    config = write_config(
        tmp_path / "mb.toml",
        kind=flavor,
        watchledger=str(client.make_url("")).rstrip("/"),
        server_id="mb-1",
        media_url=url,
        users=[("ann", "ann", None)],  # by name: the connector finds the id
    )
    env = {
        "WATCHLEDGER_SERVER_TOKEN": server["Authorization"].removeprefix("Bearer "),
        "MEDIA_TOKEN": API_KEY,
        "CONNECTOR_WEBHOOK_SECRET": WEBHOOK_SECRET,
    }
    try:
        async with running_connector(client, config, env, sender_window=sender_window) as running:
            fake.webhook_url = running.webhook_url
            yield World(fake, running, ann, server)
    finally:
        await fake.close()


@pytest.fixture(params=["jellyfin", "emby-form", "emby-multipart", "emby-json"])
async def world(
    request: pytest.FixtureRequest, client: TestClient[Any, Any], tmp_path: Path
) -> AsyncIterator[World]:
    flavor, _, fmt = str(request.param).partition("-")
    async with mediabrowser_world(client, tmp_path, flavor, fmt) as made:
        yield made


async def state(client: TestClient[Any, Any], who: dict[str, str], guid: str) -> dict[str, Any]:
    response = await client.get(f"/v1/me/state/{guid}", headers=who)
    assert response.status in (200, 404), await response.text()
    return await response.json() if response.status == 200 else {}


def at(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


async def test_marks_and_ratings_made_on_the_server_reach_watchledger(
    client: TestClient[Any, Any], world: World
) -> None:
    fake, running = world.fake, world.running
    fake.clock = T1
    await fake.mark_played(world.user, world.movie)
    await running.delivered()
    found = await state(client, world.ann, MOVIE)
    assert found["watched"] is True
    assert found["watched_at"] == at(T1)
    assert "tmdb://movie/278" in found["ids"]
    await fake.rate(world.user, world.movie, 7.5)
    await running.delivered()
    assert (await state(client, world.ann, MOVIE))["rating"] == 8
    fake.clock = T1 + 60
    await fake.mark_unplayed(world.user, world.movie)
    await running.delivered()
    assert (await state(client, world.ann, MOVIE))["watched"] is False
    await fake.play_to_end(world.user, world.episode)
    await running.delivered()
    episode = await state(client, world.ann, "tvdb://show/81189/s1e1")
    assert episode["watched"] is True
    assert "tvdb://episode/349232" in episode["ids"]


async def test_changes_through_the_api_reach_the_server_with_their_date_and_no_echo(
    client: TestClient[Any, Any], world: World
) -> None:
    fake, running = world.fake, world.running
    actions = [
        {"type": "watched", "guid": "tmdb://movie/278", "at": at(T1)},
        {"type": "rated", "guid": MOVIE, "rating": 6, "at": at(T1)},
    ]
    response = await client.post("/v1/me/actions", json={"actions": actions}, headers=world.ann)
    assert response.status == 200, await response.text()
    await fake.wait_writes(lambda w: {x.action for x in w} == {"played", "rated"})
    watch = fake.data[(world.user, world.movie)]
    assert watch.last_played == T1
    assert watch.rating == 6
    await running.poll()
    await running.delivered()
    assert running.sent == []
    response = await client.get("/v1/me/history", headers=world.ann)
    assert len((await response.json())["items"]) == 1


async def test_events_without_a_user_are_dropped_and_the_poll_sees_the_change(
    client: TestClient[Any, Any], world: World
) -> None:
    world.fake.no_user = True
    await world.fake.mark_played(world.user, world.movie)
    await world.running.delivered()
    assert world.running.sent == []
    await world.running.poll()
    assert [e["type"] for e in world.running.sent] == ["watched"]
    assert (await state(client, world.ann, MOVIE))["watched"] is True


async def test_every_call_is_one_the_servers_document_lists(
    client: TestClient[Any, Any], world: World
) -> None:
    """Routes, query names in the document's own casing (Jellyfin camelCase, Emby PascalCase) and
    user-data fields: the fake records whatever Jellyfin's OpenAPI document (10.11.8) or Emby's
    (Emby.SDK 4.8.11.0) does not list for the route."""
    fake = world.fake
    first = [
        {"type": "watched", "guid": MOVIE, "at": at(T1)},
        {"type": "rated", "guid": MOVIE, "rating": 6, "at": at(T1)},
    ]
    response = await client.post("/v1/me/actions", json={"actions": first}, headers=world.ann)
    assert response.status == 200, await response.text()
    await fake.wait_writes(lambda w: {x.action for x in w} == {"played", "rated"})
    then = [
        {"type": "unwatched", "guid": MOVIE, "at": at(T1 + 60)},
        {"type": "unrated", "guid": MOVIE, "at": at(T1 + 60)},
    ]
    response = await client.post("/v1/me/actions", json={"actions": then}, headers=world.ann)
    assert response.status == 200, await response.text()
    await fake.wait_writes(lambda w: len(w) == 4)
    assert [w.action for w in fake.writes][2:] in (["unplayed", "rated"], ["rated", "unplayed"])
    await world.running.poll()
    assert fake.reads > 0
    assert fake.off_spec == []


async def test_a_change_for_a_title_the_library_lacks_is_applied_when_it_arrives(
    client: TestClient[Any, Any], world: World
) -> None:
    fake, running = world.fake, world.running
    later = {"type": "watched", "guid": "imdb://movie/tt0068646", "at": at(T1)}
    response = await client.post("/v1/me/actions", json={"actions": [later]}, headers=world.ann)
    assert response.status == 200, await response.text()
    await settle(client)
    await running.drain("mb-1", world.server)
    assert fake.writes == []
    assert running.connector.state.deferred_count() == 1

    item = fake.add_movie({"Imdb": "tt0068646"})  # the file arrives; the next poll finds it
    fake.fail_writes = 1  # and its first write fails: the change stays kept
    await running.poll()
    assert fake.writes == []
    assert running.connector.state.deferred_count() == 1
    await running.poll()
    await fake.wait_writes(lambda writes: len(writes) == 1)
    assert fake.data[(world.user, item)].last_played == T1
    assert running.connector.state.deferred_count() == 0
    await running.poll()
    assert running.sent == []
    assert len(fake.writes) == 1


PRIVATE = ("MBSERVERNAME", "MBDEVICENAME", "MBPATHNAME", "203.0.113.9", "f40a5bd0c6b6")
ALLOWED = {"account", "type", "guid", "ids", "at", "rating", "edition", "baseline"}


async def test_nothing_of_where_it_happened_leaves_the_connector(world: World) -> None:
    """Server, device, path and address ride in every payload and listing; none leaves."""
    fake, running = world.fake, world.running
    await fake.play_to_end(world.user, world.episode)
    await fake.rate(world.user, world.movie, 9)
    await fake.mark_played(world.user, world.movie)
    await running.delivered()
    assert len(running.sent) == 3
    for event in running.sent:
        assert set(event) <= ALLOWED
        assert not any(marker in repr(event) for marker in PRIVATE)


async def test_metrics_count_what_happened_and_name_no_one_and_nothing(
    client: TestClient[Any, Any], world: World
) -> None:
    fake, running = world.fake, world.running
    await fake.mark_played(world.user, world.movie)
    later = {"type": "watched", "guid": "imdb://movie/tt0068646", "at": at(T1)}
    response = await client.post("/v1/me/actions", json={"actions": [later]}, headers=world.ann)
    assert response.status == 200
    await running.delivered()
    await running.drain("mb-1", world.server)
    url = running.webhook_url.split("/webhook")[0] + "/metrics"
    async with aiohttp.ClientSession() as http, http.get(url) as scraped:
        assert scraped.status == 200
        text = await scraped.text()
    values = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert values['watchledger_connector_events_sent_total{result="recorded",type="watched"}'] == 1
    assert values['watchledger_connector_changes_total{outcome="not_in_library"}'] >= 1
    assert values["watchledger_connector_deferred_changes"] == 1
    assert values["watchledger_connector_outbox_events"] == 0
    private = ("ann", world.user, world.movie, "tt0111161", "tt0068646", "278", "mb-1")
    for series in values:
        labels = series.partition("{")[2]
        assert not any(p in labels for p in private), series


async def test_a_change_made_while_the_connector_writes_is_reported_not_taken_for_its_own(
    client: TestClient[Any, Any], world: World
) -> None:
    """The user unmarks the movie while the connector is writing its rating: what it reads
    after its write shows both, and only the rating is its own."""
    fake, running = world.fake, world.running
    fake.clock = T1
    await fake.mark_played(world.user, world.movie)
    await running.delivered()

    async def unplayed_meanwhile(write: Write) -> None:
        fake.during_write = None
        watch = fake.watch(world.user, world.movie)
        watch.plays, watch.last_played = 0, None  # its webhook is lost

    fake.during_write = unplayed_meanwhile
    action = {"type": "rated", "guid": MOVIE, "rating": 7, "at": at(T1 + 30)}
    response = await client.post("/v1/me/actions", json={"actions": [action]}, headers=world.ann)
    assert response.status == 200
    await running.drain("mb-1", world.server)
    await running.poll()
    assert [e["type"] for e in running.sent] == ["watched", "unwatched"]
    found = await state(client, world.ann, MOVIE)
    assert (found["watched"], found["rating"]) == (False, 7)
