"""Every request and response body of the HTTP API, as msgspec structs.

These types are the contract's single source: handlers decode and encode with them, and the
OpenAPI document (``GET /v1/openapi.json``) is generated from them.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Literal

import msgspec

from projections.domain import SERVER_ID, AccountKind, ActionType, RejectionCode, Visibility
from services.commands import actions

Timestamp = Annotated[
    datetime,
    msgspec.Meta(
        tz=True,
        description="RFC 3339 with an offset; in UTC it must fall in years 1-9999. Outputs are "
        "UTC with Z",
    ),
]
Limit = Annotated[int, msgspec.Meta(ge=1, le=1000, description="page size (default 100)")]
MAX_BATCH = 1000
# The largest position, sequence number or other bigint the database holds.
MAX_BIGINT = 2**63 - 1
# Free text that is stored (names, versions): no control characters, which also keeps out the
# NUL that PostgreSQL text cannot hold.
_TEXT = r"^[^\x00-\x1f\x7f]*$"


def storable(text: str) -> bool:
    """Whether PostgreSQL text can hold ``text``: no NUL, nothing that is not UTF-8."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def utc(at: datetime | None, field: str) -> datetime | None:
    """``at`` in UTC (as stored and compared); a ValueError naming ``field`` when the offset
    moves it outside years 1-9999."""
    if at is None:
        return None
    try:
        return at.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"`{field}`: outside years 1-9999 once in UTC") from None


GUID_DESCRIPTION = (
    "The title's id. Synced: `plex://movie|show|season|episode/<24 hex>`; "
    "`imdb://<kind>/tt<digits>`, `tmdb://<kind>/<digits>`, `tvdb://<kind>/<digits>` (kind "
    "`movie`, `show` or `episode`); an episode by its show and numbers, "
    "`<show id>/s<season>e<episode>` (no leading zeros; season 0: specials). Music ids "
    "(`plex://artist|album|track/...`) are rejected as `music_not_synced`; any other form "
    "(legacy agents such as `com.plexapp.agents.imdb://...`, `local://...`, malformed) as "
    "`unsupported_guid`."
)
IDS_DESCRIPTION = (
    "More ids of the same title (forms as `guid`; at most 8; the `guid` again is allowed): "
    "for this account, ids sent together name one title. Ids of different kinds of title "
    "are rejected as `conflicting_ids`."
)
MAX_IDS = 8
SHOWN_GUID_DESCRIPTION = (
    "The title's id as shown: the first of its `ids` in the order plex, imdb, tmdb, tvdb, "
    "episode-by-numbers ids, then by text. For this account, ids that came together in one "
    "action name one title, and titles sharing an id are one."
)
TITLE_IDS_DESCRIPTION = "Every id of the title, in that order (`guid` first)."
CLIENT_ID_DESCRIPTION = (
    "Your id for this action (a UUID). Send one to make retries safe: an action with an id "
    "already recorded is a `duplicate`, even if its other fields differ. Without one, an "
    "action with the same type, time (to the whole second) and rating as a recorded one, "
    "naming the title by any id the recorded one also named, is the duplicate."
)


