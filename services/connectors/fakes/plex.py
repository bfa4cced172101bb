"""A fake Plex Media Server: the endpoints a connector uses, as the community Plex API
specification (LukeHagar/plex-api-spec) and python-plexapi describe them, with Plex's quirks.

Routes checked against LukeHagar/plex-api-spec@ae9507ea ``plex-api-spec.yaml`` (info.version
1.1.1; see /work/research/openapi-check.md): getIdentity, getServerInfo, getSections,
listContent, getMetadataItem, markPlayed, unscrobble, setRating. ``GET /accounts`` is not in it
(python-plexapi's ``systemAccounts``); ``GET /library/sections`` was, until the document moved
it to ``/library/sections/all`` (2025), so the fake serves only the latter.

* JSON only with ``Accept: application/json`` (or the document's ``accepts`` header; Plex's
  default is XML: the fake answers 406); ``X-Plex-Token`` as a header or a query parameter;
  ``X-Plex-Client-Identifier`` required (400 without) where the document requires it (every
  route here but ``/identity``, ``/library/sections/all`` and ``/accounts``); every response a
  ``MediaContainer``.
* Watch data is per token: each account has its own token and sees its own ``viewCount``,
  ``lastViewedAt``, ``userRating`` and ``lastRatedAt`` — absent, not null, when unset.
* ``GET /library/sections/all``, ``GET
  /library/sections/{key}/all?type=&includeGuids=`` paged by ``X-Plex-Container-Start`` /
  ``-Size`` (headers or query), ``GET /library/metadata/{ratingKey}``, ``GET /accounts``,
  ``GET /``, ``GET /identity``; GET or PUT ``/:/scrobble``, ``/:/unscrobble``, ``/:/rate``
  (``identifier=com.plexapp.plugins.library`` required; 404 for an unknown key; ``/:/rate``
  takes an optional ``ratedAt``, Unix seconds).
* Quirks: a scrobble stamps now and takes no date; an unscrobble erases the date; a person's
  manual mark sends no webhook; webhooks need Plex Pass (``webhooks``) and can be lost
  (``lose_webhooks``); a webhook is multipart with a JSON ``payload`` part and, for rate
  events, a JPEG ``thumb``; ``media.rate`` may carry its rating as a string
  (``rating_as_string``); ratings are 0-10 with halves.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from .common import FakeServer, Write

IDENTIFIER = "com.plexapp.plugins.library"
OWNER = "1"
ACCOUNT = web.RequestKey("account", str)  # the id of the account whose token came
# The routes whose operation in the document has the X-Plex-Client-Identifier header required
# (getServerInfo, listContent, getMetadataItem, markPlayed, unscrobble, setRating).
CLIENT_ID_REQUIRED = {
    "/",
    "/library/sections/{section}/all",
    "/library/metadata/{keys}",
    "/:/scrobble",
    "/:/unscrobble",
    "/:/rate",
}
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64 + b"\xff\xd9"


@dataclass
class PlexItem:
    rating_key: str
    type: str  # movie, show, episode, track
    title: str
    guid: str
    guids: list[str] = field(default_factory=list)  # imdb://tt…, tmdb://…, tvdb://…
    section: str = "1"
    show: str | None = None  # an episode's show's ratingKey
    season: int | None = None
    episode: int | None = None
    edition: str | None = None


@dataclass
class PlexAccount:
    id: str
    name: str
    token: str


class FakePlex(FakeServer):
    """A Plex server with a movie section ("1"), a show section ("2") and a music one ("3")."""

    def __init__(self, owner_token: str) -> None:
        super().__init__()
        self.accounts: dict[str, PlexAccount] = {OWNER: PlexAccount(OWNER, "owner", owner_token)}
        self.items: dict[str, PlexItem] = {}
        self.webhooks = True  # Plex Pass
        self.lose_webhooks = False
        self.rating_as_string = False
        self.machine = "54664a3d8acc39983675640ec9ce00b70af9cc36"
        self.sent_webhooks = 0
        self.clock: float | None = None  # Unix seconds of "now" (None: the real clock)

    def now(self) -> float:
        return self.clock if self.clock is not None else time.time()

    def add_account(self, account_id: str, name: str, token: str) -> None:
        self.accounts[account_id] = PlexAccount(account_id, name, token)

    def add_movie(
        self, key: str, guid: str, guids: list[str] | None = None, *, edition: str | None = None
    ) -> PlexItem:
        item = PlexItem(key, "movie", f"Movie {key}", guid, guids or [], "1", edition=edition)
        self.items[key] = item
        return item

    def add_show(self, key: str, guid: str, guids: list[str] | None = None) -> PlexItem:
        item = PlexItem(key, "show", f"Show {key}", guid, guids or [], "2")
        self.items[key] = item
        return item

    def add_episode(
        self,
        key: str,
        show: str,
        season: int,
        episode: int,
        guid: str,
        guids: list[str] | None = None,
    ) -> PlexItem:
        item = PlexItem(key, "episode", f"E{key}", guid, guids or [], "2", show, season, episode)
        self.items[key] = item
        return item

    def add_track(self, key: str) -> PlexItem:
        item = PlexItem(key, "track", f"Track {key}", f"plex://track/{int(key):024x}", [], "3")
        self.items[key] = item
        return item

    # -- what a person does on the server ----------------------------------------------------

    async def play_to_end(self, account: str, key: str, at: float | None = None) -> None:
        """Watched to the end in a player: a view, and a ``media.scrobble`` webhook."""
        watch = self.watch(account, key)
        watch.plays += 1
        watch.last_played = at if at is not None else self.now()
        watch.position = 0
        await self.send_webhook("media.scrobble", account, key)

    def mark_played(self, account: str, key: str) -> None:
        """Marked played by hand: no webhook (Plex sends none)."""
        watch = self.watch(account, key)
        watch.plays += 1
        watch.last_played = self.now()

    def mark_unplayed(self, account: str, key: str) -> None:
        """Marked unplayed by hand: no webhook, and the date is gone."""
        watch = self.watch(account, key)
        watch.plays, watch.last_played = 0, None

    async def rate(self, account: str, key: str, rating: float | None) -> None:
        """Rated in a client (0-10, halves; None clears): a ``media.rate`` webhook."""
        watch = self.watch(account, key)
        watch.rating = rating
        watch.rated_at = self.now() if rating is not None else None
        await self.send_webhook(
            "media.rate", account, key, rating=-1.0 if rating is None else rating
        )

    async def playback(self, account: str, key: str, event: str) -> None:
        """``media.play``/``pause``/``resume``/``stop``: progress, not a watch event."""
        self.watch(account, key).position = 60_000
        await self.send_webhook(event, account, key)

    # -- webhooks ----------------------------------------------------------------------------

    def webhook_payload(self, event: str, account: str, key: str, **extra: Any) -> dict[str, Any]:
        """A payload as Plex builds it (support article "Webhooks"; a captured media.scrobble)."""
        holder = self.accounts[account]
        payload: dict[str, Any] = {
            "event": event,
            "user": account != OWNER,
            "owner": True,
            "Account": {
                "id": int(holder.id),
                "thumb": f"https://plex.tv/users/{holder.id}/avatar?c=1465525047",
                "title": holder.name,
            },
            "Server": {"title": "Living Room PLEXSERVERNAME", "uuid": self.machine},
            "Player": {
                "local": True,
                "publicAddress": "203.0.113.77",
                "title": "PLEXPLAYERNAME Safari",
                "uuid": "r6yfkdnfggbh2bdnvkffwbms",
            },
            "Metadata": {
                **self.metadata(account, self.items[key]),
                "librarySectionTitle": "PLEXLIBRARYNAME",
                "librarySectionKey": f"/library/sections/{self.items[key].section}",
                "Media": [{"Part": [{"file": "/srv/PLEXPATHNAME/movie.mkv"}]}],
            },
        }
        if "rating" in extra:
            rating = extra["rating"]
            payload["rating"] = str(rating) if self.rating_as_string else rating
        return payload

    async def send_webhook(self, event: str, account: str, key: str, **extra: Any) -> None:
        if not self.webhooks or self.webhook_url is None or self.lose_webhooks:
            return
        payload = self.webhook_payload(event, account, key, **extra)
        await post_plex_webhook(
            self.webhook_url, payload, thumb=event in ("media.rate", "media.play")
        )
        self.sent_webhooks += 1

    # -- the API -----------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.availability, self._auth])
        r = app.router
        r.add_get("/identity", self._identity)
        r.add_get("/", self._root)
        r.add_get("/accounts", self._accounts)
        r.add_get("/library/sections/all", self._sections)
        r.add_get("/library/sections/{section}/all", self._section_all)
        r.add_get("/library/metadata/{keys}", self._metadata)
        for path, handler in (
            ("/:/scrobble", self._scrobble),
            ("/:/unscrobble", self._unscrobble),
            ("/:/rate", self._rate),
        ):
            r.add_get(path, handler)
            r.add_put(path, handler)
        return app

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path == "/identity":
            response: web.StreamResponse = await handler(request)
            return response
        token = request.headers.get("X-Plex-Token") or request.query.get("X-Plex-Token")
        account = next((a for a in self.accounts.values() if a.token == token), None)
        if account is None:
            return web.Response(status=401, text="<html><h1>401 Unauthorized</h1></html>")
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else request.path
        if route in CLIENT_ID_REQUIRED and not request.headers.get("X-Plex-Client-Identifier"):
            return web.Response(status=400, text="<html>X-Plex-Client-Identifier required</html>")
        accepts = request.headers.get("Accept", "") + request.headers.get("accepts", "")
        if "application/json" not in accepts:
            return web.Response(
                status=406, text="this fake speaks JSON only; Plex's default is XML"
            )
        request[ACCOUNT] = account.id
        response = await handler(request)
        return response

    @staticmethod
    def _container(**fields: Any) -> web.Response:
        return web.json_response({"MediaContainer": fields})

    async def _identity(self, request: web.Request) -> web.Response:
        return self._container(
            size=0, claimed=True, machineIdentifier=self.machine, version="1.41.6.9606"
        )

    async def _root(self, request: web.Request) -> web.Response:
        return self._container(
            size=0, friendlyName="Fake Plex", machineIdentifier=self.machine, version="1.41.6.9606"
        )

    async def _accounts(self, request: web.Request) -> web.Response:
        if request[ACCOUNT] != OWNER:
            return web.Response(status=401)
        accounts = [
            {"id": int(a.id), "key": f"/accounts/{a.id}", "name": a.name}
            for a in self.accounts.values()
        ]
        return self._container(size=len(accounts), Account=accounts)

    async def _sections(self, request: web.Request) -> web.Response:
        sections = [
            {"key": "1", "type": "movie", "title": "Movies", "agent": "tv.plex.agents.movie"},
            {"key": "2", "type": "show", "title": "TV Shows", "agent": "tv.plex.agents.series"},
            {"key": "3", "type": "artist", "title": "Music", "agent": "tv.plex.agents.music"},
        ]
        return self._container(size=len(sections), Directory=sections)

    def metadata(self, account: str, item: PlexItem, *, guids: bool = True) -> dict[str, Any]:
        """An item as ``account`` sees it (unset fields absent, as Plex leaves them out)."""
        found: dict[str, Any] = {
            "ratingKey": item.rating_key,
            "key": f"/library/metadata/{item.rating_key}",
            "guid": item.guid,
            "type": item.type,
            "title": item.title,
            "librarySectionID": int(item.section),
            "addedAt": 1691115281,
        }
        if guids and item.guids:
            found["Guid"] = [{"id": g} for g in item.guids]
        if item.type == "episode" and item.show is not None:
            show = self.items[item.show]
            found.update(
                grandparentRatingKey=show.rating_key,
                grandparentGuid=show.guid,
                grandparentTitle=show.title,
                parentIndex=item.season,
                index=item.episode,
            )
        if item.edition:
            found["editionTitle"] = item.edition
        watch = self.data.get((account, item.rating_key))
        if watch is not None:
            if watch.plays:
                found["viewCount"] = watch.plays
            if watch.last_played is not None:
                found["lastViewedAt"] = int(watch.last_played)
            if watch.rating is not None:
                found["userRating"] = watch.rating
            if watch.rated_at is not None:
                found["lastRatedAt"] = int(watch.rated_at)
            if watch.position:
                found["viewOffset"] = watch.position
        return found

    async def _section_all(self, request: web.Request) -> web.Response:
        section = request.match_info["section"]
        kinds = {"1": "movie", "2": "show", "4": "episode", "10": "track"}
        kind = kinds.get(request.query.get("type", ""))
        include = request.query.get("includeGuids") == "1"
        chosen = [
            i
            for i in self.items.values()
            if i.section == section and (kind is None or i.type == kind)
        ]

        def page_param(name: str) -> int | None:
            value = request.headers.get(name) or request.query.get(name)
            return int(value) if value is not None else None

        start, size = page_param("X-Plex-Container-Start"), page_param("X-Plex-Container-Size")
        account = request[ACCOUNT]
        if start is None and size is None:
            shown = chosen
            return self._container(
                size=len(shown), Metadata=[self.metadata(account, i, guids=include) for i in shown]
            )
        start = start or 0
        size = len(chosen) if size is None else size
        shown = chosen[start : start + size]
        fields: dict[str, Any] = {"size": len(shown), "totalSize": len(chosen), "offset": start}
        if shown:
            fields["Metadata"] = [self.metadata(account, i, guids=include) for i in shown]
        return self._container(**fields)

    async def _metadata(self, request: web.Request) -> web.Response:
        keys = request.match_info["keys"].split(",")
        found = [self.items[k] for k in keys if k in self.items]
        if not found:
            return web.Response(status=404, text="<html>Not Found</html>")
        return self._container(
            size=len(found), Metadata=[self.metadata(request[ACCOUNT], i) for i in found]
        )

    def _target(self, request: web.Request) -> PlexItem | web.Response:
        if request.query.get("identifier") != IDENTIFIER:
            return web.Response(status=404, text="<html>no such library</html>")
        key = request.query.get("key")
        if key is None:
            return web.Response(status=400, text="<html>key required</html>")
        if key not in self.items:
            return web.Response(status=404, text="<html>no such item</html>")
        return self.items[key]

    async def _scrobble(self, request: web.Request) -> web.Response:
        item = self._target(request)
        if isinstance(item, web.Response):
            return item
        watch = self.watch(request[ACCOUNT], item.rating_key)
        watch.plays += 1
        watch.last_played = self.now()  # no date taken: Plex stamps now
        await self.wrote(Write(request[ACCOUNT], "scrobble", item.rating_key))
        return web.Response(status=200)

    async def _unscrobble(self, request: web.Request) -> web.Response:
        item = self._target(request)
        if isinstance(item, web.Response):
            return item
        watch = self.watch(request[ACCOUNT], item.rating_key)
        watch.plays, watch.last_played = 0, None
        await self.wrote(Write(request[ACCOUNT], "unscrobble", item.rating_key))
        return web.Response(status=200)

    async def _rate(self, request: web.Request) -> web.Response:
        item = self._target(request)
        if isinstance(item, web.Response):
            return item
        try:
            rating = float(request.query["rating"])
        except (KeyError, ValueError):
            return web.Response(status=400, text="<html>rating required</html>")
        if not (rating == -1 or 0 <= rating <= 10):
            return web.Response(status=400, text="<html>rating out of range</html>")
        watch = self.watch(request[ACCOUNT], item.rating_key)
        try:
            rated_at = float(request.query["ratedAt"]) if "ratedAt" in request.query else None
        except ValueError:
            return web.Response(status=400, text="<html>ratedAt: an integer</html>")
        if rating == -1:
            watch.rating, watch.rated_at = None, None
        else:
            watch.rating, watch.rated_at = rating, rated_at or self.now()
        await self.wrote(Write(request[ACCOUNT], "rate", item.rating_key, {"rating": rating}))
        return web.Response(status=200)


async def post_plex_webhook(url: str, payload: dict[str, Any], *, thumb: bool = False) -> int:
    """POST a webhook as Plex does: multipart/form-data, a ``payload`` part of JSON and, for
    some events, a JPEG ``thumb`` part. The listener's status."""
    form = aiohttp.FormData()
    form.add_field("payload", json.dumps(payload), content_type="application/json")
    if thumb:
        form.add_field("thumb", JPEG, filename="thumb.jpg", content_type="image/jpeg")
    async with aiohttp.ClientSession() as http, http.post(url, data=form) as response:
        await response.read()
        return response.status
