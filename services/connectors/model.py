"""What every connector shares: items and their user data as the media server tells them, the
title ids they map to (product rule 1), webhooks reduced to what matters, and the port each
media server's adapter implements."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import UTC, datetime
from typing import Literal, Protocol

import msgspec

from projections.domain.titles import MAX_IDS, GuidRejected, parse_id, shown_order

from .config import Secret

ItemKind = Literal["movie", "episode"]
# What a webhook says: a watch change may have happened to the item (read it again), or the
# item is new to the library (an unplayed then is not an unwatched: Jellyfin's "date scanned").
HookEvent = Literal["check", "added"]


class ConnectorError(Exception):
    """A connector failed."""


class MediaServerError(ConnectorError):
    """The media server could not be reached, or failed (5xx): worth another try."""


class MediaServerRefused(ConnectorError):
    """The media server refused a request (4xx): another try would get the same."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class BadWebhook(ConnectorError):
    """A webhook body that is not what the media server sends; the message says why."""


class Item(msgspec.Struct, frozen=True):
    """A movie or an episode in the media server's library, by its title ids (the first is the
    one sent as ``guid``). ``edition``: a Plex movie's edition (not synced, rule 1)."""

    item_id: str
    kind: ItemKind
    ids: tuple[str, ...]
    edition: str | None = None


class UserData(msgspec.Struct, frozen=True):
    """One user's data for one item, as the server keeps it (ratings on the API's 1-10)."""

    played: bool
    viewed_at: datetime | None = None  # the most recent viewing, if the server keeps one
    rating: int | None = None
    rated_at: datetime | None = None
    # Part-way through a playback (a resume point): Jellyfin unplays a watched video when it is
    # played again, which is progress, not an unwatched.
    in_progress: bool = False


class Observed(msgspec.Struct, frozen=True):
    item: Item
    data: UserData


class Hook(msgspec.Struct, frozen=True):
    """What one webhook says, reduced: about which item, for which user (every name the payload
    gives them by; none: the server sent no user), and when (if it says)."""

    users: tuple[str, ...]
    item_id: str
    event: HookEvent = "check"
    at: datetime | None = None
    # The played flag the payload carries, if any: when it equals what was last seen and the
    # webhook is not about a rating, nothing changed (Jellyfin saves user data on every
    # progress report).
    played: bool | None = None
    about_rating: bool = False


class MediaUser(msgspec.Struct, frozen=True):
    """A user that syncs: ``key`` is their id on the server, ``names`` every name a webhook may
    call them by, ``account`` the watchledger account."""

    key: str
    names: frozenset[str]
    account: str
    token: Secret | None = None


class MediaServer(Protocol):
    """A media server, as a connector uses it. Reads and writes raise
    :class:`MediaServerError` (transient) or :class:`MediaServerRefused`."""

    kind: str
    # Whether marking an item played can say when it was watched (Plex's cannot).
    takes_play_date: bool

    async def identify(self) -> str:
        """The server's name and version, for the start-up log; raises if the token is
        refused."""
        ...

    async def users(self, configured: Sequence[tuple[str, str, Secret | None]]) -> list[MediaUser]:
        """The configured (media_user, account, token) users as the server knows them; raises
        :class:`MediaServerRefused` naming one the server does not know."""
        ...

    def scan(self, user: MediaUser) -> AsyncIterator[list[Observed]]:
        """Every movie and episode the user can see, with their data, a page at a time."""
        ...

    async def read(self, user: MediaUser, item_id: str) -> Observed | None:
        """One item with the user's data; None if the server has no such item (or it is not a
        movie or an episode)."""
        ...

    async def mark_played(self, user: MediaUser, item_id: str, at: datetime | None) -> None: ...

    async def mark_unplayed(self, user: MediaUser, item_id: str) -> None: ...

    async def rate(
        self, user: MediaUser, item_id: str, rating: int | None, at: datetime | None = None
    ) -> None:
        """Set the user's rating (1-10), or clear it (None); ``at``: when it was set, for a
        server that keeps a rating's time."""
        ...

    def hooks(self, body: bytes, content_type: str) -> list[Hook]:
        """The watch-relevant content of one webhook request (often none); raises
        :class:`BadWebhook`."""
        ...

    async def close(self) -> None: ...


def title_ids(
    kind: ItemKind,
    own: Iterable[str],
    show: Iterable[str] = (),
    numbers: tuple[int, int] | None = None,
) -> tuple[str, ...]:
    """An item's title ids as watchledger takes them: its own ids that are of its kind and of
    a synced form, and for an episode each of its show's ids with its season and episode
    numbers; in shown order (the first is the ``guid``), at most 1 + MAX_IDS."""
    found: list[str] = []
    for text in own:
        normalised = _valid(text, kind)
        if normalised:
            found.append(normalised)
    if kind == "episode" and numbers is not None and min(numbers) >= 0:
        season, episode = numbers
        for text in show:
            normalised = _valid(f"{text}/s{season}e{episode}", "episode")
            if normalised and _valid(text, "show"):
                found.append(normalised)
    return tuple(shown_order(found)[: 1 + MAX_IDS])


def _valid(text: str, kind: str) -> str | None:
    try:
        parsed_kind, normalised = parse_id(text)
    except GuidRejected:
        return None
    return normalised if parsed_kind == kind else None


# The external id schemes a title is named by (rule 1), as Plex's Guid list and Jellyfin's and
# Emby's ProviderIds name them (any casing).
EXTERNAL_SCHEMES = frozenset({"imdb", "tmdb", "tvdb"})


def external_id(scheme: str, kind: str, value: object) -> str:
    """``imdb://movie/tt0111161`` from a provider's scheme, the item's kind and its value
    (whether that is a synced form is for :func:`title_ids` to say)."""
    return f"{scheme}://{kind}/{str(value).strip()}"


def api_rating(value: float | None) -> int | None:
    """A server's 0-10 rating (halves allowed) on the API's 1-10: rounded half up; 0, a
    negative value or none is no rating."""
    if value is None or not math.isfinite(value) or value <= 0:
        return None
    return max(1, min(10, math.floor(value + 0.5)))


def from_unix(seconds: float | int | None) -> datetime | None:
    """A Unix time as an aware datetime; None for none, zero or a value out of range."""
    if not seconds or seconds <= 0:
        return None
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return None