class Problem(msgspec.Struct, omit_defaults=True):
    """An error (RFC 9457 problem details) with a stable snake_case ``code``."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    errors: list[FieldError] | None = None


class FieldError(msgspec.Struct):
    """One invalid field: a JSON path (``$.actions[0].at``) or query parameter name."""

    field: str
    message: str


class Status(msgspec.Struct):
    status: str


class Health(msgspec.Struct):
    status: str
    version: Annotated[str, msgspec.Meta(description="the release this process runs")]


# -- accounts ---------------------------------------------------------------------------------


class CreateAccount(msgspec.Struct, forbid_unknown_fields=True):
    id: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    kind: AccountKind
    name: Annotated[
        str,
        msgspec.Meta(
            min_length=1, max_length=200, pattern=_TEXT, description="no control characters"
        ),
    ]


class CreatedAccount(msgspec.Struct):
    id: str
    kind: AccountKind
    name: str
    token: Annotated[str, msgspec.Meta(description="bearer token; shown only here")]


class NewToken(msgspec.Struct):
    token: Annotated[
        str,
        msgspec.Meta(
            description="the new bearer token, shown only here; the old one no longer works"
        ),
    ]


class Counts(msgspec.Struct):
    movies: int
    episodes: int


class Me(msgspec.Struct):
    id: str
    kind: AccountKind
    name: str
    sync_enabled: bool
    visibility: Visibility
    counts: Counts


class PatchMe(msgspec.Struct, forbid_unknown_fields=True):
    sync_enabled: bool | msgspec.UnsetType = msgspec.UNSET
    visibility: Visibility | msgspec.UnsetType = msgspec.UNSET


# -- actions ----------------------------------------------------------------------------------


class Action(msgspec.Struct, forbid_unknown_fields=True):
    type: ActionType
    guid: Annotated[str, msgspec.Meta(description=GUID_DESCRIPTION)]
    ids: Annotated[list[str], msgspec.Meta(max_length=MAX_IDS, description=IDS_DESCRIPTION)] = (
        msgspec.field(default_factory=list)
    )
    at: Annotated[
        Timestamp | None,
        msgspec.Meta(description="when the action was set (omitted: now); not over 5 min ahead"),
    ] = None
    rating: Annotated[
        int | None, msgspec.Meta(description="1-10 (10 = five stars): for `rated` only")
    ] = None
    id: Annotated[uuid.UUID | None, msgspec.Meta(description=CLIENT_ID_DESCRIPTION)] = None

    def __post_init__(self) -> None:
        self.at = utc(self.at, "at")


class Actions(msgspec.Struct, forbid_unknown_fields=True):
    actions: list[Action]


class Recorded(msgspec.Struct, tag_field="status", tag="recorded"):
    position: int


class Duplicate(msgspec.Struct, tag_field="status", tag="duplicate"):
    pass


class Rejected(msgspec.Struct, tag_field="status", tag="rejected"):
    code: RejectionCode


Result = Recorded | Duplicate | Rejected


def result(outcome: actions.Outcome) -> Result:
    """The wire form of an action's outcome."""
    if isinstance(outcome, actions.Recorded):
        return Recorded(outcome.position)
    if isinstance(outcome, actions.Duplicate):
        return Duplicate()
    return Rejected(outcome.code)


class Results(msgspec.Struct):
    results: list[Result]


# -- state and history ------------------------------------------------------------------------


class State(msgspec.Struct):
    guid: Annotated[str, msgspec.Meta(description=SHOWN_GUID_DESCRIPTION)]
    ids: Annotated[list[str], msgspec.Meta(description=TITLE_IDS_DESCRIPTION)]
    watched: bool
    watched_at: datetime | None
    rating: int | None
    rated_at: datetime | None
    updated_at: datetime


class StatePage(msgspec.Struct):
    items: list[State]
    next_cursor: str | None


class StateQuery(msgspec.Struct, forbid_unknown_fields=True):
    watched: bool | None = None
    kind: Literal["movie", "show", "season", "episode"] | None = None
    updated_after: Timestamp | None = None
    limit: Limit = 100
    cursor: str | None = None

    def __post_init__(self) -> None:
        self.updated_after = utc(self.updated_after, "updated_after")


class HistoryItem(msgspec.Struct):
    id: uuid.UUID
    guid: Annotated[
        str,
        msgspec.Meta(
            description="The title's id as shown (see `State.guid`), whichever id the "
            "action named it by."
        ),
    ]
    type: Literal["watched", "unwatched"]
    at: datetime


class HistoryPage(msgspec.Struct):
    items: list[HistoryItem]
    next_cursor: str | None


class HistoryQuery(msgspec.Struct, forbid_unknown_fields=True):
    guid: Annotated[
        str | None,
        msgspec.Meta(description="Only this title's records: any id of the title."),
    ] = None
    limit: Limit = 100
    cursor: str | None = None


class FriendList(msgspec.Struct):
    friends: Annotated[list[str], msgspec.Meta(description="both sides asked: friends")]
    incoming: Annotated[list[str], msgspec.Meta(description="asked me; I have not answered")]
    outgoing: Annotated[list[str], msgspec.Meta(description="I asked; they have not answered")]


class Activity(msgspec.Struct):
    id: uuid.UUID
    actor: str
    type: Literal["watched", "rated"]
    guid: str
    rating: Annotated[int | None, msgspec.Meta(description="1-10 when rated, else null")]
    at: datetime


class ActivityPage(msgspec.Struct):
    items: list[Activity]
    next_cursor: str | None


class ActivityQuery(msgspec.Struct, forbid_unknown_fields=True):
    limit: Limit = 100
    cursor: str | None = None


class DeleteQuery(msgspec.Struct, forbid_unknown_fields=True):
    # Only "true" confirms: anything else (absent, "false", "yes") is refused.
    confirm: str | None = None


class Deleted(msgspec.Struct):
    deleted: int


# -- operator ---------------------------------------------------------------------------------


