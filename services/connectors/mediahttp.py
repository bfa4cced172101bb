"""HTTP calls to a media server, with its failures sorted once: worth another try
(:class:`MediaServerError`) or not (:class:`MediaServerRefused`)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import msgspec

from .model import MediaServerError, MediaServerRefused

TIMEOUT = aiohttp.ClientTimeout(total=60, sock_connect=10)


async def call(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str],
    params: Mapping[str, str] | None = None,
    json: Any = None,
) -> Any:
    """The decoded JSON answer (None for an empty body). The path alone goes in messages: a
    query may hold a token."""
    path = _shape(url)
    try:
        async with http.request(
            method,
            url,
            headers=headers,
            params=params,
            data=None if json is None else msgspec.json.encode(json),
            timeout=TIMEOUT,
        ) as response:
            content = await response.read()
            if response.status >= 500 or response.status == 429:
                raise MediaServerError(f"{method} {path}: {response.status}")
            if response.status >= 400:
                raise MediaServerRefused(f"{method} {path}: {response.status}", response.status)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise MediaServerError(f"{method} {path}: {type(exc).__name__} {exc}") from exc
    if not content.strip():
        return None
    try:
        return msgspec.json.decode(content)
    except msgspec.DecodeError:
        raise MediaServerError(f"{method} {path}: the answer is not JSON") from None


def _shape(url: str) -> str:
    """A URL's path with its ids taken out (``/Users/{id}/PlayedItems/{id}``): a message must
    not pair a user with an item, and the query may hold a token."""
    path = urlsplit(url).path
    return re.sub(r"/[^/]*[0-9][^/]*", "/{id}", path)


def mapping(value: Any) -> dict[str, Any]:
    """``value`` if it is a JSON object, else an empty one (a server's answer is not trusted
    to have the shape its documents say)."""
    return value if isinstance(value, dict) else {}


def listing(value: Any) -> list[dict[str, Any]]:
    """The objects of a JSON array (anything else in it, or a non-array, is skipped)."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def integer(value: Any) -> int | None:
    """An integer a server sent as a number or as its text (templates render numbers as text)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def number(value: Any) -> float | None:
    """A number sent as a number or as its text."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def boolean(value: Any) -> bool | None:
    """A boolean sent as one, or as text (``"True"``, ``"false"``: C#'s ToString in templates)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
    return None
