"""Projections: pure folds of the event log into tables, the runner that applies them, and
their rebuilds.

* :mod:`projections.domain` — the events of the log, title ids, the account aggregate, and
  the decisions made on it (events or rejections; domain errors under one root).
* :mod:`projections.protocol` — what a projection offers: live fold, set-based rebuild of a
  slice of the log, the rebuild of one account.
* :mod:`projections.state`, :mod:`projections.history`, :mod:`projections.queues` — one module
  (and one ``sql/<name>.sql``) per owner of tables; :mod:`projections.catalog` lists them.
* :mod:`projections.runner` — the live runner: checkpoints, exactly-once batches, one runner
  per projection, poison events, tombstones.
* :mod:`projections.replay` — replay with an atomic swap, point-in-time copies, verify.

Knows nothing of HTTP; depends only on :mod:`eventstore`.
"""