class LogEvent(msgspec.Struct):
    position: int
    stream: str
    type: str
    data: Annotated[msgspec.Raw, msgspec.Meta(description="the event's JSON body")]
    recorded_at: datetime


class LogEventPage(msgspec.Struct):
    items: list[LogEvent]
    next_cursor: str | None


class EventsQuery(msgspec.Struct, forbid_unknown_fields=True):
    after: Annotated[int, msgspec.Meta(ge=0, le=MAX_BIGINT)] = 0
    limit: Limit = 100
    cursor: str | None = None


class ProjectionStatus(msgspec.Struct):
    name: str
    position: int
    head: int
    lag: Annotated[int, msgspec.Meta(description="events not yet applied")]
    dead_letters: Annotated[
        int,
        msgspec.Meta(
            description="events it could not apply (poison events), kept with their error in "
            "the table projection_dead_letters; it moved on past them"
        ),
    ] = 0


class ProjectionStatusList(msgspec.Struct):
    items: list[ProjectionStatus]


# -- servers ----------------------------------------------------------------------------------

ServerId = Annotated[str, msgspec.Meta(pattern=SERVER_ID.pattern)]


class CreateServer(msgspec.Struct, forbid_unknown_fields=True):
    id: Annotated[ServerId, msgspec.Meta(description="the server's machine identifier")]
    name: Annotated[
        str,
        msgspec.Meta(
            min_length=1, max_length=200, pattern=_TEXT, description="no control characters"
        ),
    ]
    version: Annotated[
        str, msgspec.Meta(description="at least 1.27.2", max_length=64, pattern=_TEXT)
    ]
    owner: Annotated[
        str | None, msgspec.Meta(description="the owning account: required for the operator")
    ] = None


class CreatedServer(msgspec.Struct):
    id: str
    owner: str
    name: str
    version: str
    token: Annotated[str, msgspec.Meta(description="the server's bearer token; shown only here")]


class ServerInfo(msgspec.Struct):
    id: str
    owner: str
    name: str
    version: str
    accounts: Annotated[list[str], msgspec.Meta(description="accounts with access, owner included")]


class ServerSummary(msgspec.Struct):
    id: str
    name: str
    owner: str
    version: str


class ServerList(msgspec.Struct):
    items: Annotated[
        list[ServerSummary],
        msgspec.Meta(description="servers with access to me: owned, or shared and accepted"),
    ]
    offers: Annotated[list[ServerSummary], msgspec.Meta(description="shares waiting for my answer")]


class ServerEvent(msgspec.Struct, forbid_unknown_fields=True):
    account: str
    type: Literal["watched", "unwatched", "rated", "unrated", "progress"]
    guid: Annotated[str, msgspec.Meta(description=GUID_DESCRIPTION)]
    ids: Annotated[list[str], msgspec.Meta(max_length=MAX_IDS, description=IDS_DESCRIPTION)] = (
        msgspec.field(default_factory=list)
    )
    at: Annotated[
        Timestamp | None,
        msgspec.Meta(description="when the action was set (omitted: now); not over 5 min ahead"),
    ] = None
    rating: int | None = None
    edition: Annotated[
        str | None, msgspec.Meta(description="a movie's edition: not synced when set")
    ] = None
    baseline: Annotated[
        bool,
        msgspec.Meta(
            description="a baseline record (answering a baseline_request): starts a title's "
            "history only if it has none"
        ),
    ] = False

    def __post_init__(self) -> None:
        self.at = utc(self.at, "at")


class ServerEvents(msgspec.Struct, forbid_unknown_fields=True):
    events: list[ServerEvent]


class StateChange(msgspec.Struct, tag_field="kind", tag="state"):
    """A title's current state for the account when delivered (all null: no state)."""

    account: str
    guid: Annotated[str, msgspec.Meta(description=SHOWN_GUID_DESCRIPTION)]
    ids: Annotated[list[str], msgspec.Meta(description=TITLE_IDS_DESCRIPTION)]
    watched: bool | None
    watched_at: datetime | None
    rating: int | None
    rated_at: datetime | None


class BaselineRequest(msgspec.Struct, tag_field="kind", tag="baseline_request"):
    """Upload a baseline for this account: one record per title watched or rated."""

    account: str


Change = StateChange | BaselineRequest


class Changes(msgspec.Struct):
    changes: list[Change]
    cursor: Annotated[str, msgspec.Meta(description="pass it next time: acknowledges these")]


class ChangesQuery(msgspec.Struct):
    cursor: str | None = None
    limit: Limit = 100
    wait: Annotated[float, msgspec.Meta(ge=0, le=60, description="seconds to hold (0-60)")] = 0
