"""Projections: pure folds of the event log into tables, and the runner that applies them.

* :mod:`projections.domain` — the events of the log, GUID rules, the account aggregate.
* :mod:`projections.watch` — watch state (with the servers' outbound queues) and history.
* :mod:`projections.runner` — checkpoints, exactly-once batches, one runner per projection.

Knows nothing of HTTP; depends only on :mod:`eventstore`.
"""
