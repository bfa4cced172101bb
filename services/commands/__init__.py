"""The application layer: load → decide → append → wait for the projections.

Used alike by every edge (HTTP, the CLI, connectors): no HTTP here, no wire types. A command
loads the account it concerns, lets a pure decision of :mod:`projections.domain` make the
events (or refuse, raising a :class:`~projections.domain.DomainError`), appends them, and
answers once the projections have applied them (read-your-writes).

* :mod:`.accounts` — the account aggregate (snapshots), creation, settings, own actions.
* :mod:`.servers` — the server registry, access, server-reported actions, delivery.
* :mod:`.actions` — recording decided actions, with an outcome per action.
* :mod:`.reads` — what the edges read back: state, history, the log, projection status.
* :mod:`.progress` — waiting for the projections.
* :mod:`.tokens` — bearer tokens, minted for new accounts and servers.
"""
