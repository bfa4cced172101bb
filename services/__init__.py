"""The edges of watchledger, around the log (:mod:`eventstore`) and the model
(:mod:`projections`):

* :mod:`services.commands` — the application layer, no HTTP: load → decide → append → wait
  for the projections; used alike by every edge.
* :mod:`services.http` — the HTTP API: app, endpoint declarations, routes by resource, wire
  types, errors (domain error → problem+json in one table), OpenAPI, metrics.
* :mod:`services.ops` — the command line, operator commands (export, import), benchmarks.
* :mod:`services.runtime` — configuration, logging, embedded PostgreSQL, the supervisor of
  every background task, serving.
"""

# Packages owning tables, in the order their migrations apply.
MIGRATION_PACKAGES = ("eventstore", "projections", "services")
