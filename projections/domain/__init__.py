"""The pure model: title ids, the events of the log, the account as a fold, and the decisions
made on it. No I/O, no HTTP.

* :mod:`.titles` — which titles sync (product rule 1).
* :mod:`.events` — the events of the log and their streams.
* :mod:`.account` — the account aggregate, folded from its stream.
* :mod:`.access` — decisions on servers shared with an account (rule 3).
* :mod:`.actions` — what a watch action becomes: an event, or a rejection.
* :mod:`.settings` — decisions on an account's settings.
* :mod:`.servers` — decisions on media servers' registration.
* :mod:`.deletions` — deleting watch history, or watch state and ratings (rules 10, 11).
* :mod:`.errors` — the refusals of commands (one root, :class:`DomainError`).
"""

from .access import NoOffer, accept_access, leave_access, offer_access, withdraw_access
from .account import ACCOUNT_FOLD_VERSION, Account, evolve, fold_account
from .actions import (
    FUTURE_TOLERANCE,
    Rejected,
    RejectionCode,
    ReportedAction,
    ReportedType,
    decide_action,
    decide_server_action,
)
from .deletions import Deletion, SyncEnabled, delete_history, delete_state
from .errors import (
    AccountBusy,
    AccountExists,
    CannotLeaveOwnServer,
    DomainError,
    ManagedAccount,
    NotAServerVersion,
    OwnerKeepsAccess,
    ServerExists,
    ServerTooOld,
    UnknownAccount,
    UnknownOwner,
    UnknownServer,
)
from .events import (
    ACCOUNT_ID,
    SERVER_ID,
    TOMBSTONES,
    UNRATED_ACTIONS,
    AccessAccepted,
    AccessDeclined,
    AccessGranted,
    AccessLeft,
    AccessOffered,
    AccessRevoked,
    AccountCreated,
    AccountKind,
    ActionType,
    HistoryDeleted,
    Rated,
    ServerRegistered,
    StateDeleted,
    SyncChanged,
    Unrated,
    Unwatched,
    Visibility,
    VisibilityChanged,
    WatchAction,
    Watched,
    WatchStateKept,
    account_stream,
    natural_event_id,
    registry,
    to_utc,
    watch_stream,
)
from .servers import MIN_SERVER_VERSION, parse_version, register_server
from .settings import change_settings
from .titles import GuidRejected, TitleKind, classify_guid, guid_kind

__all__ = [
    "ACCOUNT_FOLD_VERSION",
    "ACCOUNT_ID",
    "FUTURE_TOLERANCE",
    "MIN_SERVER_VERSION",
    "SERVER_ID",
    "TOMBSTONES",
    "UNRATED_ACTIONS",
    "AccessAccepted",
    "AccessDeclined",
    "AccessGranted",
    "AccessLeft",
    "AccessOffered",
    "AccessRevoked",
    "Account",
    "AccountBusy",
    "AccountCreated",
    "AccountExists",
    "AccountKind",
    "ActionType",
    "CannotLeaveOwnServer",
    "Deletion",
    "DomainError",
    "GuidRejected",
    "HistoryDeleted",
    "ManagedAccount",
    "NoOffer",
    "NotAServerVersion",
    "OwnerKeepsAccess",
    "Rated",
    "Rejected",
    "RejectionCode",
    "ReportedAction",
    "ReportedType",
    "ServerExists",
    "ServerRegistered",
    "ServerTooOld",
    "StateDeleted",
    "SyncChanged",
    "SyncEnabled",
    "TitleKind",
    "UnknownAccount",
    "UnknownOwner",
    "UnknownServer",
    "Unrated",
    "Unwatched",
    "Visibility",
    "VisibilityChanged",
    "WatchAction",
    "WatchStateKept",
    "Watched",
    "accept_access",
    "account_stream",
    "change_settings",
    "classify_guid",
    "decide_action",
    "decide_server_action",
    "delete_history",
    "delete_state",
    "evolve",
    "fold_account",
    "guid_kind",
    "leave_access",
    "natural_event_id",
    "offer_access",
    "parse_version",
    "register_server",
    "registry",
    "to_utc",
    "watch_stream",
    "withdraw_access",
]
