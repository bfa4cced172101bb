"""Emby Server (its OpenAPI document in ``Emby.SDK``: ``Resources/OpenApi/openapi_v3.json``).

* The API key goes in ``X-Emby-Token``; users are ``GET /Users/Query`` (the document has no
  ``GET /Users``); a user's items are ``GET /Users/{UserId}/Items``; query names PascalCase.
  Checked against Emby.SDK 58acc58a (4.8.11.0).
* Played: ``POST /Users/{UserId}/PlayedItems/{Id}?DatePlayed=yyyyMMddHHmmss`` (whole seconds, UTC);
  unplayed: ``DELETE`` on the same path. A numeric rating is user data: ``POST
  /Users/{UserId}/Items/{ItemId}/UserData`` with the whole ``UserItemDataDto`` (its flags are not
  optional, so the current values go with the new rating).
* Webhooks (Emby Premiere): 4.7-4.8 post the JSON as form field ``data``, 4.9 a multipart part
  ``data`` or raw JSON; ``item.markplayed``, ``item.markunplayed``, ``item.rate`` and
  ``playback.stop`` (completed only, ``PlaybackInfo.PlayedToCompletion``) matter;
  ``system.notificationtest`` carries nothing (before 4.9.0.37 no data at all).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from .mediabrowser import MediaBrowserServer, json_body, parse_date, webhook_users
from .mediahttp import boolean, listing, mapping
from .model import Hook, MediaUser

_CHECKS = {"item.markplayed", "item.markunplayed", "item.rate"}


def date_played(at: datetime) -> str:
    """``DatePlayed`` as Emby takes it: ``yyyyMMddHHmmss``, UTC."""
    return at.astimezone(UTC).strftime("%Y%m%d%H%M%S")


class EmbyServer(MediaBrowserServer):
    kind = "emby"

    def _headers(self) -> dict[str, str]:
        return {"X-Emby-Token": self._token.reveal(), "Accept": "application/json"}

    def _items_path(self, user: MediaUser) -> tuple[str, dict[str, str]]:
        return f"/Users/{user.key}/Items", {}

    async def _user_list(self) -> list[dict[str, Any]]:
        # The document has no GET /Users: GET /Users/Query answers a QueryResult<UserDto>.
        return listing(mapping(await self._call("GET", "/Users/Query")).get("Items"))

    async def mark_played(self, user: MediaUser, item_id: str, at: datetime | None) -> None:
        params = {} if at is None else {"DatePlayed": date_played(at)}
        await self._call("POST", f"/Users/{user.key}/PlayedItems/{item_id}", params)

    async def mark_unplayed(self, user: MediaUser, item_id: str) -> None:
        await self._call("DELETE", f"/Users/{user.key}/PlayedItems/{item_id}")

    async def rate(
        self, user: MediaUser, item_id: str, rating: int | None, at: datetime | None = None
    ) -> None:
        page = mapping(await self._call_items(user, {"Ids": item_id}))
        items = page.get("Items")
        current = mapping(items[0].get("UserData")) if isinstance(items, list) and items else {}
        body: dict[str, object] = {
            "Played": bool(boolean(current.get("Played"))),
            "IsFavorite": bool(boolean(current.get("IsFavorite"))),
            "PlaybackPositionTicks": current.get("PlaybackPositionTicks", 0),
            "PlayCount": current.get("PlayCount", 0),
            "Rating": None if rating is None else float(rating),
        }
        if "LastPlayedDate" in current:
            body["LastPlayedDate"] = current["LastPlayedDate"]
        await self._call("POST", f"/Users/{user.key}/Items/{item_id}/UserData", json=body)

    def hooks(self, body: bytes, content_type: str) -> list[Hook]:
        payload = json_body(body, content_type)
        event = payload.get("Event")
        item = mapping(payload.get("Item"))
        if event == "playback.stop":
            info = mapping(payload.get("PlaybackInfo"))
            if boolean(info.get("PlayedToCompletion")) is not True:
                return []  # stopped short: progress, not a watch
        elif event == "library.new":
            item_id = str(item.get("Id") or "")
            return [Hook((), item_id, "added")] if item_id else []
        elif event not in _CHECKS:
            return []  # the test event, playback start/pause, users, system
        if str(item.get("Type", "")).lower() not in ("movie", "episode"):
            return []
        item_id = str(item.get("Id") or "")
        if not item_id:
            return []
        played = boolean(mapping(item.get("UserData")).get("Played"))
        return [
            Hook(
                webhook_users(payload.get("User")),
                item_id,
                at=parse_date(payload.get("Date")),
                played=played if event in ("item.markplayed", "item.markunplayed") else None,
                about_rating=event == "item.rate",
            )
        ]
