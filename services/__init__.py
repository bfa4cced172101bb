"""The edges of watchledger: HTTP API, command line, configuration, embedded PostgreSQL, logging."""
