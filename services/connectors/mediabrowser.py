"""What Jellyfin and Emby share (Jellyfin began as a fork of Emby's MediaBrowser): items with
``ProviderIds`` and ``UserData``, users by id, paged item queries, and webhook payloads as JSON
in a raw body, a form field ``data`` or a multipart part ``data``."""

from __future__ import annotations

import email.parser
import email.policy
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import aiohttp
import msgspec

from .config import Secret
from .mediahttp import boolean, call, integer, listing, mapping, number
from .model import (
    EXTERNAL_SCHEMES,
    BadWebhook,
    Item,
    ItemKind,
    MediaServerRefused,
    MediaUser,
    Observed,
    UserData,
    api_rating,
    external_id,
    title_ids,
)

PAGE = 500
_KINDS: dict[str, ItemKind] = {"movie": "movie", "episode": "episode"}
_PARSER = email.parser.BytesParser(policy=email.policy.HTTP)


def parse_date(value: Any) -> datetime | None:
    """An ISO 8601 time as these servers write it (seven fractional digits, ``Z``)."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        at = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return None if at.year < 1971 else at  # DateTime.MinValue: no date


def provider_ids(item: dict[str, Any], kind: str) -> list[str]:
    """``ProviderIds`` (``Imdb``, ``Tmdb``, ``Tvdb``, any casing) as watchledger ids."""
    found = []
    for key, value in mapping(item.get("ProviderIds")).items():
        scheme = str(key).lower()
        if scheme in EXTERNAL_SCHEMES and isinstance(value, str | int) and str(value).strip():
            found.append(external_id(scheme, kind, value))
    return found


def json_body(body: bytes, content_type: str) -> dict[str, Any]:
    """A webhook's JSON object, whatever the content type says: a raw body (Jellyfin's plugin
    sends JSON as text/plain), a form field ``data`` or a multipart part ``data`` (Emby)."""
    lowered = content_type.lower()
    raw = body
    if lowered.startswith("multipart/form-data"):
        message = _PARSER.parsebytes(
            b"Content-Type: " + content_type.encode("latin-1", "replace") + b"\r\n\r\n" + body
        )
        parts = list(message.iter_parts()) if message.is_multipart() else []
        data = next(
            (p for p in parts if p.get_param("name", header="content-disposition") == "data"),
            None,
        )
        if data is None:
            raise BadWebhook("no data part in the multipart body")
        payload = data.get_payload(decode=True)
        raw = payload if isinstance(payload, bytes) else b""
    elif lowered.startswith("application/x-www-form-urlencoded"):
        try:
            fields = parse_qs(body.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            raise BadWebhook("the form body is not UTF-8") from None
        raw = fields.get("data", [""])[0].encode()
    if not raw.strip():
        return {}  # Emby's test event before 4.9.0.37 carries no data
    try:
        decoded = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        raise BadWebhook("the webhook body is not JSON") from None
    if not isinstance(decoded, dict):
        raise BadWebhook("the webhook body is not a JSON object")
    return decoded


class MediaBrowserServer:
    """The shared half of the Jellyfin and Emby adapters; a subclass says how it authenticates,
    where a user's items are, and how it writes."""

    kind = "mediabrowser"
    takes_play_date = True

    def __init__(self, http: aiohttp.ClientSession, url: str, token: Secret) -> None:
        self._http = http
        self._url = url
        self._token = token
        self._series: dict[str, tuple[str, ...]] = {}

    # -- what a subclass says ------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        raise NotImplementedError

    def _items_path(self, user: MediaUser) -> tuple[str, dict[str, str]]:
        """The path and the extra query parameters of a user's item query."""
        raise NotImplementedError

    async def _user_list(self) -> list[dict[str, Any]]:
        """The server's users (``UserDto`` objects)."""
        raise NotImplementedError

    @staticmethod
    def _query_names(params: dict[str, str]) -> dict[str, str]:
        """Query parameters spelled as the server's OpenAPI document spells them (Emby's are
        PascalCase, as written here; Jellyfin's camelCase). Both servers match names without
        regard to case, but the documents are what a client is written against."""
        return params

    # -- calls ---------------------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        params: dict[str, str] | None = None,
        json: Any = None,
    ) -> Any:
        return await call(
            self._http,
            method,
            self._url + path,
            headers=self._headers(),
            params=None if params is None else self._query_names(params),
            json=json,
        )

    async def identify(self) -> str:
        info = mapping(await self._call("GET", "/System/Info"))
        return f"{info.get('ServerName', self.kind)} {info.get('Version', '')}".strip()

    async def users(self, configured: Sequence[tuple[str, str, Secret | None]]) -> list[MediaUser]:
        known = await self._user_list()
        found: list[MediaUser] = []
        for media_user, account, _ in configured:
            wanted = media_user.replace("-", "").lower()
            match = next(
                (u for u in known if str(u.get("Id", "")).replace("-", "").lower() == wanted),
                None,
            ) or next((u for u in known if str(u.get("Name", "")) == media_user), None)
            if match is None:
                raise MediaServerRefused(
                    f"users: the {self.kind} server has no user {media_user!r}", 404
                )
            key = str(match["Id"])
            names = {media_user, key, key.replace("-", "").lower(), str(match.get("Name", ""))}
            found.append(MediaUser(key, frozenset(names - {""}), account))
        return found

    async def _query(
        self, user: MediaUser, params: dict[str, str]
    ) -> AsyncIterator[list[dict[str, Any]]]:
        path, extra = self._items_path(user)
        start = 0
        while True:
            page = mapping(
                await self._call(
                    "GET",
                    path,
                    {
                        **extra,
                        "Recursive": "true",
                        "EnableUserData": "true",
                        "EnableImages": "false",
                        "StartIndex": str(start),
                        "Limit": str(PAGE),
                        **params,
                    },
                )
            )
            items = listing(page.get("Items"))
            if items:
                yield items
            start += len(items)
            total = integer(page.get("TotalRecordCount"))
            if not items or total is None or start >= total:
                return

    async def scan(self, user: MediaUser) -> AsyncIterator[list[Observed]]:
        async for page in self._query(
            user, {"IncludeItemTypes": "Series", "Fields": "ProviderIds"}
        ):
            for series in page:
                self._series[str(series.get("Id"))] = tuple(provider_ids(series, "show"))
        async for page in self._query(
            user, {"IncludeItemTypes": "Movie,Episode", "Fields": "ProviderIds"}
        ):
            found = []
            for item in page:
                observed = await self._observed(user, item)
                if observed is not None:
                    found.append(observed)
            yield found

    async def read(self, user: MediaUser, item_id: str) -> Observed | None:
        try:
            page = mapping(await self._call_items(user, {"Ids": item_id, "Fields": "ProviderIds"}))
        except MediaServerRefused as exc:
            if exc.status in (400, 404):
                return None
            raise
        items = listing(page.get("Items"))
        return await self._observed(user, items[0]) if items else None

    async def _call_items(self, user: MediaUser, params: dict[str, str]) -> Any:
        path, extra = self._items_path(user)
        return await self._call("GET", path, {**extra, "EnableUserData": "true", **params})

    async def _series_ids(self, user: MediaUser, series_id: str) -> tuple[str, ...]:
        if series_id not in self._series:
            page = mapping(
                await self._call_items(user, {"Ids": series_id, "Fields": "ProviderIds"})
            )
            found = listing(page.get("Items"))
            self._series[series_id] = tuple(provider_ids(found[0], "show")) if found else ()
        return self._series[series_id]

    async def _observed(self, user: MediaUser, item: dict[str, Any]) -> Observed | None:
        kind = _KINDS.get(str(item.get("Type", "")).lower())
        item_id = str(item.get("Id") or "")
        if kind is None or not item_id:
            return None
        show: tuple[str, ...] = ()
        numbers = None
        if kind == "episode":
            series = str(item.get("SeriesId") or "")
            show = await self._series_ids(user, series) if series else ()
            season, episode = (
                integer(item.get("ParentIndexNumber")),
                integer(item.get("IndexNumber")),
            )
            if season is not None and episode is not None:
                numbers = (season, episode)
        ids = title_ids(kind, provider_ids(item, kind), show, numbers)
        if not ids:
            return None
        return Observed(Item(item_id, kind, ids), self.user_data(mapping(item.get("UserData"))))

    @staticmethod
    def user_data(data: dict[str, Any]) -> UserData:
        played = bool(boolean(data.get("Played")))
        return UserData(
            played=played,
            viewed_at=parse_date(data.get("LastPlayedDate")) if played else None,
            rating=api_rating(number(data.get("Rating"))),
            in_progress=(integer(data.get("PlaybackPositionTicks")) or 0) > 0,
        )

    async def close(self) -> None:
        return None


def webhook_users(user: Any, *ids: Any) -> tuple[str, ...]:
    """Every name a webhook gives its user by (an object ``{"Id", "Name"}`` and/or loose ids)."""
    names = []
    holder = mapping(user)
    for value in (holder.get("Id"), holder.get("Name"), *ids):
        if isinstance(value, str) and value.strip():
            names.append(value.strip())
            names.append(value.strip().replace("-", "").lower())
    return tuple(dict.fromkeys(names))
