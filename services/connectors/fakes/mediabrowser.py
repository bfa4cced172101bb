"""Fake Jellyfin and Emby servers: the endpoints a connector uses, as Jellyfin's OpenAPI
document and Emby's (``Emby.SDK`` ``openapi_v3.json``) describe them.

Routes, parameters and fields checked against (see /work/research/openapi-check.md):
Jellyfin OpenAPI 10.11.8 as generated into jellyfin/jellyfin-sdk-kotlin@556b6238 (its
``openapi.json`` is an LFS object, sha256 ``5c93d9cc…``; operations GetUsers, GetItems,
MarkPlayedItem, MarkUnplayedItem, UpdateItemUserData, DeleteUserItemRating, GetSystemInfo), and
Emby ``Resources/OpenApi/openapi_v3.json`` 4.8.11.0 (MediaBrowser/Emby.SDK@58acc58a).

Shared: PascalCase JSON, nulls left out, ``{"Items", "TotalRecordCount"}`` pages by
``StartIndex``/``Limit``, query names matched without regard to case (as both servers do) but
every name the document does not list, in the document's spelling, is recorded in
``off_spec``; ``UserData`` with ``Played``, ``PlayCount``, ``LastPlayedDate`` (seven fractional
digits, ``Z``), ``Rating`` (0-10), ``PlaybackPositionTicks``, ``ItemId``; 401 without a token,
404 for an unknown user or item.

* Jellyfin: ``Authorization: MediaBrowser Token="…"``; ids of 32 hex digits; camelCase query
  names; ``GET /Users`` (a ``UserDto`` array); ``GET /Items?userId=``; ``POST|DELETE
  /UserPlayedItems/{itemId}?userId=&datePlayed=`` (ISO 8601); ``POST
  /UserItems/{itemId}/UserData?userId=`` (an update: only the fields sent; answers the
  ``UserItemDataDto``); ``DELETE /UserItems/{itemId}/Rating?userId=``. Webhooks (the Webhook
  plugin's Generic destination) are a user's template rendered: ``text/plain``, every value a
  string (``"True"``), Guids with dashes. Quirk switches: ``played_without_date`` (marked
  played, no ``LastPlayedDate``), ``no_user`` (events without a user).
* Emby: ``X-Emby-Token`` (or ``api_key``); numeric item ids; paths with or without ``/emby``;
  PascalCase query names; ``GET /Users/Query`` (a ``QueryResult<UserDto>``; there is no ``GET
  /Users``); ``GET /Users/{UserId}/Items``; ``POST|DELETE
  /Users/{UserId}/PlayedItems/{Id}?DatePlayed=`` (``yyyyMMddHHmmss`` only: an ISO date is
  refused); ``POST /Users/{UserId}/Items/{ItemId}/UserData`` (the whole UserItemDataDto; an
  empty 200). Webhooks as form field ``data=`` (4.7-4.8), a multipart part ``data`` or raw JSON
  (``webhook_format``).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import aiohttp
from aiohttp import web

from .common import FakeServer, Watch, Write

Flavor = Literal["jellyfin", "emby"]
# The query with its names lowered (both servers match names without regard to case).
QUERY = web.RequestKey("query", dict)

# The query names each document lists for the routes served (those a client could use here; the
# item queries list many more filters, none of which a connector sends), as spelled there.
_JELLYFIN_ITEMS = {
    "userId", "startIndex", "limit", "recursive", "fields", "includeItemTypes",
    "excludeItemTypes", "ids", "enableUserData", "enableImages", "parentId", "isPlayed",
    "sortBy", "sortOrder", "enableTotalRecordCount",
}  # fmt: skip
_EMBY_ITEMS = {
    "StartIndex", "Limit", "Recursive", "Fields", "IncludeItemTypes", "ExcludeItemTypes",
    "Ids", "EnableUserData", "EnableImages", "ParentId", "IsPlayed", "SortBy", "SortOrder",
}  # fmt: skip
DOCUMENTED: dict[Flavor, dict[tuple[str, str], set[str]]] = {
    "jellyfin": {
        ("GET", "/System/Info"): set(),
        ("GET", "/Users"): {"isHidden", "isDisabled"},
        ("GET", "/Items"): _JELLYFIN_ITEMS,
        ("POST", "/UserPlayedItems/{item}"): {"userId", "datePlayed"},
        ("DELETE", "/UserPlayedItems/{item}"): {"userId"},
        ("POST", "/UserItems/{item}/UserData"): {"userId"},
        ("DELETE", "/UserItems/{item}/Rating"): {"userId"},
    },
    "emby": {
        ("GET", "/System/Info"): set(),
        ("GET", "/Users/Query"): {
            "IsHidden",
            "IsDisabled",
            "StartIndex",
            "Limit",
            "NameStartsWithOrGreater",
            "SortOrder",
        },
        ("GET", "/Users/{user}/Items"): _EMBY_ITEMS,
        ("POST", "/Users/{user}/PlayedItems/{item}"): {"DatePlayed"},
        ("DELETE", "/Users/{user}/PlayedItems/{item}"): set(),
        ("POST", "/Users/{user}/PlayedItems/{item}/Delete"): set(),
        ("POST", "/Users/{user}/Items/{item}/UserData"): set(),
    },
}
# UpdateUserItemDataDto (Jellyfin) and UserItemDataDto (Emby): the body of a user-data update.
USER_DATA_FIELDS: dict[Flavor, set[str]] = {
    "jellyfin": {
        "Rating", "PlayedPercentage", "UnplayedItemCount", "PlaybackPositionTicks", "PlayCount",
        "IsFavorite", "Likes", "LastPlayedDate", "Played", "Key", "ItemId",
    },
    "emby": {
        "Rating", "PlayedPercentage", "UnplayedItemCount", "PlaybackPositionTicks", "PlayCount",
        "IsFavorite", "LastPlayedDate", "Played", "Key", "ItemId", "ServerId",
    },
}  # fmt: skip


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


@dataclass
class MBItem:
    id: str
    type: str  # Movie, Series, Episode
    name: str
    provider_ids: dict[str, str] = field(default_factory=dict)
    series: str | None = None
    season: int | None = None
    episode: int | None = None


class FakeMediaBrowser(FakeServer):
    def __init__(self, flavor: Flavor, api_key: str) -> None:
        super().__init__()
        self.flavor = flavor
        self.api_key = api_key
        self.users: dict[str, str] = {}  # id -> name
        self.items: dict[str, MBItem] = {}
        self.played_without_date = False
        self.no_user = False
        self.webhook_format: Literal["form", "multipart", "json"] = "form"
        self.clock: float | None = None
        self._next = 1000
        self._echoes: set[asyncio.Task[None]] = set()
        self.off_spec: list[str] = []  # "METHOD /route ?name" the document does not list

    def now(self) -> float:
        return self.clock if self.clock is not None else time.time()

    def new_id(self) -> str:
        self._next += 1
        return uuid.uuid4().hex if self.flavor == "jellyfin" else str(self._next)

    def add_user(self, name: str) -> str:
        user_id = uuid.uuid4().hex
        self.users[user_id] = name
        return user_id

    def add_movie(self, providers: dict[str, str]) -> str:
        item = MBItem(self.new_id(), "Movie", "A movie", providers)
        self.items[item.id] = item
        return item.id

    def add_series(self, providers: dict[str, str]) -> str:
        item = MBItem(self.new_id(), "Series", "A show", providers)
        self.items[item.id] = item
        return item.id

    def add_episode(self, series: str, season: int, episode: int, providers: dict[str, str]) -> str:
        item = MBItem(self.new_id(), "Episode", "An episode", providers, series, season, episode)
        self.items[item.id] = item
        return item.id

    # -- what a person does ------------------------------------------------------------------

    async def mark_played(self, user: str, item: str) -> None:
        """Marked played by hand."""
        watch = self.watch(user, item)
        watch.plays = max(watch.plays, 1)
        if not (self.flavor == "jellyfin" and self.played_without_date):
            watch.last_played = self.now()
        await self._user_event(user, item, "markplayed")

    async def mark_unplayed(self, user: str, item: str) -> None:
        watch = self.watch(user, item)
        watch.plays, watch.last_played = 0, None
        await self._user_event(user, item, "markunplayed")

    async def play_to_end(self, user: str, item: str) -> None:
        watch = self.watch(user, item)
        watch.plays += 1
        watch.last_played = self.now()
        watch.position = 0
        await self._user_event(user, item, "stop")

    async def rate(self, user: str, item: str, rating: float | None) -> None:
        self.watch(user, item).rating = rating
        await self._user_event(user, item, "rate")

    # -- JSON shapes -------------------------------------------------------------------------

    def user_data(self, user: str, item: str) -> dict[str, Any]:
        watch = self.data.get((user, item), Watch())
        data: dict[str, Any] = {
            "PlaybackPositionTicks": watch.position,
            "PlayCount": watch.plays,
            "IsFavorite": False,
            "Played": watch.plays > 0,
            "Key": item,
            "ItemId": item,
        }
        if watch.last_played is not None:
            data["LastPlayedDate"] = iso(watch.last_played)
        if watch.rating is not None:
            data["Rating"] = watch.rating
        return data

    def item_json(self, user: str | None, item: MBItem) -> dict[str, Any]:
        found: dict[str, Any] = {
            "Name": item.name,
            "ServerId": "f40a5bd0c6b64051bdbed00580fa1118",
            "Id": item.id,
            "Type": item.type,
            "IsFolder": item.type == "Series",
            "Path": "/srv/MBPATHNAME/file.mkv",
        }
        if item.provider_ids:
            found["ProviderIds"] = dict(item.provider_ids)
        if item.type == "Episode":
            found.update(
                SeriesId=item.series,
                SeriesName="A show",
                ParentIndexNumber=item.season,
                IndexNumber=item.episode,
            )
        if user is not None:
            found["UserData"] = self.user_data(user, item.id)
        return found

    # -- webhooks ----------------------------------------------------------------------------

    async def _user_event(self, user: str, item: str, what: str) -> None:
        if self.webhook_url is None:
            return
        if self.flavor == "jellyfin":
            body, ctype = self._jellyfin_webhook(user, item, what)
        else:
            body, ctype = self._emby_webhook(user, item, what)
        async with (
            aiohttp.ClientSession() as http,
            http.post(self.webhook_url, data=body, headers={"Content-Type": ctype}) as response,
        ):
            await response.read()

    def _jellyfin_webhook(self, user: str, item: str, what: str) -> tuple[bytes, str]:
        """A Generic-destination template rendered: every value a string, Guids dashed."""
        event = "PlaybackStop" if what == "stop" else "UserDataSaved"
        reason = {"markplayed": "TogglePlayed", "markunplayed": "TogglePlayed"}.get(
            what, "UpdateUserRating" if what == "rate" else ""
        )
        data = self.user_data(user, item)
        rendered = {
            "NotificationType": event,
            "ServerName": "MBSERVERNAME",
            "UtcTimestamp": iso(self.now()),
            "UserId": "" if self.no_user else str(uuid.UUID(user)),
            "NotificationUsername": "" if self.no_user else self.users[user],
            "ItemId": str(uuid.UUID(item)),
            "ItemType": self.items[item].type,
            "DeviceName": "MBDEVICENAME",
            "SaveReason": reason,
            "Played": str(data["Played"]) if event == "UserDataSaved" else "",
            "LastPlayedDate": data.get("LastPlayedDate", ""),
            "Rating": str(data.get("Rating", 0)),
            "PlayedToCompletion": "True" if event == "PlaybackStop" else "",
        }
        return json.dumps(rendered).encode(), "text/plain; charset=utf-8"

    def _emby_webhook(self, user: str, item: str, what: str) -> tuple[bytes, str]:
        event = {
            "markplayed": "item.markplayed",
            "markunplayed": "item.markunplayed",
            "rate": "item.rate",
            "stop": "playback.stop",
        }[what]
        payload: dict[str, Any] = {
            "Title": "someone did something",
            "Date": iso(self.now()),
            "Event": event,
            "Severity": "Info",
            "Item": {**self.item_json(user, self.items[item])},
            "Server": {"Name": "MBSERVERNAME", "Id": "f40a5bd0c6b6", "Version": "4.8.11.0"},
        }
        if not self.no_user:
            payload["User"] = {"Name": self.users[user], "Id": user}
        if event == "playback.stop":
            payload["Item"].pop("UserData")
            payload["Session"] = {"DeviceName": "MBDEVICENAME", "RemoteEndPoint": "203.0.113.9"}
            payload["PlaybackInfo"] = {"PlayedToCompletion": True, "PositionTicks": 0}
        text = json.dumps(payload)
        return emby_body(text, self.webhook_format)

    def _echo(self, user: str, item: str, what: str) -> None:
        """Jellyfin sends UserDataSaved for an API's write too (queued: after the answer)."""
        if self.flavor == "jellyfin":
            task = asyncio.create_task(self._user_event(user, item, what))
            self._echoes.add(task)
            task.add_done_callback(self._echoes.discard)

    async def echoed(self) -> None:
        """Until the webhooks that echo the API's writes have been sent."""
        while self._echoes:
            await asyncio.gather(*self._echoes, return_exceptions=True)

    async def close(self) -> None:
        await self.echoed()
        await super().close()

    # -- the API -----------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.availability, self._auth])
        prefixes = [""] if self.flavor == "jellyfin" else ["", "/emby"]
        for p in prefixes:
            r = app.router
            r.add_get(p + "/System/Info", self._info)
            if self.flavor == "jellyfin":
                r.add_get(p + "/Users", self._users)
                r.add_get(p + "/Items", self._items)
                r.add_post(p + "/UserPlayedItems/{item}", self._played)
                r.add_delete(p + "/UserPlayedItems/{item}", self._unplayed)
                r.add_post(p + "/UserItems/{item}/UserData", self._user_data)
                r.add_delete(p + "/UserItems/{item}/Rating", self._clear_rating)
            else:
                r.add_get(p + "/Users/Query", self._users)
                r.add_get(p + "/Users/{user}/Items", self._items)
                r.add_post(p + "/Users/{user}/PlayedItems/{item}", self._played)
                r.add_delete(p + "/Users/{user}/PlayedItems/{item}", self._unplayed)
                r.add_post(p + "/Users/{user}/PlayedItems/{item}/Delete", self._unplayed)
                r.add_post(p + "/Users/{user}/Items/{item}/UserData", self._user_data)
        return app

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self.flavor == "jellyfin":
            header = request.headers.get("Authorization", "")
            ok = header.startswith("MediaBrowser ") and f'Token="{self.api_key}"' in header
        else:
            ok = self.api_key in (
                request.headers.get("X-Emby-Token"),
                request.query.get("api_key"),
            )
        if not ok:
            return web.Response(status=401)
        self._check_names(request)
        request[QUERY] = {k.lower(): v for k, v in request.query.items()}
        response: web.StreamResponse = await handler(request)
        return response

    def _check_names(self, request: web.Request) -> None:
        """Record each query name the document does not list for this route (the server would
        still take a name in another casing: this is how the fake shows drift)."""
        route = request.match_info.route.resource
        canonical = route.canonical if route is not None else request.path
        canonical = canonical.removeprefix("/emby")
        listed = DOCUMENTED[self.flavor].get((request.method, canonical))
        if listed is None:
            return
        allowed = listed | ({"api_key"} if self.flavor == "emby" else set())
        for name in request.query:
            if name not in allowed:
                self.off_spec.append(f"{request.method} {canonical} ?{name}")

    def _user_of(self, request: web.Request) -> str | None:
        user = request.match_info.get("user") or request[QUERY].get("userid")
        return None if user is None else user.replace("-", "").lower()

    async def _info(self, request: web.Request) -> web.Response:
        version = "10.11.8" if self.flavor == "jellyfin" else "4.8.11.0"
        return web.json_response(
            {"ServerName": "MBSERVERNAME", "Version": version, "Id": "f40a5bd0c6b64051"}
        )

    async def _users(self, request: web.Request) -> web.Response:
        users = [
            {
                "Name": name,
                "ServerId": "f40a5bd0c6b64051bdbed00580fa1118",
                "Id": user_id,
                "HasPassword": True,
                "HasConfiguredPassword": True,
            }
            for user_id, name in self.users.items()
        ]
        if self.flavor == "jellyfin":
            for user in users:
                user["HasConfiguredEasyPassword"] = False  # required in Jellyfin's UserDto
            return web.json_response(users)  # GetUsers: UserDto[]
        return web.json_response({"Items": users, "TotalRecordCount": len(users)})

    async def _items(self, request: web.Request) -> web.Response:
        q = request[QUERY]
        user = self._user_of(request)
        if user is not None and user not in self.users:
            return web.Response(status=404)
        chosen = list(self.items.values())
        if "ids" in q:
            wanted = {
                i.replace("-", "").lower() if self.flavor == "jellyfin" else i
                for i in q["ids"].split(",")
            }
            chosen = [i for i in chosen if i.id in wanted]
        if "includeitemtypes" in q:
            types = set(q["includeitemtypes"].split(","))
            chosen = [i for i in chosen if i.type in types]
        start = int(q.get("startindex", "0"))
        limit = int(q.get("limit", str(len(chosen))))
        shown = chosen[start : start + limit]
        with_data = user is not None and q.get("enableuserdata", "true").lower() == "true"
        providers = "providerids" in q.get("fields", "").lower()
        items = []
        for item in shown:
            found = self.item_json(user if with_data else None, item)
            if not providers:
                found.pop("ProviderIds", None)
            items.append(found)
        return web.json_response(
            {"Items": items, "TotalRecordCount": len(chosen), "StartIndex": start}
        )

    def _target(self, request: web.Request) -> tuple[str, str] | web.Response:
        user = self._user_of(request)
        item = (
            request.match_info["item"].replace("-", "").lower()
            if self.flavor == "jellyfin"
            else request.match_info["item"]
        )
        if user not in self.users or item not in self.items:
            return web.Response(status=404)
        return user, item

    async def _played(self, request: web.Request) -> web.Response:
        target = self._target(request)
        if isinstance(target, web.Response):
            return target
        user, item = target
        raw = request[QUERY].get("dateplayed")
        played: float | None = None
        if raw is not None:
            try:
                if self.flavor == "emby":
                    played = datetime.strptime(raw, "%Y%m%d%H%M%S").replace(tzinfo=UTC).timestamp()
                else:
                    played = datetime.fromisoformat(raw).timestamp()
            except ValueError:
                return web.Response(status=400, text="DatePlayed: bad format")
        watch = self.watch(user, item)
        if played is not None:
            watch.plays += 1
        watch.plays = max(watch.plays, 1)
        watch.last_played = played if played is not None else (watch.last_played or self.now())
        watch.position = 0
        await self.wrote(Write(user, "played", item, {"date": raw}))
        self._echo(user, item, "markplayed")
        return web.json_response(self.user_data(user, item))

    async def _unplayed(self, request: web.Request) -> web.Response:
        target = self._target(request)
        if isinstance(target, web.Response):
            return target
        user, item = target
        watch = self.watch(user, item)
        watch.plays, watch.last_played, watch.position = 0, None, 0
        await self.wrote(Write(user, "unplayed", item))
        self._echo(user, item, "markunplayed")
        return web.json_response(self.user_data(user, item))

    async def _user_data(self, request: web.Request) -> web.Response:
        target = self._target(request)
        if isinstance(target, web.Response):
            return target
        user, item = target
        body = await request.json()
        self.off_spec.extend(
            f"{request.method} UserData body {name}"
            for name in body
            if name not in USER_DATA_FIELDS[self.flavor]
        )
        watch = self.watch(user, item)
        if self.flavor == "emby":
            # The whole DTO: flags that are not sent are reset (why a client sends them all).
            watch.plays = int(body.get("PlayCount") or (1 if body.get("Played") else 0))
            if not body.get("Played"):
                watch.plays, watch.last_played = 0, None
        rating = body.get("Rating")
        if rating is not None and not 0 <= float(rating) <= 10:
            return web.Response(status=400)
        if "Rating" in body and (self.flavor == "emby" or rating is not None):
            watch.rating = rating
        await self.wrote(Write(user, "rated", item, {"rating": rating}))
        if self.flavor == "jellyfin":
            return web.json_response(self.user_data(user, item))  # UserItemDataDto
        return web.Response(status=200)  # "Operation successful. Empty response."

    async def _clear_rating(self, request: web.Request) -> web.Response:
        target = self._target(request)
        if isinstance(target, web.Response):
            return target
        user, item = target
        self.watch(user, item).rating = None
        await self.wrote(Write(user, "rated", item, {"rating": None}))
        return web.json_response(self.user_data(user, item))


def emby_body(text: str, fmt: str) -> tuple[bytes, str]:
    """An Emby webhook body: form field ``data`` (4.7-4.8), multipart part ``data``, or JSON."""
    if fmt == "json":
        return text.encode(), "application/json; charset=utf-8"
    if fmt == "form":
        from urllib.parse import urlencode

        return urlencode({"data": text}).encode(), "application/x-www-form-urlencoded"
    boundary = "emby-boundary-7d93"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="data"\r\n\r\n{text}\r\n'
        f"--{boundary}--\r\n"
    ).encode()
    return body, f"multipart/form-data; boundary={boundary}"
