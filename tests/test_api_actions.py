"""POST /v1/me/actions: per-item results in order, every rejection code, idempotency."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.api import (
    EPISODE,
    MOVIE,
    MOVIE_2,
    OPERATOR,
    SEASON,
    SHOW,
    create_account,
    post_actions,
    settle,
)


def at(minutes_ago: float = 0) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes_ago)).isoformat()


async def test_every_action_type_and_title_kind_is_recorded(client: TestClient[Any, Any]) -> None:
    ann = await create_account(client, "ann")
    results = await post_actions(
        client,
        ann,
        {"type": "watched", "guid": MOVIE, "at": at(10)},
        {"type": "unwatched", "guid": SHOW, "at": at(9)},
        {"type": "rated", "guid": SEASON, "at": at(8), "rating": 10},
        {"type": "unrated", "guid": EPISODE, "at": at(7)},
        {"type": "watched", "guid": EPISODE},
    )
    assert [r["status"] for r in results] == ["recorded"] * 5
    positions = [r["position"] for r in results]
    assert positions == sorted(positions)
    assert len(set(positions)) == 5


@pytest.mark.parametrize(
    ("action", "code"),
    [
        ({"type": "watched", "guid": "plex://artist/5d07bbfc403c6402904a5ec9"}, "music_not_synced"),
        (
            {"type": "rated", "guid": "plex://album/5d07c78d403c640290a2b3b5", "rating": 8},
            "music_not_synced",
        ),
        ({"type": "watched", "guid": "plex://track/5d07cdd6403c640290f7d0a2"}, "music_not_synced"),
        (
            {"type": "watched", "guid": "com.plexapp.agents.imdb://tt0080684?lang=en"},
            "unsupported_guid",
        ),
        ({"type": "watched", "guid": "local://12345"}, "unsupported_guid"),
        ({"type": "watched", "guid": "plex://movie/not-hex"}, "unsupported_guid"),
        (
            {"type": "watched", "guid": "plex://movie/5d776825880197001ec967c6/extra"},
            "unsupported_guid",
        ),
        ({"type": "watched", "guid": "plex://clip/5d776825880197001ec967c6"}, "unsupported_guid"),
        ({"type": "rated", "guid": MOVIE}, "invalid_rating"),
        ({"type": "rated", "guid": MOVIE, "rating": 0}, "invalid_rating"),
        ({"type": "rated", "guid": MOVIE, "rating": 11}, "invalid_rating"),
        ({"type": "rated", "guid": MOVIE, "rating": -3}, "invalid_rating"),
        ({"type": "watched", "guid": MOVIE, "rating": 5}, "invalid_rating"),
        ({"type": "unrated", "guid": MOVIE, "rating": 5}, "invalid_rating"),
        ({"type": "watched", "guid": MOVIE, "at": at(-10)}, "at_in_future"),
        # When several apply, the first in the contract's order.
        (
            {"type": "rated", "guid": "plex://track/x", "rating": 99, "at": at(-60)},
            "music_not_synced",
        ),
        ({"type": "rated", "guid": "local://1", "rating": 99}, "unsupported_guid"),
        ({"type": "rated", "guid": MOVIE, "rating": 99, "at": at(-60)}, "invalid_rating"),
        # Every id of the action is checked, and they must name one kind of title.
        ({"type": "watched", "guid": MOVIE, "ids": ["plex://album/x"]}, "music_not_synced"),
        ({"type": "watched", "guid": MOVIE, "ids": ["imdb://movie/0111"]}, "unsupported_guid"),
        ({"type": "watched", "guid": MOVIE, "ids": [EPISODE]}, "conflicting_ids"),
        (
            {"type": "watched", "guid": "imdb://movie/tt1", "ids": ["tvdb://show/1/s1e1"]},
            "conflicting_ids",
        ),
        (
            {"type": "rated", "guid": MOVIE, "ids": ["tmdb://show/1"], "rating": 99},
            "conflicting_ids",
        ),
    ],
)
async def test_rejections(client: TestClient[Any, Any], action: dict[str, Any], code: str) -> None:
    ann = await create_account(client, "ann")
    [result] = await post_actions(client, ann, action)
    assert result == {"status": "rejected", "code": code}


async def test_titles_named_by_any_id_form_are_recorded_with_their_ids(
    client: TestClient[Any, Any],
) -> None:
    ann = await create_account(client, "ann")
    results = await post_actions(
        client,
        ann,
        {"type": "watched", "guid": "imdb://movie/tt0111161", "ids": ["tmdb://movie/278"]},
        {"type": "watched", "guid": "tvdb://show/81189/s1e1", "ids": ["tvdb://episode/349232"]},
        {"type": "rated", "guid": "tmdb://show/1396", "rating": 9},
        # The guid again in ids, a repeat, and Plex hex in capitals: each id kept once.
        {
            "type": "watched",
            "guid": MOVIE.upper().replace("PLEX://MOVIE", "plex://movie"),
            "ids": [MOVIE, "imdb://movie/tt0080684", "imdb://movie/tt0080684"],
        },
    )
    assert [r["status"] for r in results] == ["recorded"] * 4
    events = (await (await client.get("/v1/admin/events", headers=OPERATOR)).json())["items"]
    assert [e["data"].get("guid") for e in events[1:]] == [
        "imdb://movie/tt0111161",
        "tvdb://show/81189/s1e1",
        "tmdb://show/1396",
        MOVIE,
    ]
    # The action's other ids, in shown order; none stored when there are none.
    assert [e["data"].get("ids") for e in events[1:]] == [
        ["tmdb://movie/278"],
        ["tvdb://episode/349232"],
        None,
        ["imdb://movie/tt0080684"],
    ]
    await settle(client)
    state = (await (await client.get("/v1/me/state", headers=ann)).json())["items"]
    # Each title under the first of its ids in shown order, listing them all.
    assert sorted((item["guid"], item["ids"]) for item in state) == [
        ("imdb://movie/tt0111161", ["imdb://movie/tt0111161", "tmdb://movie/278"]),
        (MOVIE, [MOVIE, "imdb://movie/tt0080684"]),
        ("tmdb://show/1396", ["tmdb://show/1396"]),
        ("tvdb://episode/349232", ["tvdb://episode/349232", "tvdb://show/81189/s1e1"]),
    ]
    profile = await (await client.get("/v1/me", headers=ann)).json()
    assert profile["counts"] == {"movies": 2, "episodes": 1}


async def test_more_than_eight_ids_is_422(client: TestClient[Any, Any]) -> None:
    ann = await create_account(client, "ann")
    ids = [f"tmdb://movie/{n}" for n in range(1, 10)]
    response = await client.post(
        "/v1/me/actions",
        json={"actions": [{"type": "watched", "guid": "tmdb://movie/550", "ids": ids}]},
        headers=ann,
    )
    body = await response.json()
    assert response.status == 422, body
    assert body["code"] == "invalid_request"
    assert body["errors"][0]["field"].endswith("ids")
    eight = await post_actions(
        client, ann, {"type": "watched", "guid": "tmdb://movie/550", "ids": ids[:8]}
    )
    assert eight[0]["status"] == "recorded"


async def test_up_to_five_minutes_ahead_is_accepted(client: TestClient[Any, Any]) -> None:
    ann = await create_account(client, "ann")
    [result] = await post_actions(client, ann, {"type": "watched", "guid": MOVIE, "at": at(-4)})
    assert result["status"] == "recorded"


async def test_rejected_items_store_nothing_and_leave_the_rest(
    client: TestClient[Any, Any],
) -> None:
    ann = await create_account(client, "ann")
    results = await post_actions(
        client,
        ann,
        {"type": "watched", "guid": MOVIE},
        {"type": "watched", "guid": "plex://track/1"},
        {"type": "rated", "guid": MOVIE_2, "rating": 7},
    )
    assert [r["status"] for r in results] == ["recorded", "rejected", "recorded"]
    events = (await (await client.get("/v1/admin/events", headers=OPERATOR)).json())["items"]
    assert [e["type"] for e in events] == ["account_created", "watched", "rated"]


async def test_a_client_id_makes_a_retry_a_duplicate(client: TestClient[Any, Any]) -> None:
    ann = await create_account(client, "ann")
    action = {"type": "watched", "guid": MOVIE, "id": str(uuid.uuid4())}
    [first] = await post_actions(client, ann, action)
    # The same id is a duplicate even if the rest differs (a retry after a clock change).
    [again] = await post_actions(client, ann, {**action, "at": at(3)})
    assert first["status"] == "recorded"
    assert again == {"status": "duplicate"}


async def test_without_a_client_id_the_natural_key_decides(client: TestClient[Any, Any]) -> None:
    ann = await create_account(client, "ann")
    when = "2026-03-01T20:00:00+01:00"
    [first] = await post_actions(
        client, ann, {"type": "rated", "guid": MOVIE, "at": when, "rating": 8}
    )
    [same_in_utc] = await post_actions(
        client, ann, {"type": "rated", "guid": MOVIE, "at": "2026-03-01T19:00:00Z", "rating": 8}
    )
    [other_rating] = await post_actions(
        client, ann, {"type": "rated", "guid": MOVIE, "at": when, "rating": 9}
    )
    [other_type] = await post_actions(client, ann, {"type": "watched", "guid": MOVIE, "at": when})
    assert first["status"] == "recorded"
    assert same_in_utc == {"status": "duplicate"}
    assert other_rating["status"] == "recorded"
    assert other_type["status"] == "recorded"


async def test_the_natural_key_takes_the_time_to_the_whole_second(
    client: TestClient[Any, Any],
) -> None:
    """A server that keeps whole seconds (Emby) echoes a change back with its time cut: the
    same action (rule 5)."""
    ann = await create_account(client, "ann")
    [first] = await post_actions(
        client, ann, {"type": "watched", "guid": MOVIE, "at": "2026-03-01T19:00:00.734512Z"}
    )
    [cut] = await post_actions(
        client, ann, {"type": "watched", "guid": MOVIE, "at": "2026-03-01T19:00:00Z"}
    )
    [other_fraction] = await post_actions(
        client, ann, {"type": "watched", "guid": MOVIE, "at": "2026-03-01T20:00:00.999+01:00"}
    )
    [next_second] = await post_actions(
        client, ann, {"type": "watched", "guid": MOVIE, "at": "2026-03-01T19:00:01Z"}
    )
    assert first["status"] == "recorded"
    assert cut == other_fraction == {"status": "duplicate"}
    assert next_second["status"] == "recorded"
    # The recorded time keeps its fraction: only the duplicate check is to the second.
    [state] = (await (await client.get("/v1/me/state", headers=ann)).json())["items"]
    assert state["watched_at"] == "2026-03-01T19:00:01Z"
    history = (await (await client.get("/v1/me/history", headers=ann)).json())["items"]
    assert [h["at"] for h in history] == ["2026-03-01T19:00:01Z", "2026-03-01T19:00:00.734512Z"]


async def test_the_same_action_twice_in_one_request(client: TestClient[Any, Any]) -> None:
    ann = await create_account(client, "ann")
    action = {"type": "watched", "guid": MOVIE, "at": at(1)}
    results = await post_actions(client, ann, action, action)
    assert [r["status"] for r in results] == ["recorded", "duplicate"]


async def test_one_accounts_ids_are_not_anothers(client: TestClient[Any, Any]) -> None:
    ann = await create_account(client, "ann")
    bob = await create_account(client, "bob")
    action = {"type": "watched", "guid": MOVIE, "at": at(1), "id": str(uuid.uuid4())}
    [for_ann] = await post_actions(client, ann, action)
    [for_bob] = await post_actions(client, bob, action)
    assert for_ann["status"] == for_bob["status"] == "recorded"


async def test_actions_are_recorded_with_sync_off_and_on(client: TestClient[Any, Any]) -> None:
    ann = await create_account(client, "ann")
    [off] = await post_actions(client, ann, {"type": "watched", "guid": MOVIE})
    await client.patch("/v1/me", json={"sync_enabled": True}, headers=ann)
    [on] = await post_actions(client, ann, {"type": "watched", "guid": MOVIE_2})
    kid = await create_account(client, "kid", kind="managed")
    [managed] = await post_actions(client, kid, {"type": "watched", "guid": MOVIE})
    assert off["status"] == on["status"] == managed["status"] == "recorded"


async def test_the_log_records_no_source_and_normalises_time(client: TestClient[Any, Any]) -> None:
    ann = await create_account(client, "ann")
    await post_actions(
        client,
        ann,
        {
            "type": "rated",
            "guid": MOVIE.upper().replace("PLEX://MOVIE", "plex://movie"),
            "at": "2026-03-01T20:00:00.123456+01:00",
            "rating": 8,
        },
    )
    events = (await (await client.get("/v1/admin/events", headers=OPERATOR)).json())["items"]
    assert events[-1]["data"] == {"guid": MOVIE, "at": "2026-03-01T19:00:00.123456Z", "rating": 8}
    await settle(client)
    state = await (await client.get(f"/v1/me/state/{MOVIE}", headers=ann)).json()
    assert state["rated_at"] == "2026-03-01T19:00:00.123456Z"


async def test_an_omitted_at_means_now(client: TestClient[Any, Any]) -> None:
    ann = await create_account(client, "ann")
    before = datetime.now(UTC)
    await post_actions(client, ann, {"type": "watched", "guid": MOVIE})
    after = datetime.now(UTC)
    await settle(client)
    state = await (await client.get(f"/v1/me/state/{MOVIE}", headers=ann)).json()
    assert before <= datetime.fromisoformat(state["watched_at"]) <= after
