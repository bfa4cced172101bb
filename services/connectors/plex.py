"""Plex Media Server (the community Plex API specification; python-plexapi's use of it).

Checked against LukeHagar/plex-api-spec@ae9507ea ``plex-api-spec.yaml`` (info.version 1.1.1):
getServerInfo ``GET /``, getSections ``GET /library/sections/all``, listContent ``GET
/library/sections/{sectionId}/all``, getMetadataItem ``GET /library/metadata/{ids}``, markPlayed
/ unscrobble / setRating ``PUT /:/scrobble`` ``/:/unscrobble`` ``/:/rate``; every call sends the
``X-Plex-Client-Identifier`` the document requires. ``GET /accounts`` is not in that document
(python-plexapi's ``PlexServer.systemAccounts``); nor are ``lastRatedAt`` and ``editionTitle``
in its ``Metadata``, which are read as optional.

* Reads and writes are per user: a Plex token sees and changes its own account's watch data
  only. The owner acts with the server's token; another user needs their own (``token_env``).
* Items are listed per section with ``includeGuids=1``, paged with ``X-Plex-Container-Start`` /
  ``-Size``; an item's ids are its ``guid`` (``plex://…``) and its ``Guid`` list (``imdb://tt…``,
  ``tmdb://…``, ``tvdb://…``, no kind: the item's type gives it), an episode's also its show's
  ids with its season and episode numbers. A legacy agent's ``guid`` is translated where the
  id is recoverable (``com.plexapp.agents.imdb://tt…``, ``…themoviedb://…``,
  ``…thetvdb://<show>/<season>/<episode>``).
* ``/:/scrobble`` takes no date (Plex stamps now), ``/:/unscrobble`` erases the date,
  ``/:/rate`` takes 0-10 (-1 clears).
* Webhooks: ``multipart/form-data`` with a JSON ``payload`` part (and sometimes a JPEG);
  ``media.scrobble`` and ``media.rate`` matter. Manual marks send none: the poll sees them.
"""

from __future__ import annotations

import email.parser
import email.policy
import re
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

import aiohttp
import msgspec

from .config import Secret
from .mediahttp import call, integer, listing, mapping, number
from .model import (
    EXTERNAL_SCHEMES,
    BadWebhook,
    Hook,
    Item,
    ItemKind,
    MediaServerRefused,
    MediaUser,
    Observed,
    UserData,
    api_rating,
    external_id,
    from_unix,
    title_ids,
)

PAGE = 500
IDENTIFIER = "com.plexapp.plugins.library"
# Plex's search types (python-plexapi's utils.SEARCHTYPES).
MOVIE, SHOW, EPISODE = 1, 2, 4
OWNER_ACCOUNT = 1  # the server's own account list numbers its admin 1
_LEGACY = re.compile(
    r"^com\.plexapp\.agents\.(?P<agent>imdb|themoviedb|thetvdb)://(?P<id>[^?]+)(?:\?.*)?$"
)


