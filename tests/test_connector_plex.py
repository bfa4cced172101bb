"""The Plex connector end to end: a fake Plex server, the connector, a real watchledger."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from services.connectors.fakes.plex import FakePlex, post_plex_webhook
from tests.api import create_account, settle
from tests.connectors import WEBHOOK_SECRET, Running, running_connector, write_config
from tests.servers import register, sync

MOVIE = "plex://movie/5d776825880197001ec967c6"
SHOW = "plex://show/5d9c086c46115600200aa2fe"
EPISODE = "plex://episode/5d9c1276e9d5a1001f4f4d6d"
OWNER_TOKEN = "plex-owner-token"
T1 = 1_767_268_800  # 2026-01-01T12:00:00Z


def library(plex: FakePlex) -> None:
    plex.add_movie("101", MOVIE, ["imdb://tt0111161", "tmdb://278"])
    plex.add_show("200", SHOW, ["tvdb://81189", "imdb://tt0903747"])
    plex.add_episode("201", "200", 1, 1, EPISODE, ["tvdb://349232", "imdb://tt0959621"])
    plex.add_movie("102", "plex://movie/5d776825880197001ec967c8", [], edition="Director's Cut")
    plex.add_track("300")


@pytest.fixture
async def plex() -> AsyncIterator[FakePlex]:
    fake = FakePlex(OWNER_TOKEN)
    library(fake)
    yield fake
    await fake.close()


@pytest.fixture
async def setup(
    client: TestClient[Any, Any], plex: FakePlex, tmp_path: Path
) -> AsyncIterator[tuple[Running, dict[str, str]]]:
    """Ann owns a registered Plex server (sync on) whose owner account is hers."""
    ann = await create_account(client, "ann")
    server = await register(client, ann, "plex-1")
    await sync(client, ann, True)
    media_url = await plex.start(plex.app())
    config = write_config(
        tmp_path / "plex.toml",
        kind="plex",
        watchledger=str(client.make_url("")).rstrip("/"),
        server_id="plex-1",
        media_url=media_url,
        users=[("owner", "ann", None)],
    )
    env = {
        "WATCHLEDGER_SERVER_TOKEN": server["Authorization"].removeprefix("Bearer "),
        "MEDIA_TOKEN": OWNER_TOKEN,
        "CONNECTOR_WEBHOOK_SECRET": WEBHOOK_SECRET,
    }
    async with running_connector(client, config, env) as running:
        plex.webhook_url = running.webhook_url
        yield running, ann


async def state(client: TestClient[Any, Any], who: dict[str, str], guid: str) -> dict[str, Any]:
    response = await client.get(f"/v1/me/state/{guid}", headers=who)
    assert response.status in (200, 404), await response.text()
    return await response.json() if response.status == 200 else {}


async def history(client: TestClient[Any, Any], who: dict[str, str]) -> list[dict[str, Any]]:
    response = await client.get("/v1/me/history", headers=who)
    assert response.status == 200, await response.text()
    items: list[dict[str, Any]] = (await response.json())["items"]
    return items


def at(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


async def test_a_watch_to_the_end_is_recorded_with_plex_time_and_every_id(
    client: TestClient[Any, Any], plex: FakePlex, setup: tuple[Running, dict[str, str]]
) -> None:
    running, ann = setup
    await plex.play_to_end("1", "201", at=T1)
    await running.delivered()
    found = await state(client, ann, EPISODE)
    assert found["watched"] is True
    assert found["watched_at"] == at(T1)
    assert set(found["ids"]) >= {
        EPISODE,
        "imdb://episode/tt0959621",
        "tvdb://episode/349232",
        "tvdb://show/81189/s1e1",
        "plex://show/5d9c086c46115600200aa2fe/s1e1",
    }


async def test_manual_marks_send_no_webhook_and_the_poll_finds_them(
    client: TestClient[Any, Any], plex: FakePlex, setup: tuple[Running, dict[str, str]]
) -> None:
    running, ann = setup
    plex.clock = T1
    plex.mark_played("1", "101")
    await running.poll()
    assert (await state(client, ann, MOVIE))["watched_at"] == at(T1)
    plex.mark_unplayed("1", "101")
    await running.poll()
    assert (await state(client, ann, MOVIE))["watched"] is False
    assert [h["type"] for h in await history(client, ann)] == ["unwatched", "watched"]


@pytest.mark.parametrize("as_string", [False, True])
async def test_ratings_round_half_up_and_clearing_unrates(
    client: TestClient[Any, Any],
    plex: FakePlex,
    setup: tuple[Running, dict[str, str]],
    as_string: bool,
) -> None:
    running, ann = setup
    plex.rating_as_string = as_string
    await plex.rate("1", "101", 7.5)
    await running.delivered()
    assert (await state(client, ann, MOVIE))["rating"] == 8
    await plex.rate("1", "101", None)
    await running.delivered()
    assert (await state(client, ann, MOVIE)).get("rating") is None


async def test_playback_events_and_music_are_not_watch_events(
    client: TestClient[Any, Any], plex: FakePlex, setup: tuple[Running, dict[str, str]]
) -> None:
    running, ann = setup
    for event in ("media.play", "media.pause", "media.resume", "media.stop"):
        await plex.playback("1", "101", event)
    await plex.play_to_end("1", "300")
    await running.delivered()
    assert running.sent == []
    assert await history(client, ann) == []


async def test_an_edition_is_sent_and_not_synced(
    client: TestClient[Any, Any], plex: FakePlex, setup: tuple[Running, dict[str, str]]
) -> None:
    running, ann = setup
    await plex.play_to_end("1", "102")
    await running.delivered()
    assert [e.get("edition") for e in running.sent] == ["Director's Cut"]
    assert await history(client, ann) == []


async def test_changes_through_the_api_reach_plex_once_without_echo(
    client: TestClient[Any, Any], plex: FakePlex, setup: tuple[Running, dict[str, str]]
) -> None:
    running, ann = setup
    actions = [
        {"type": "watched", "guid": "imdb://movie/tt0111161", "at": at(T1)},
        {"type": "rated", "guid": "tmdb://movie/278", "rating": 9, "at": at(T1)},
    ]
    response = await client.post("/v1/me/actions", json={"actions": actions}, headers=ann)
    assert response.status == 200, await response.text()
    await plex.wait_writes(lambda w: {x.action for x in w} == {"scrobble", "rate"})
    assert plex.data[("1", "101")].plays == 1
    assert plex.data[("1", "101")].rating == 9
    assert plex.data[("1", "101")].rated_at == T1  # setRating's ratedAt: the rating's own time
    await running.poll()  # the scrobble stamped "now": not a new viewing
    assert len(await history(client, ann)) == 1
    assert running.sent == []
    response = await client.post(
        "/v1/me/actions", json={"actions": [{"type": "unwatched", "guid": MOVIE}]}, headers=ann
    )
    assert response.status == 200
    await plex.wait_writes(lambda w: w[-1].action == "unscrobble")
    await running.poll()
    assert running.sent == []
    assert len(plex.writes) == 3


async def test_webhooks_need_the_secret_and_a_plex_body(
    plex: FakePlex, setup: tuple[Running, dict[str, str]]
) -> None:
    running, _ = setup
    payload = plex.webhook_payload("media.scrobble", "1", "101")
    wrong = running.webhook_url.replace(WEBHOOK_SECRET, "nope")
    assert await post_plex_webhook(wrong, payload) == 401
    async with aiohttp.ClientSession() as http:
        for body, ctype in (
            (b"{}", "application/json"),
            (b"--x\r\n\r\n", "multipart/form-data; boundary=x"),
            (b"", "multipart/form-data"),
        ):
            async with http.post(
                running.webhook_url, data=body, headers={"Content-Type": ctype}
            ) as response:
                assert response.status == 400, (body, await response.text())


PRIVATE = ("PLEXSERVERNAME", "PLEXPLAYERNAME", "PLEXLIBRARYNAME", "PLEXPATHNAME", "203.0.113.77")
ALLOWED = {"account", "type", "guid", "ids", "at", "rating", "edition", "baseline"}


async def test_nothing_of_where_it_happened_leaves_the_connector(
    plex: FakePlex, setup: tuple[Running, dict[str, str]]
) -> None:
    running, _ = setup
    await plex.play_to_end("1", "101")
    await plex.rate("1", "201", 6)
    await running.delivered()
    assert len(running.sent) == 2
    for event in running.sent:
        assert set(event) <= ALLOWED
        assert not any(marker in repr(event) for marker in PRIVATE)


async def test_turning_sync_on_uploads_one_baseline_record_per_title(
    client: TestClient[Any, Any], plex: FakePlex, tmp_path: Path
) -> None:
    """Rule 7: a movie watched twice is one record, at its most recent viewing; a rated
    episode its rating; nothing for what was never watched or rated."""
    ann = await create_account(client, "ann")
    server = await register(client, ann, "plex-1")
    twice = plex.watch("1", "101")
    twice.plays, twice.last_played = 2, T1 + 3600
    rated = plex.watch("1", "201")
    rated.rating, rated.rated_at = 8.0, T1
    config = write_config(
        tmp_path / "plex.toml",
        kind="plex",
        watchledger=str(client.make_url("")).rstrip("/"),
        server_id="plex-1",
        media_url=await plex.start(plex.app()),
        users=[("owner", "ann", None)],
    )
    env = {
        "WATCHLEDGER_SERVER_TOKEN": server["Authorization"].removeprefix("Bearer "),
        "MEDIA_TOKEN": OWNER_TOKEN,
        "CONNECTOR_WEBHOOK_SECRET": WEBHOOK_SECRET,
    }
    async with running_connector(client, config, env) as running:
        assert running.sent == []  # sync is off: nothing of Ann's goes
        await sync(client, ann, True)
        await settle(client)
        await running.drain("plex-1", server)
        await running.delivered()
        assert sorted(
            (e["type"], e["guid"], e.get("at"), e.get("rating")) for e in running.sent
        ) == [
            ("rated", EPISODE, at(T1), 8),
            ("watched", MOVIE, at(T1 + 3600), None),
        ]
        assert all(e["baseline"] is True for e in running.sent)
    assert [(h["type"], h["at"]) for h in await history(client, ann)] == [
        ("watched", at(T1 + 3600))
    ]
    assert (await state(client, ann, EPISODE))["rating"] == 8
