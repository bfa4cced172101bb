"""Jellyfin (its OpenAPI document; 10.9 and later) and its Webhook plugin.

* The API key goes in ``Authorization: MediaBrowser Token="…"``; users are ``GET /Users``; a
  user's items are ``GET /Items?userId=…`` with user data and ``ProviderIds``. Query names are
  the document's camelCase (``startIndex``, ``includeItemTypes``…); checked against the 10.11.8
  document (jellyfin-sdk-kotlin 556b6238: operations GetUsers, GetItems, MarkPlayedItem,
  MarkUnplayedItem, UpdateItemUserData, DeleteUserItemRating).
* Played: ``POST /UserPlayedItems/{itemId}?userId=&datePlayed=<ISO 8601>``; unplayed:
  ``DELETE`` on the same path. A rating: ``POST /UserItems/{itemId}/UserData?userId=`` with
  ``{"Rating": n}`` (an update: fields left out stay); cleared with ``DELETE
  /UserItems/{itemId}/Rating?userId=``.
* The Webhook plugin's Generic destination posts what its template renders, often as
  ``text/plain``, with templated booleans as text (``"True"``). There is no "marked played"
  event: ``UserDataSaved`` comes with ``SaveReason`` ``TogglePlayed`` (and for every progress
  save), so only a change of ``Played`` counts; ``PlaybackStop`` with ``PlayedToCompletion``;
  ``ItemAdded`` marks an item new (a replaced file looks unplayed: not an unwatched). Events
  may carry no user.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from .mediabrowser import MediaBrowserServer, json_body, parse_date, webhook_users
from .mediahttp import boolean, listing
from .model import Hook, MediaUser

# SaveReasons that can change what a watch state holds (the rest are progress saves).
_STATE_REASONS = {
    "TogglePlayed",
    "PlaybackFinished",
    "UpdateUserRating",
    "UpdateUserData",
    "Import",
}


class JellyfinServer(MediaBrowserServer):
    kind = "jellyfin"

    def _headers(self) -> dict[str, str]:
        return {
            "Authorization": f'MediaBrowser Token="{self._token.reveal()}", Client="watchledger"',
            "Accept": "application/json",
        }

    def _items_path(self, user: MediaUser) -> tuple[str, dict[str, str]]:
        return "/Items", {"userId": user.key}

    async def _user_list(self) -> list[dict[str, Any]]:
        return listing(await self._call("GET", "/Users"))  # GetUsers: a UserDto array

    @staticmethod
    def _query_names(params: dict[str, str]) -> dict[str, str]:
        return {name[:1].lower() + name[1:]: value for name, value in params.items()}

    async def mark_played(self, user: MediaUser, item_id: str, at: datetime | None) -> None:
        params = {"userId": user.key}
        if at is not None:
            params["datePlayed"] = at.astimezone(UTC).isoformat().replace("+00:00", "Z")
        await self._call("POST", f"/UserPlayedItems/{item_id}", params)

    async def mark_unplayed(self, user: MediaUser, item_id: str) -> None:
        await self._call("DELETE", f"/UserPlayedItems/{item_id}", {"userId": user.key})

    async def rate(
        self, user: MediaUser, item_id: str, rating: int | None, at: datetime | None = None
    ) -> None:
        if rating is None:
            await self._call("DELETE", f"/UserItems/{item_id}/Rating", {"userId": user.key})
        else:
            await self._call(
                "POST",
                f"/UserItems/{item_id}/UserData",
                {"userId": user.key},
                json={"Rating": float(rating)},
            )

    def hooks(self, body: bytes, content_type: str) -> list[Hook]:
        payload = json_body(body, content_type)
        kind = payload.get("NotificationType")
        item_id = _n_form(payload.get("ItemId"))
        if not item_id:
            return []
        if kind == "ItemAdded":
            return [Hook((), item_id, "added")]
        if str(payload.get("ItemType", "Movie")).lower() not in ("movie", "episode"):
            return []
        users = webhook_users(None, payload.get("UserId"), payload.get("NotificationUsername"))
        at = _when(payload)
        if kind == "PlaybackStop":
            if boolean(payload.get("PlayedToCompletion")) is not True:
                return []  # stopped short: progress, not a watch
            return [Hook(users, item_id, at=at)]
        if kind == "UserDataSaved":
            reason = payload.get("SaveReason") or None  # a template renders a missing key as ""
            if reason is not None and reason not in _STATE_REASONS:
                return []
            return [
                Hook(
                    users,
                    item_id,
                    at=at,
                    played=boolean(payload.get("Played")),
                    about_rating=reason in ("UpdateUserRating", "UpdateUserData", None),
                )
            ]
        return []


def _n_form(value: Any) -> str:
    """An id as the API writes it (32 hex digits): templates render Guids with dashes."""
    text = str(value or "").strip()
    try:
        return uuid.UUID(text).hex
    except ValueError:
        return text


def _when(payload: dict[str, Any]) -> datetime | None:
    return parse_date(payload.get("UtcTimestamp")) or parse_date(payload.get("Timestamp"))