class PlexServer:
    kind = "plex"
    takes_play_date = False

    def __init__(self, http: aiohttp.ClientSession, url: str, token: Secret) -> None:
        self._http = http
        self._url = url
        self._token = token
        self._shows: dict[tuple[str, str], tuple[str, ...]] = {}

    def _headers(self, user: MediaUser | None = None) -> dict[str, str]:
        token = user.token if user is not None and user.token is not None else self._token
        return {
            "X-Plex-Token": token.reveal(),
            "Accept": "application/json",
            "X-Plex-Product": "watchledger",
            "X-Plex-Client-Identifier": "watchledger-connector",
        }

    async def _get(
        self, path: str, user: MediaUser | None = None, params: dict[str, str] | None = None
    ) -> dict[str, Any]:
        answer = await call(
            self._http, "GET", self._url + path, headers=self._headers(user), params=params
        )
        return mapping(mapping(answer).get("MediaContainer"))

    async def _put(self, path: str, user: MediaUser, params: dict[str, str]) -> None:
        await call(self._http, "PUT", self._url + path, headers=self._headers(user), params=params)

    async def identify(self) -> str:
        container = await self._get("/")
        return f"{container.get('friendlyName', 'Plex')} {container.get('version', '')}".strip()

    async def users(self, configured: Sequence[tuple[str, str, Secret | None]]) -> list[MediaUser]:
        accounts = listing((await self._get("/accounts")).get("Account"))
        found: list[MediaUser] = []
        for media_user, account, token in configured:
            match = next(
                (a for a in accounts if media_user in (str(a.get("id")), str(a.get("name", "")))),
                None,
            )
            if match is None:
                raise MediaServerRefused(
                    f"users: the Plex server has no account {media_user!r} (GET /accounts)", 404
                )
            key = str(match.get("id"))
            if token is None and integer(match.get("id")) != OWNER_ACCOUNT:
                raise MediaServerRefused(
                    f"users: {media_user!r} is not the server's owner: give their own Plex "
                    "token (token_env), the server's token only acts for the owner",
                    400,
                )
            names = {media_user, key, str(match.get("name", ""))} - {""}
            found.append(MediaUser(key, frozenset(names), account, token))
        return found

    async def scan(self, user: MediaUser) -> AsyncIterator[list[Observed]]:
        sections = listing((await self._get("/library/sections/all", user)).get("Directory"))
        for section in sections:
            key = str(section.get("key", ""))
            if section.get("type") == "movie":
                async for page in self._pages(user, key, MOVIE):
                    yield [o for o in (self._observed(m, ()) for m in page) if o]
            elif section.get("type") == "show":
                shows: dict[str, tuple[str, ...]] = {}
                async for page in self._pages(user, key, SHOW):
                    for show in page:
                        shows[str(show.get("ratingKey"))] = self._show_ids(show)
                self._shows.update({(user.key, k): v for k, v in shows.items()})
                async for page in self._pages(user, key, EPISODE):
                    yield [
                        o
                        for o in (
                            self._observed(m, shows.get(str(m.get("grandparentRatingKey")), ()))
                            for m in page
                        )
                        if o
                    ]

    async def _pages(
        self, user: MediaUser, section: str, kind: int
    ) -> AsyncIterator[list[dict[str, Any]]]:
        start = 0
        while True:
            container = await self._get(
                f"/library/sections/{section}/all",
                user,
                {
                    "type": str(kind),
                    "includeGuids": "1",
                    "X-Plex-Container-Start": str(start),
                    "X-Plex-Container-Size": str(PAGE),
                },
            )
            items = listing(container.get("Metadata"))
            if items:
                yield items
            total = integer(container.get("totalSize"))
            start += len(items)
            if not items or total is None or start >= total:
                return

    async def read(self, user: MediaUser, item_id: str) -> Observed | None:
        try:
            container = await self._get(f"/library/metadata/{item_id}", user, {"includeGuids": "1"})
        except MediaServerRefused as exc:
            if exc.status == 404:
                return None
            raise
        found = listing(container.get("Metadata"))
        if not found:
            return None
        metadata = found[0]
        show: tuple[str, ...] = ()
        if metadata.get("type") == "episode":
            show_key = str(metadata.get("grandparentRatingKey", ""))
            show = self._shows.get((user.key, show_key), ())
            if not show and show_key:
                shows: list[dict[str, Any]]
                try:
                    shows = listing(
                        (
                            await self._get(
                                f"/library/metadata/{show_key}", user, {"includeGuids": "1"}
                            )
                        ).get("Metadata")
                    )
                except MediaServerRefused:
                    shows = []
                show = self._show_ids(shows[0]) if shows else ()
                self._shows[(user.key, show_key)] = show
            if not show:
                show = tuple(_legacy_ids(str(metadata.get("grandparentGuid", "")), "show"))
        return self._observed(metadata, show)

    async def mark_played(self, user: MediaUser, item_id: str, at: datetime | None) -> None:
        await self._put("/:/scrobble", user, {"key": item_id, "identifier": IDENTIFIER})

    async def mark_unplayed(self, user: MediaUser, item_id: str) -> None:
        await self._put("/:/unscrobble", user, {"key": item_id, "identifier": IDENTIFIER})

    async def rate(
        self, user: MediaUser, item_id: str, rating: int | None, at: datetime | None = None
    ) -> None:
        value = "-1" if rating is None else str(rating)
        params = {"key": item_id, "identifier": IDENTIFIER, "rating": value}
        if rating is not None and at is not None:
            params["ratedAt"] = str(int(at.timestamp()))  # setRating's optional ratedAt
        await self._put("/:/rate", user, params)

    def hooks(self, body: bytes, content_type: str) -> list[Hook]:
        payload = _payload(body, content_type)
        event = payload.get("event")
        if event not in ("media.scrobble", "media.rate"):
            return []  # play, pause, resume, stop, library and admin events are not watch events
        metadata = mapping(payload.get("Metadata"))
        if metadata.get("type") not in ("movie", "episode"):
            return []
        item_id = str(metadata.get("ratingKey") or "")
        if not item_id:
            raise BadWebhook("the payload's Metadata has no ratingKey")
        account = mapping(payload.get("Account"))
        users = tuple(
            str(v) for v in (account.get("id"), account.get("title")) if v not in (None, "")
        )
        return [Hook(users, item_id, about_rating=event == "media.rate")]

    async def close(self) -> None:
        return None

    # -- items ---------------------------------------------------------------------------------

    def _show_ids(self, show: dict[str, Any]) -> tuple[str, ...]:
        own = [str(show.get("guid", "")), *_guid_list(show, "show")]
        return (*own, *_legacy_ids(str(show.get("guid", "")), "show"))

    def _observed(self, metadata: dict[str, Any], show: tuple[str, ...]) -> Observed | None:
        kind: ItemKind
        if metadata.get("type") == "movie":
            kind = "movie"
        elif metadata.get("type") == "episode":
            kind = "episode"
        else:
            return None
        item_id = str(metadata.get("ratingKey") or "")
        guid = str(metadata.get("guid", ""))
        own = [guid, *_guid_list(metadata, kind)]
        numbers = None
        season, episode = integer(metadata.get("parentIndex")), integer(metadata.get("index"))
        if kind == "episode" and season is not None and episode is not None:
            numbers = (season, episode)
        ids = title_ids(kind, [*own, *_legacy_ids(guid, kind)], show, numbers)
        if not item_id or not ids:
            return None
        edition = str(metadata.get("editionTitle") or "") or None
        views = integer(metadata.get("viewCount")) or 0
        data = UserData(
            played=views > 0,
            viewed_at=from_unix(number(metadata.get("lastViewedAt"))) if views > 0 else None,
            rating=api_rating(number(metadata.get("userRating"))),
            rated_at=from_unix(number(metadata.get("lastRatedAt"))),
            in_progress=(integer(metadata.get("viewOffset")) or 0) > 0,
        )
        return Observed(Item(item_id, kind, ids, edition if kind == "movie" else None), data)


