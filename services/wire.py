"""Every request and response body of the HTTP API, as msgspec structs.

These types are the contract's single source: handlers decode and encode with them, and the
OpenAPI document (``GET /v1/openapi.json``) is generated from them.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec

from projections.domain import AccountKind, ActionType, Visibility

Timestamp = Annotated[
    datetime, msgspec.Meta(tz=True, description="RFC 3339; outputs are UTC with Z")
]
Limit = Annotated[int, msgspec.Meta(ge=1, le=1000, description="page size (default 100)")]
MAX_BATCH = 1000


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


# -- accounts ---------------------------------------------------------------------------------


class CreateAccount(msgspec.Struct, forbid_unknown_fields=True):
    id: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    kind: AccountKind
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class CreatedAccount(msgspec.Struct):
    id: str
    kind: AccountKind
    name: str
    token: Annotated[str, msgspec.Meta(description="bearer token; shown only here")]


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
    guid: str
    at: Timestamp | None = None
    rating: int | None = None
    id: Annotated[
        uuid.UUID | None, msgspec.Meta(description="client id: the same id is a duplicate")
    ] = None


class Actions(msgspec.Struct, forbid_unknown_fields=True):
    actions: list[Action]


class Recorded(msgspec.Struct, tag_field="status", tag="recorded"):
    position: int


class Duplicate(msgspec.Struct, tag_field="status", tag="duplicate"):
    pass


RejectionCode = Literal[
    "unknown_account",
    "managed_account",
    "no_access",
    "sync_disabled",
    "music_not_synced",
    "unsupported_guid",
    "edition_not_synced",
    "in_progress_not_synced",
    "invalid_rating",
    "at_in_future",
]


class Rejected(msgspec.Struct, tag_field="status", tag="rejected"):
    code: RejectionCode


Result = Recorded | Duplicate | Rejected


class Results(msgspec.Struct):
    results: list[Result]


# -- state and history ------------------------------------------------------------------------


class State(msgspec.Struct):
    guid: str
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


class HistoryItem(msgspec.Struct):
    id: uuid.UUID
    guid: str
    type: Literal["watched", "unwatched"]
    at: datetime


class HistoryPage(msgspec.Struct):
    items: list[HistoryItem]
    next_cursor: str | None


class HistoryQuery(msgspec.Struct, forbid_unknown_fields=True):
    guid: str | None = None
    limit: Limit = 100
    cursor: str | None = None


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
    after: Annotated[int, msgspec.Meta(ge=0)] = 0
    limit: Limit = 100
    cursor: str | None = None


class ProjectionStatus(msgspec.Struct):
    name: str
    position: int
    head: int
    lag: Annotated[int, msgspec.Meta(description="events not yet applied")]


class ProjectionStatusList(msgspec.Struct):
    items: list[ProjectionStatus]


# -- servers ----------------------------------------------------------------------------------

ServerId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9._:-]{1,128}$")]


class CreateServer(msgspec.Struct, forbid_unknown_fields=True):
    id: Annotated[ServerId, msgspec.Meta(description="the server's machine identifier")]
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    version: Annotated[str, msgspec.Meta(description="at least 1.27.2", max_length=64)]
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
    items: list[ServerSummary]


class ServerEvent(msgspec.Struct, forbid_unknown_fields=True):
    account: str
    type: Literal["watched", "unwatched", "rated", "unrated", "progress"]
    guid: str
    at: Timestamp | None = None
    rating: int | None = None
    edition: str | None = None
    baseline: bool = False


class ServerEvents(msgspec.Struct, forbid_unknown_fields=True):
    events: list[ServerEvent]


class StateChange(msgspec.Struct, tag_field="kind", tag="state"):
    """A title's current state for the account when delivered (all null: no state)."""

    account: str
    guid: str
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
