"""Domain errors: a rule of the model refuses a command. Pure.

One root, :class:`DomainError`. Each refusal has a stable ``code`` (the one the HTTP API
reports); the HTTP edge maps every class to problem details in one table
(``services.http.errors``), and any other edge (the CLI, a connector) can report the code
and the message as they are. Per-item outcomes of a batch are not errors: a watch action
that is not recorded is a :class:`~projections.domain.actions.Rejected` value.
"""

from __future__ import annotations

from typing import ClassVar


class DomainError(Exception):
    """The command breaks a rule of the domain."""

    code: ClassVar[str] = "conflict"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.__doc__)

    @property
    def message(self) -> str:
        return str(self)


# -- accounts ---------------------------------------------------------------------------------


class AccountExists(DomainError):
    """An account with that id exists already."""

    code = "account_exists"


class UnknownAccount(DomainError):
    """There is no account with that id."""

    code = "not_found"


class ManagedAccount(DomainError):
    """A managed account cannot turn sync on."""

    code = "managed_account"


class AccountBusy(DomainError):
    """The account kept changing while the command was decided on it; try again."""

    code = "conflict"


# -- servers ----------------------------------------------------------------------------------


class UnknownServer(DomainError):
    """There is no server with that id."""

    code = "not_found"


class UnknownOwner(DomainError):
    """The account named to own a server does not exist."""

    code = "invalid_request"


class NotAServerVersion(DomainError):
    """The version is not a media server version (such as 1.32.5.7349)."""

    code = "invalid_request"


class ServerTooOld(DomainError):
    """The server is older than the first version that syncs watch state."""

    code = "server_too_old"


class ServerExists(DomainError):
    """A server with that id is registered already."""

    code = "server_exists"


class OwnerKeepsAccess(DomainError):
    """A server's owner always has access to it: it cannot be revoked."""

    code = "invalid_request"


class CannotLeaveOwnServer(DomainError):
    """An account cannot leave a server it owns."""

    code = "invalid_request"


class CannotFriendSelf(DomainError):
    """An account cannot be its own friend."""

    code = "invalid_request"


class ActivityHidden(DomainError):
    """The account's activity is not visible to the caller (or there is no such account): the
    two look alike, so visibility says nothing about who exists."""

    code = "not_found"
