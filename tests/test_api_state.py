"""Current watch state and history over projections: last-writer-wins, filters, pagination,
profile counts, and order-independence (hypothesis)."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.api import (
    EPISODE,
    EPISODE_2,
    MOVIE,
    MOVIE_2,
    OPERATOR,
    SEASON,
    SHOW,
    create_account,
    post_actions,
    settle,
    t,
)
from tests.test_api_conventions import problem


async def state_of(
    client: TestClient[Any, Any], headers: dict[str, str], guid: str
) -> dict[str, Any]:
    response = await client.get(f"/v1/me/state/{quote(guid, safe='')}", headers=headers)
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def all_state(
    client: TestClient[Any, Any], headers: dict[str, str], **query: str
) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {**query, **({"cursor": cursor} if cursor else {})}
        page = await (await client.get("/v1/me/state", params=params, headers=headers)).json()
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


async def in_two_orders(
    client: TestClient[Any, Any], actions: list[dict[str, Any]], seed: int
) -> tuple[dict[str, str], dict[str, str]]:
    """Two new accounts given the same actions: one in order, in one request; the other
    shuffled, a few at a time, some concurrently. Their headers, once the projections settled."""
    rng = random.Random(seed)
    suffix = uuid.uuid4().hex[:12]  # examples share one server and database
    first = await create_account(client, f"a{suffix}")
    second = await create_account(client, f"b{suffix}")
    shuffled = actions[:]
    rng.shuffle(shuffled)
    await post_actions(client, first, *actions)
    chunks = [shuffled[i : i + 3] for i in range(0, len(shuffled), 3)]
    await asyncio.gather(*(post_actions(client, second, *chunk) for chunk in chunks))
    await settle(client)
    return first, second


async def test_the_latest_at_wins_and_late_older_events_are_only_history(
    client: TestClient[Any, Any],
) -> None:
    ann = await create_account(client, "ann")
    await post_actions(client, ann, {"type": "watched", "guid": MOVIE, "at": t(2)})
    await post_actions(client, ann, {"type": "unwatched", "guid": MOVIE, "at": t(1)})  # late, older
    await settle(client)

    state = await state_of(client, ann, MOVIE)
    assert state["watched"] is True
    assert state["watched_at"] == t(2)
    history = (await (await client.get("/v1/me/history", headers=ann)).json())["items"]
    assert [(h["type"], h["at"]) for h in history] == [("watched", t(2)), ("unwatched", t(1))]

    await post_actions(client, ann, {"type": "unwatched", "guid": MOVIE, "at": t(3)})
    await settle(client)
    state = await state_of(client, ann, MOVIE)
    assert (state["watched"], state["watched_at"]) == (False, t(3))


async def test_on_a_tie_the_later_recorded_wins(client: TestClient[Any, Any]) -> None:
    ann = await create_account(client, "ann")
    await post_actions(client, ann, {"type": "watched", "guid": MOVIE, "at": t(1)})
    await post_actions(client, ann, {"type": "unwatched", "guid": MOVIE, "at": t(1)})
    await post_actions(client, ann, {"type": "rated", "guid": MOVIE, "at": t(1), "rating": 4})
    await post_actions(client, ann, {"type": "rated", "guid": MOVIE, "at": t(1), "rating": 6})
    await settle(client)
    state = await state_of(client, ann, MOVIE)
    assert (state["watched"], state["rating"]) == (False, 6)


async def test_ratings_follow_last_writer_wins_separately_from_watching(
    client: TestClient[Any, Any],
) -> None:
    ann = await create_account(client, "ann")
    await post_actions(
        client,
        ann,
        {"type": "rated", "guid": MOVIE, "at": t(5), "rating": 9},
        {"type": "watched", "guid": MOVIE, "at": t(1)},
        {"type": "rated", "guid": MOVIE, "at": t(4), "rating": 2},  # older: loses
    )
    await settle(client)
    state = await state_of(client, ann, MOVIE)
    assert state == {
        "guid": MOVIE,
        "ids": [MOVIE],
        "watched": True,
        "watched_at": t(1),
        "rating": 9,
        "rated_at": t(5),
        "updated_at": state["updated_at"],
    }
    assert state["updated_at"].endswith("Z")

    await post_actions(client, ann, {"type": "unrated", "guid": MOVIE, "at": t(6)})
    await post_actions(
        client, ann, {"type": "rated", "guid": MOVIE, "at": t(5.5), "rating": 3}
    )  # late
    await settle(client)
    state = await state_of(client, ann, MOVIE)
    assert (state["rating"], state["rated_at"], state["watched"]) == (None, t(6), True)


async def test_titles_with_neither_a_watch_record_nor_a_rating_are_absent(
    client: TestClient[Any, Any],
) -> None:
    ann = await create_account(client, "ann")
    await post_actions(
        client,
        ann,
        {"type": "unrated", "guid": MOVIE, "at": t(1)},
        {"type": "rated", "guid": MOVIE_2, "at": t(1), "rating": 5},
        {"type": "unrated", "guid": MOVIE_2, "at": t(2)},
        {"type": "unwatched", "guid": SHOW, "at": t(1)},
        {"type": "rated", "guid": SEASON, "at": t(1), "rating": 5},
    )
    await settle(client)
    await problem(
        await client.get(f"/v1/me/state/{quote(MOVIE, safe='')}", headers=ann), 404, "not_found"
    )
    await problem(
        await client.get(f"/v1/me/state/{quote(MOVIE_2, safe='')}", headers=ann), 404, "not_found"
    )
    items = await all_state(client, ann)
    assert [(i["guid"], i["watched"], i["rating"]) for i in items] == sorted(
        [(SHOW, False, None), (SEASON, False, 5)]
    )
    assert (await state_of(client, ann, SEASON))["watched_at"] is None


async def test_the_guid_may_be_given_plain_in_the_path(client: TestClient[Any, Any]) -> None:
    ann = await create_account(client, "ann")
    await post_actions(client, ann, {"type": "watched", "guid": MOVIE, "at": t(1)})
    await settle(client)
    assert (await client.get(f"/v1/me/state/{MOVIE}", headers=ann)).status == 200
    await problem(
        await client.get("/v1/me/state/plex%3A%2F%2Fmovie%2Fnope", headers=ann), 404, "not_found"
    )


async def test_state_filters(client: TestClient[Any, Any]) -> None:
    ann = await create_account(client, "ann")
    await post_actions(
        client,
        ann,
        {"type": "watched", "guid": MOVIE, "at": t(1)},
        {"type": "unwatched", "guid": MOVIE_2, "at": t(1)},
        {"type": "watched", "guid": EPISODE, "at": t(1)},
        {"type": "rated", "guid": SHOW, "at": t(1), "rating": 7},
    )
    await settle(client)
    marker = datetime.now(UTC).isoformat()
    await post_actions(client, ann, {"type": "unwatched", "guid": EPISODE, "at": t(2)})
    await settle(client)

    def guids(items: list[dict[str, Any]]) -> list[str]:
        return [i["guid"] for i in items]

    assert guids(await all_state(client, ann, watched="true")) == [MOVIE]
    assert guids(await all_state(client, ann, watched="false")) == sorted([MOVIE_2, EPISODE, SHOW])
    assert guids(await all_state(client, ann, kind="movie")) == sorted([MOVIE, MOVIE_2])
    assert guids(await all_state(client, ann, kind="episode", watched="false")) == [EPISODE]
    assert guids(await all_state(client, ann, updated_after=marker)) == [EPISODE]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"watched": "maybe"}, "watched"),
        ({"kind": "album"}, "kind"),
        ({"updated_after": "last week"}, "updated_after"),
        ({"cursor": "!!!"}, "cursor"),
        ({"cursor": "eyJ4IjoxfQ"}, "cursor"),
    ],
)
async def test_bad_state_queries_are_422(
    client: TestClient[Any, Any], query: dict[str, str], field: str
) -> None:
    ann = await create_account(client, "ann")
    detail = await problem(
        await client.get("/v1/me/state", params=query, headers=ann), 422, "invalid_request"
    )
    assert detail["errors"][0]["field"] == field


async def test_state_pages_never_repeat_or_drop_while_actions_arrive(
    client: TestClient[Any, Any],
) -> None:
    ann = await create_account(client, "ann")
    guids = [f"plex://movie/{i:024x}" for i in range(60)]
    await post_actions(client, ann, *({"type": "watched", "guid": g, "at": t(1)} for g in guids))
    await settle(client)

    seen: list[str] = []
    cursor = None
    rng = random.Random(7)
    while True:
        params = {"limit": "7", **({"cursor": cursor} if cursor else {})}
        page = await (await client.get("/v1/me/state", params=params, headers=ann)).json()
        seen += [i["guid"] for i in page["items"]]
        # Meanwhile: existing titles change and new ones appear.
        await post_actions(
            client,
            ann,
            {"type": "unwatched", "guid": rng.choice(guids), "at": t(2 + len(seen))},
            {"type": "watched", "guid": f"plex://episode/{len(seen):024x}", "at": t(2)},
        )
        await settle(client)
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen))
    assert set(guids) <= set(seen)


async def test_history_is_newest_first_filterable_and_paged(client: TestClient[Any, Any]) -> None:
    ann = await create_account(client, "ann")
    await post_actions(
        client,
        ann,
        {"type": "watched", "guid": MOVIE, "at": t(1)},
        {"type": "rated", "guid": MOVIE, "at": t(2), "rating": 7},  # not history
        {"type": "unwatched", "guid": MOVIE, "at": t(3)},
        {"type": "watched", "guid": EPISODE, "at": t(2)},
        {"type": "watched", "guid": MOVIE, "at": t(0)},  # late
    )
    await settle(client)

    everything = (await (await client.get("/v1/me/history", headers=ann)).json())["items"]
    assert [(h["guid"], h["type"], h["at"]) for h in everything] == [
        (MOVIE, "unwatched", t(3)),
        (EPISODE, "watched", t(2)),
        (MOVIE, "watched", t(1)),
        (MOVIE, "watched", t(0)),
    ]
    assert all(len(h["id"]) == 36 for h in everything)

    movie = (
        await (await client.get("/v1/me/history", params={"guid": MOVIE}, headers=ann)).json()
    )["items"]
    assert [h["at"] for h in movie] == [t(3), t(1), t(0)]

    paged: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {"limit": "1", **({"cursor": cursor} if cursor else {})}
        page = await (await client.get("/v1/me/history", params=params, headers=ann)).json()
        paged += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert paged == everything


async def test_profile_counts_are_distinct_watched_movies_and_episodes(
    client: TestClient[Any, Any],
) -> None:
    ann = await create_account(client, "ann")
    await post_actions(
        client,
        ann,
        {"type": "watched", "guid": MOVIE, "at": t(1)},
        {"type": "watched", "guid": MOVIE, "at": t(2)},  # again: still one movie
        {"type": "unwatched", "guid": MOVIE, "at": t(3)},  # history keeps the watched records
        {"type": "unwatched", "guid": MOVIE_2, "at": t(1)},  # never watched
        {"type": "watched", "guid": EPISODE, "at": t(1)},
        {"type": "watched", "guid": EPISODE_2, "at": t(1)},
        {"type": "watched", "guid": SHOW, "at": t(1)},
        {"type": "watched", "guid": SEASON, "at": t(1)},
        {"type": "rated", "guid": "plex://movie/" + "a" * 24, "at": t(1), "rating": 3},
    )
    await settle(client)
    me = await (await client.get("/v1/me", headers=ann)).json()
    assert me["counts"] == {"movies": 1, "episodes": 2}


async def test_admin_events_pages_through_the_log(client: TestClient[Any, Any]) -> None:
    ann = await create_account(client, "ann")
    await post_actions(
        client, ann, *({"type": "watched", "guid": MOVIE, "at": t(i)} for i in range(5))
    )

    first = await (
        await client.get("/v1/admin/events", params={"limit": "4"}, headers=OPERATOR)
    ).json()
    assert [e["position"] for e in first["items"]] == sorted(e["position"] for e in first["items"])
    rest = await (
        await client.get(
            "/v1/admin/events", params={"cursor": first["next_cursor"]}, headers=OPERATOR
        )
    ).json()
    assert rest["next_cursor"] is None
    everything = first["items"] + rest["items"]
    assert len(everything) == 6
    assert everything[1] == {
        "position": everything[1]["position"],
        "stream": "watch-ann",
        "type": "watched",
        "data": {"guid": MOVIE, "at": t(0)},
        "recorded_at": everything[1]["recorded_at"],
    }
    after = await (
        await client.get(
            "/v1/admin/events", params={"after": str(everything[4]["position"])}, headers=OPERATOR
        )
    ).json()
    assert after["items"] == everything[5:]
    await problem(
        await client.get("/v1/admin/events", params={"after": "-1"}, headers=OPERATOR),
        422,
        "invalid_request",
    )
    await problem(
        await client.get("/v1/admin/events", params={"cursor": "x"}, headers=OPERATOR),
        422,
        "invalid_request",
    )


async def test_admin_projections_report_position_head_and_lag(client: TestClient[Any, Any]) -> None:
    ann = await create_account(client, "ann")
    await post_actions(client, ann, {"type": "watched", "guid": MOVIE, "at": t(1)})
    await settle(client)
    body = await (await client.get("/v1/admin/projections", headers=OPERATOR)).json()
    head = max(
        e["position"]
        for e in (await (await client.get("/v1/admin/events", headers=OPERATOR)).json())["items"]
    )
    assert body == {
        "items": [
            {"name": "watch_state", "position": head, "head": head, "lag": 0, "dead_letters": 0},
            {"name": "watch_history", "position": head, "head": head, "lag": 0, "dead_letters": 0},
            {"name": "friends", "position": head, "head": head, "lag": 0, "dead_letters": 0},
            {"name": "activity", "position": head, "head": head, "lag": 0, "dead_letters": 0},
        ]
    }


# -- order independence -----------------------------------------------------------------------

GUIDS = [MOVIE, MOVIE_2, EPISODE]
actions_strategy = st.lists(
    st.tuples(
        st.sampled_from(["watched", "unwatched", "rated", "unrated"]),
        st.sampled_from(GUIDS),
        st.integers(min_value=1, max_value=10),
    ),
    min_size=1,
    max_size=25,
).map(
    # Each action gets its own time: with equal times the later *recorded* wins by design, so
    # only distinct times make the final state independent of arrival order.
    lambda items: [
        {"type": kind, "guid": guid, "at": t(i), **({"rating": rating} if kind == "rated" else {})}
        for i, (kind, guid, rating) in enumerate(items)
    ]
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(actions=actions_strategy, seed=st.integers(0, 2**32 - 1))
async def test_any_order_of_the_same_actions_gives_the_same_state(
    client: TestClient[Any, Any], actions: list[dict[str, Any]], seed: int
) -> None:
    first, second = await in_two_orders(client, actions, seed)

    def comparable(items: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return [
            (i["guid"], i["watched"], i["watched_at"], i["rating"], i["rated_at"]) for i in items
        ]

    assert comparable(await all_state(client, first)) == comparable(await all_state(client, second))
    history_a = (await (await client.get("/v1/me/history", headers=first)).json())["items"]
    history_b = (await (await client.get("/v1/me/history", headers=second)).json())["items"]
    assert [(h["guid"], h["type"], h["at"]) for h in history_a] == [
        (h["guid"], h["type"], h["at"]) for h in history_b
    ]


async def test_pages_hold_a_hundred_items_unless_told_otherwise(
    client: TestClient[Any, Any],
) -> None:
    ann = await create_account(client, "ann")
    await post_actions(
        client,
        ann,
        *({"type": "watched", "guid": f"plex://movie/{i:024x}", "at": t(i)} for i in range(101)),
    )
    await settle(client)
    for path in ("/v1/me/state", "/v1/me/history"):
        first = await (await client.get(path, headers=ann)).json()
        assert len(first["items"]) == 100
        assert first["next_cursor"] is not None
        rest = await (
            await client.get(path, params={"cursor": first["next_cursor"]}, headers=ann)
        ).json()
        assert len(rest["items"]) == 1
        assert rest["next_cursor"] is None
        bigger = await (await client.get(path, params={"limit": "1000"}, headers=ann)).json()
        assert len(bigger["items"]) == 101


async def test_a_write_answers_only_once_it_can_be_read_back(client: TestClient[Any, Any]) -> None:
    """Read-your-writes: no waiting between a 200 and the reads that reflect it."""
    from tests.servers import register, send, sync

    ann = await create_account(client, "ann")
    for i in range(20):
        guid = f"plex://movie/{i:024x}"
        await post_actions(client, ann, {"type": "rated", "guid": guid, "at": t(i), "rating": 7})
        state = await client.get(f"/v1/me/state/{guid}", headers=ann)
        assert state.status == 200
        assert (await state.json())["rating"] == 7
    await post_actions(client, ann, {"type": "watched", "guid": EPISODE, "at": t(30)})
    assert (await (await client.get("/v1/me", headers=ann)).json())["counts"]["episodes"] == 1
    history = await (await client.get("/v1/me/history", headers=ann)).json()
    assert [h["guid"] for h in history["items"]] == [EPISODE]

    await sync(client, ann, True)
    srv = await register(client, ann, "srv-a")
    await send(
        client, "srv-a", srv, {"account": "ann", "type": "watched", "guid": MOVIE, "at": t(40)}
    )
    state = await client.get(f"/v1/me/state/{MOVIE}", headers=ann)
    assert (await state.json())["watched_at"] == t(40)
