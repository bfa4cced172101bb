"""The quirks connectors.md lists, each against its fake server: Jellyfin's dateless marks,
progress saves, short stops and replaced files; Emby's test event and short stops; Plex's legacy
agent GUIDs; a whole season marked at once going as one request."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from services.connectors.fakes.mediabrowser import emby_body
from services.connectors.fakes.plex import FakePlex
from tests.test_connector_mediabrowser import MOVIE, World, mediabrowser_world, state
from tests.test_connector_plex import OWNER_TOKEN, history, library, setup

__all__ = ["setup"]  # the Plex world, as a fixture here too


@pytest.fixture
async def jellyfin(client: TestClient[Any, Any], tmp_path: Path) -> AsyncIterator[World]:
    async with mediabrowser_world(client, tmp_path, "jellyfin", sender_window=0.5) as made:
        yield made


@pytest.fixture(params=["form", "json"])
async def emby(
    request: pytest.FixtureRequest, client: TestClient[Any, Any], tmp_path: Path
) -> AsyncIterator[World]:
    async with mediabrowser_world(client, tmp_path, "emby", str(request.param)) as made:
        yield made


@pytest.fixture
async def plex() -> AsyncIterator[FakePlex]:
    fake = FakePlex(OWNER_TOKEN)
    library(fake)
    fake.add_movie("103", "com.plexapp.agents.imdb://tt0068646?lang=en", [])
    fake.add_movie("104", "com.plexapp.agents.themoviedb://238?lang=en", [])
    fake.add_movie("105", "com.plexapp.agents.none://f1e2d3?lang=xn", [])
    yield fake
    await fake.close()


async def post_webhook(world: World, body: bytes, content_type: str) -> int:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            world.running.webhook_url, data=body, headers={"Content-Type": content_type}
        ) as response,
    ):
        await response.read()
        return response.status


def jellyfin_hook(world: World, item: str, **fields: str) -> bytes:
    """A Generic-destination template rendered for ``item`` (every value a string)."""
    rendered = {
        "NotificationType": "UserDataSaved",
        "UtcTimestamp": "2026-01-01T12:00:00.0000000Z",
        "UserId": world.user,
        "NotificationUsername": "ann",
        "ItemId": item,
        "ItemType": world.fake.items[item].type,
        "SaveReason": "PlaybackProgress",
        "Played": "False",
        "PlayedToCompletion": "",
        **fields,
    }
    return json.dumps(rendered).encode()


async def test_jellyfin_marked_played_without_a_date_is_watched_with_no_time(
    client: TestClient[Any, Any], jellyfin: World
) -> None:
    jellyfin.fake.played_without_date = True
    await jellyfin.fake.mark_played(jellyfin.user, jellyfin.movie)
    await jellyfin.running.delivered()
    [event] = jellyfin.running.sent
    assert event["type"] == "watched"
    assert "at" not in event  # no time that is true: the service's "now"
    assert (await state(client, jellyfin.ann, MOVIE))["watched"] is True


async def test_jellyfin_progress_saves_and_short_stops_are_not_watch_events(
    jellyfin: World,
) -> None:
    movie = jellyfin.movie
    jellyfin.fake.watch(jellyfin.user, movie).position = 6_000_000_000
    progress = jellyfin_hook(jellyfin, movie)
    stopped = jellyfin_hook(
        jellyfin, movie, NotificationType="PlaybackStop", PlayedToCompletion="False"
    )
    for body in (progress, stopped):
        assert await post_webhook(jellyfin, body, "text/plain; charset=utf-8") == 200
    await jellyfin.running.poll()
    assert jellyfin.running.sent == []


async def test_jellyfin_a_replaced_file_looks_unplayed_and_is_not_an_unwatched(
    client: TestClient[Any, Any], jellyfin: World
) -> None:
    fake, running, movie = jellyfin.fake, jellyfin.running, jellyfin.movie
    await fake.mark_played(jellyfin.user, movie)
    await running.delivered()
    added = {"NotificationType": "ItemAdded", "ItemId": movie, "ItemType": "Movie"}
    assert await post_webhook(jellyfin, json.dumps(added).encode(), "text/plain") == 200
    watch = fake.watch(jellyfin.user, movie)  # "date added: use date scanned": all gone
    watch.plays, watch.last_played = 0, None
    replaced = jellyfin_hook(jellyfin, movie, SaveReason="TogglePlayed", Played="False")
    assert await post_webhook(jellyfin, replaced, "text/plain") == 200
    await running.poll()
    assert [e["type"] for e in running.sent] == ["watched"]
    assert (await state(client, jellyfin.ann, MOVIE))["watched"] is True


async def test_a_season_marked_at_once_goes_as_one_request(jellyfin: World) -> None:
    fake = jellyfin.fake
    series = next(i.id for i in fake.items.values() if i.type == "Series")
    episodes = [jellyfin.episode] + [fake.add_episode(series, 1, n, {}) for n in (2, 3, 4)]
    await jellyfin.running.poll()  # the new episodes are mapped (first sight: unplayed)
    batches = jellyfin.running.batches
    await asyncio.gather(*(fake.mark_played(jellyfin.user, e) for e in episodes))
    await jellyfin.running.delivered()
    assert len(jellyfin.running.sent) == 4
    assert jellyfin.running.batches == batches + 1


async def test_emby_test_event_is_answered_and_ignored(emby: World) -> None:
    test_event = json.dumps({"Event": "system.notificationtest", "Title": "Test Notification"})
    assert await post_webhook(emby, *emby_body(test_event, emby.fake.webhook_format)) == 200
    # Before 4.9.0.37 the test event has no data at all.
    assert await post_webhook(emby, b"", "application/x-www-form-urlencoded") == 200
    await emby.running.poll()
    assert emby.running.sent == []


async def test_emby_a_stop_short_of_the_end_is_not_a_watch(emby: World) -> None:
    item = emby.fake.item_json(None, emby.fake.items[emby.movie])
    stopped = {
        "Event": "playback.stop",
        "Date": "2026-01-01T12:00:00.0000000Z",
        "User": {"Name": "ann", "Id": emby.user},
        "Item": item,
        "PlaybackInfo": {"PlayedToCompletion": False, "PositionTicks": 6_000_000_000},
    }
    body = emby_body(json.dumps(stopped), emby.fake.webhook_format)
    assert await post_webhook(emby, *body) == 200
    await emby.running.poll()
    assert emby.running.sent == []


async def test_plex_legacy_agent_guids_become_external_ids(
    client: TestClient[Any, Any], plex: FakePlex, setup: Any
) -> None:
    running, ann = setup
    for key in ("103", "104", "105"):
        await plex.play_to_end("1", key)
    await running.delivered()
    sent = {e["guid"] for e in running.sent}
    assert sent == {"imdb://movie/tt0068646", "tmdb://movie/238"}  # none:// names nothing
    assert {h["guid"] for h in await history(client, ann)} == sent
