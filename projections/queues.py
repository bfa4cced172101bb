"""The servers' outbound queues (product rule 8): pending items per account, server and title,
coalesced. Folded by the watch state projection as state changes (:mod:`projections.state`),
read and acknowledged by the servers.

The queue is delivery state, not a pure function of the log: what a server acknowledged is not
in the log. A rebuild of the watch state leaves it as it is, and the live fold, catching up from
the rebuild's checkpoint, queues again only what changes; a server may then receive a title's
current state once more, which it applies idempotently.
"""

from __future__ import annotations

from eventstore.queries import load_queries

from .protocol import Op

QUERIES = load_queries("projections", "sql/queues.sql")


def backfill(account: str, server: str | None = None) -> Op:
    """While sync is on, queue the account's whole state and a baseline request for one server
    (None: every server with access)."""
    return Op(QUERIES["queue_backfill"], (account, server))


def drop_account(account: str) -> Op:
    """Drop every pending item of the account (sync turned off)."""
    return Op(QUERIES["queue_drop_account"], (account,))


def drop_server(account: str, server: str) -> Op:
    """Drop the account's pending items for a server that lost access to it."""
    return Op(QUERIES["queue_drop_server"], (account, server))