def _guid_list(metadata: dict[str, Any], kind: str) -> list[str]:
    """The ``Guid`` list's ids (``imdb://tt…``) in watchledger's form (``imdb://movie/tt…``)."""
    found = []
    for entry in listing(metadata.get("Guid")):
        scheme, _, value = str(entry.get("id", "")).partition("://")
        if scheme in EXTERNAL_SCHEMES and value:
            found.append(external_id(scheme, kind, value))
    return found


def _legacy_ids(guid: str, kind: str) -> list[str]:
    """A legacy agent's guid as watchledger ids, where the id is recoverable: an IMDb or TMDB
    movie, a TVDB show, or an episode by its TVDB show and numbers."""
    match = _LEGACY.match(guid)
    if match is None:
        return []
    agent, value = match.group("agent"), match.group("id")
    parts = value.split("/")
    if agent == "imdb" and kind == "movie" and len(parts) == 1:
        return [external_id("imdb", "movie", parts[0])]
    if agent == "themoviedb" and kind == "movie" and len(parts) == 1:
        return [external_id("tmdb", "movie", parts[0])]
    if agent in ("thetvdb", "themoviedb"):
        scheme = "tvdb" if agent == "thetvdb" else "tmdb"
        if kind == "show" and len(parts) == 1:
            return [external_id(scheme, "show", parts[0])]
        if kind == "episode" and len(parts) == 3 and all(p.isdigit() for p in parts):
            show, season, episode = parts
            return [f"{external_id(scheme, 'show', show)}/s{int(season)}e{int(episode)}"]
    return []


_PARSER = email.parser.BytesParser(policy=email.policy.HTTP)


def _payload(body: bytes, content_type: str) -> dict[str, Any]:
    """The JSON of a Plex webhook's ``payload`` part (a thumbnail part is ignored)."""
    if not content_type.lower().startswith("multipart/form-data"):
        raise BadWebhook("expected multipart/form-data with a payload part (a Plex webhook)")
    message = _PARSER.parsebytes(
        b"Content-Type: " + content_type.encode("latin-1", "replace") + b"\r\n\r\n" + body
    )
    if not message.is_multipart():
        raise BadWebhook("the multipart body has no parts (missing or wrong boundary)")
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") == "payload":
            raw = part.get_payload(decode=True)
            if not isinstance(raw, bytes):
                break
            try:
                payload = msgspec.json.decode(raw)
            except msgspec.DecodeError:
                raise BadWebhook("the payload part is not JSON") from None
            if not isinstance(payload, dict):
                raise BadWebhook("the payload part is not a JSON object")
            return payload
    raise BadWebhook("no payload part in the multipart body")
